"""The lab's delay proxy: this kernel has no netem, so added latency is a user-space TCP proxy on the host side."""
from __future__ import annotations

import contextlib
import queue
import socket
import threading
import time
from typing import List, Optional, Tuple


class DelayProxy:
    """TCP proxy on 127.0.0.1 that forwards to ``target``, holding every chunk ``delay`` seconds in each
    direction (order kept, bandwidth not limited): a constant added latency, RTT + 2 x delay."""

    def __init__(self, target: Tuple[str, int], delay: float) -> None:
        self.target, self.delay = target, delay
        self.listener = socket.socket()
        self.listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(64)
        self.port = self.listener.getsockname()[1]
        self.sockets: List[socket.socket] = []
        self.closed = threading.Event()

    def start(self) -> "DelayProxy":
        threading.Thread(target=self._accept, name=f"delay-proxy-{self.port}", daemon=True).start()
        return self

    def _accept(self) -> None:
        while not self.closed.is_set():
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            try:
                upstream = socket.create_connection(self.target, timeout=10)
                upstream.settimeout(None)
            except OSError:
                client.close()
                continue
            self.sockets += [client, upstream]
            for src, dst in ((client, upstream), (upstream, client)):
                chunks: "queue.Queue[Tuple[float, Optional[bytes]]]" = queue.Queue()
                threading.Thread(target=self._read, args=(src, chunks), daemon=True).start()
                threading.Thread(target=self._write, args=(dst, chunks), daemon=True).start()

    def _read(self, src: socket.socket, chunks: "queue.Queue") -> None:
        while True:
            try:
                data = src.recv(65536)
            except OSError:
                data = b""
            chunks.put((time.monotonic() + self.delay, data or None))
            if not data:
                return

    def _write(self, dst: socket.socket, chunks: "queue.Queue") -> None:
        while True:
            due, data = chunks.get()
            wait = due - time.monotonic()
            if wait > 0:
                time.sleep(wait)
            try:
                if data is None:
                    dst.shutdown(socket.SHUT_WR)
                    return
                dst.sendall(data)
            except OSError:
                return

    def stop(self) -> None:
        self.closed.set()
        for sock in [self.listener, *self.sockets]:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()
