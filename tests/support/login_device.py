"""Login devices: an sshd on 127.0.0.1 whose login is a per-device user with its own home, as on a real Pi.

Why they exist (issue 10): every SshdDevice test logs in as root (HOME=/root) and writes an absolute workdir, so
nothing exercised what a user's copy of a shipped profile does: a relative ``workdir = ".edgeprune"`` (relative to
the login's home), ``python = "python3"`` found on the PATH that ``~/.bashrc`` sets, rc files that print to stdout.
A release benchmarked nothing over SSH with the shipped profiles and the suite stayed green.

The login is a uid-0 alias (``useradd -o -u 0 -g 0``) with its own home under the test's tmp folder: it needs no
permission changes on the test's files, yet sshd gives it its own HOME and cwd, runs its login shell as session and
process-group leader (pid == pgid == sid), and Debian's bash (built with SSH_SOURCE_BASHRC) sources its
``~/.bashrc`` for ``ssh host command``, as a Pi's ``pi`` login does. Users are named ``eptest-<owner pid>-<n>``:
``sweep_stale_users()`` removes those whose owner process is gone (a test run that was SIGKILLed), and
``LoginDevice.remove()`` (the fixtures' finalizer) removes a device's own user. All traffic stays on 127.0.0.1.
"""
from __future__ import annotations

import fcntl
import itertools
import os
import re
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, NamedTuple, Optional

from support.sshlab import ClientKeys, SshdDevice

USER_PREFIX = "eptest-"
USER_RE = re.compile(r"^eptest-(\d+)-\d+$")
#: Serialises this suite's useradd/userdel calls (several pytest processes may run at once); /etc/passwd's own
#: lock still makes a call fail now and then when another tool holds it, so each call is retried too.
USERS_LOCK = Path("/tmp/edgeprune-eptest-users.lock")
_counter = itertools.count(1)


def _user_command(argv: List[str], attempts: int = 20, missing_ok: bool = False) -> None:
    """Run useradd/usermod/userdel under the suite's lock, retrying while /etc/passwd is locked (exit 10).

    ``missing_ok``: userdel's exit 6 (no such user) is fine, e.g. when two sessions sweep the same stale user.
    """
    with open(USERS_LOCK, "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        for attempt in range(attempts):
            proc = subprocess.run(argv, capture_output=True, text=True, timeout=60)
            # userdel -f on a uid-0 alias warns "currently used by process 2" (uid 0 is always in use) and goes on
            if proc.returncode == 0 or (missing_ok and proc.returncode == 6):
                return
            if proc.returncode != 10 or attempt == attempts - 1:
                raise RuntimeError(f"{' '.join(argv)} exited {proc.returncode}: {proc.stderr.strip()}")
            time.sleep(0.2)


def _passwd_names() -> List[str]:
    return [line.split(":", 1)[0] for line in Path("/etc/passwd").read_text().splitlines() if ":" in line]


def sweep_stale_users() -> List[str]:
    """Remove ``eptest-<pid>-<n>`` users whose owner process is gone; names without an owner pid are left alone."""
    removed = []
    for name in _passwd_names():
        match = USER_RE.match(name)
        if match and not Path(f"/proc/{match.group(1)}").exists():  # owner gone
            _user_command(["userdel", "-f", name], missing_ok=True)
            removed.append(name)
    return removed


class DeviceProcess(NamedTuple):
    pid: int
    cmdline: str
    why: str


@dataclass
class LoginDevice(SshdDevice):
    """An sshd device whose login is its own user (``self.user``) with its own home (``self.home``).

    ``python`` is the device's Python: ``<root>/bin/python3`` execs it and the home's ``.bashrc`` puts ``<root>/bin``
    first on the PATH, so a profile's ``python = "python3"`` finds it only through the login shell, as on a Pi.
    ``banner`` is a line the ``.bashrc`` prints to stdout (conda, pyenv and MOTD-like scripts do); ``bashrc_extra``
    is appended to the ``.bashrc`` as is. ``workdir`` is where the default ``workdir = ".edgeprune"`` lands.
    """

    banner: Optional[str] = None
    bashrc_extra: str = ""

    def __post_init__(self) -> None:
        super().__post_init__()
        self.user = f"{USER_PREFIX}{os.getpid()}-{next(_counter)}"
        assert len(self.user) <= 32, self.user
        self.home = self.root / "home"
        self.bin = self.root / "bin"
        self.workdir = self.home / ".edgeprune"
        self.user_created = False
        # only this device's login may log in: a mistake that logs in as root must fail, not pass unnoticed
        self.extra_config = f"AllowUsers {self.user}\n" + self.extra_config

    def write_home(self) -> None:
        """The login's home as a Pi user has it: a .bashrc that sets PATH (and prints the banner, if any)."""
        self.home.mkdir(parents=True, exist_ok=True)
        self.bin.mkdir(parents=True, exist_ok=True)
        python3 = self.bin / "python3"
        python3.write_text(f'#!/bin/sh\nexec {self.python} "$@"\n')
        python3.chmod(0o755)
        lines = ["# written by tests/support/login_device.py: what ~/.bashrc does for `ssh host command` on a Pi",
                 f'export PATH="{self.bin}:$PATH"']
        if self.banner is not None:
            lines.append(f"echo {_shell_quote(self.banner)}")
        (self.home / ".bashrc").write_text("\n".join(lines) + "\n" + self.bashrc_extra)

    def create_user(self) -> None:
        if self.user_created:
            return
        _user_command(["useradd", "-o", "-u", "0", "-g", "0", "-M", "-d", str(self.home), "-s", "/bin/bash",
                       self.user])
        self.user_created = True
        # '*' (no password, not locked): sshd with UsePAM no refuses any login, keys included, of a '!' account
        _user_command(["usermod", "-p", "*", self.user])

    def start(self) -> "LoginDevice":
        self.write_home()
        self.create_user()
        super().start()
        return self

    def remove(self) -> None:
        """Stop sshd and delete the login user; the finalizer calls this, pass or fail."""
        self.stop()
        if self.user_created:
            _user_command(["userdel", "-f", self.user])
            self.user_created = False

    def profile_changes(self) -> Dict[str, object]:
        """What a user changes in a copy of a shipped profile to reach this device (sshlab.copy_profile)."""
        return {"host": "127.0.0.1", "port": self.port, "user": self.user, "key_file": str(self.client.key),
                "known_hosts": str(self.client.known_hosts)}

    def processes(self) -> List[DeviceProcess]:
        """Processes still running on the device: HOME or cwd under its home, or a device_agent naming it."""
        home = str(self.home)
        inside = lambda path: path == home or path.startswith(home + "/")  # noqa: E731
        found = []
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit() or int(entry.name) == os.getpid():
                continue
            try:
                cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode("utf-8", "replace").strip()
                environ = (entry / "environ").read_bytes().split(b"\0")
                cwd = os.readlink(entry / "cwd")
            except OSError:  # gone meanwhile, or a zombie (nothing left running)
                continue
            homes = [item[5:].decode("utf-8", "replace") for item in environ if item.startswith(b"HOME=")]
            if any(inside(h) for h in homes):
                found.append(DeviceProcess(int(entry.name), cmdline, "HOME"))
            elif inside(cwd):
                found.append(DeviceProcess(int(entry.name), cmdline, "cwd"))
            elif "device_agent" in cmdline and home in cmdline:
                found.append(DeviceProcess(int(entry.name), cmdline, "cmdline"))
        return found

    def wait_for_no_processes(self, timeout: float = 10.0) -> List[DeviceProcess]:
        """What is still running after ``timeout`` s: a closed SSH channel takes a moment to reach its command."""
        deadline = time.monotonic() + timeout
        while True:
            left = self.processes()
            if not left or time.monotonic() > deadline:
                return left
            time.sleep(0.2)


def _shell_quote(text: str) -> str:
    return "'" + text.replace("'", "'\"'\"'") + "'"


@dataclass
class ClientHome:
    """A user's home on the client: ``~/.ssh/<key>``, ``known_hosts`` and ``config``, the files the shipped profiles
    and the fleet example name with ``~``. ``env()`` is the environment for an edgeprune subprocess that lives
    there (no ssh-agent: the run must not depend on keys the machine happens to hold)."""

    root: Path
    key_name: str = "edgeprune_ed25519"

    def __post_init__(self) -> None:
        self.ssh_dir = self.root / ".ssh"
        self.keys = ClientKeys(self.ssh_dir, key_name=self.key_name)
        self.ssh_dir.chmod(0o700)
        self.ssh_config = self.ssh_dir / "config"

    def add_alias(self, alias: str, device: SshdDevice, user: Optional[str] = None) -> None:
        """A ``Host`` entry in ``~/.ssh/config`` pointing the alias at the device (as a user writes it)."""
        lines = [f"Host {alias}", "  HostName 127.0.0.1", f"  Port {device.port}"]
        if user:
            lines.append(f"  User {user}")
        with open(self.ssh_config, "a") as handle:
            handle.write("\n".join(lines) + "\n\n")

    def env(self) -> Dict[str, str]:
        env = {k: v for k, v in os.environ.items() if k not in ("SSH_AUTH_SOCK", "SSH_AGENT_PID")}
        env["HOME"] = str(self.root)
        return env
