"""What every part of the device lab uses: running a command, finding a program, a file lock, a log callback."""
from __future__ import annotations

import contextlib
import fcntl
import shlex
import shutil
import subprocess
from pathlib import Path
from typing import Callable, Dict, Iterator, Optional, Sequence

Log = Callable[[str], None]


def quiet(_: str) -> None:
    pass


@contextlib.contextmanager
def locked(path: Path) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def run(cmd: Sequence[str], timeout: float = 900, check: bool = True, env: Optional[Dict[str, str]] = None,
        input: Optional[str] = None) -> subprocess.CompletedProcess:
    proc = subprocess.run(list(cmd), capture_output=True, text=True, timeout=timeout, env=env, input=input)
    if check and proc.returncode != 0:
        raise RuntimeError(f"command failed ({proc.returncode}): {shlex.join(cmd)}\n"
                           f"{proc.stdout[-2000:]}{proc.stderr[-4000:]}")
    return proc


def need(program: str, package: str) -> str:
    found = shutil.which(program) or shutil.which(program, path="/usr/sbin:/sbin:/usr/bin")
    if not found:
        raise RuntimeError(f"{program} is missing: run scripts/test.sh, which installs {package}")
    return found
