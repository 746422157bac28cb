"""sshparse, the fallback for hosts without an ssh client, against the real ``ssh -G`` (OpenSSH 9.2), host by host.

Every config in tests/support/ssh_corpus is resolved for every host of cases.toml (names that match nothing
included), once per set of ``-o`` options, by both; the dumps must be equal keyword for keyword, and where ssh
refuses a config sshparse must refuse it too. Then what sshparse refuses on purpose (Match exec, Include loops,
DNS canonicalisation) and what it says about a file it cannot read.

Nothing connects: ``ssh -G`` only prints what it would use, and the corpus asks it for no DNS and no command.
"""
from __future__ import annotations

import os
import random
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple, Union

import pytest

from edgeprune.devices import sshparse
from edgeprune.devices.sshparse import KEYWORDS, SshConfigError, dump, parse_dump
from support.paths import REPO_ROOT

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

CORPUS = REPO_ROOT / "tests" / "support" / "ssh_corpus"
Outcome = Union[Dict[str, List[str]], str]


def _require_ssh() -> str:
    """The real client, installed the way scripts/test.sh installs what the tests start (apt-get, as root)."""
    found = shutil.which("ssh")
    if found is None and os.geteuid() == 0 and shutil.which("apt-get"):
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        subprocess.run(["apt-get", "update", "-qq"], env=env, check=False, stdout=subprocess.DEVNULL)
        subprocess.run(["apt-get", "install", "-y", "-qq", "openssh-client"], env=env, check=False,
                       stdout=subprocess.DEVNULL)
        found = shutil.which("ssh")
    if found is None:
        raise RuntimeError("the corpus test compares with OpenSSH's ssh -G: apt-get install -y openssh-client")
    return found


SSH = _require_ssh()


def _options(pairs: Sequence[str]) -> List[Tuple[str, str]]:
    return [tuple(pair.split("=", 1)) for pair in pairs]  # type: ignore[misc]


def real(config: Optional[Path], host: str, options: Sequence[Tuple[str, str]] = (),
         env: Optional[Dict[str, str]] = None) -> Outcome:
    """``ssh -G`` parsed like sshparse's dump, or "error: ..." when ssh refuses."""
    argv = [SSH, "-G"] + (["-F", str(config)] if config else []) + [f"-o{k}={v}" for k, v in options] + ["--", host]
    proc = subprocess.run(argv, capture_output=True, stdin=subprocess.DEVNULL, timeout=30, env=env or dict(os.environ))
    if proc.returncode != 0:
        return "error: " + " ".join(line for line in proc.stderr.decode(errors="replace").splitlines()
                                    if "Pseudo-terminal" not in line)
    return parse_dump(proc.stdout.decode("utf-8", "surrogateescape"))  # bytes: no newline translation of a \r


def ours(config: Optional[Path], host: str, options: Sequence[Tuple[str, str]] = ()) -> Outcome:
    try:
        return dump(host, str(config) if config else None, options=options)
    except SshConfigError as exc:
        return f"error: {exc}"


def _same(a: Outcome, b: Outcome) -> bool:
    """Equal dumps, or both refusals (the wording is each tool's own)."""
    return a == b or isinstance(a, str) and isinstance(b, str)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The corpus copied to a temporary folder, its placeholders filled: absolute Include paths, a marker file."""
    root = tmp_path_factory.mktemp("ssh_corpus")
    for source in CORPUS.rglob("*"):
        target = root / source.relative_to(CORPUS)
        if source.is_dir():
            target.mkdir(parents=True, exist_ok=True)
        else:
            text = source.read_text().replace("@CORPUS@", str(root)).replace("@MARKER@", str(root / "MARKER"))
            target.write_text(text)
            target.chmod(0o644)
    (root / "home").mkdir()
    shutil.copytree(root / "home_ssh", root / "home" / ".ssh")
    return root


CASES = tomllib.loads((CORPUS / "cases.toml").read_text())["case"]


@pytest.mark.parametrize("case", CASES, ids=[case["config"] for case in CASES])
def test_every_host_resolves_as_ssh_resolves_it(case: dict, corpus: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = corpus / case["config"]
    env = dict(os.environ)
    if case.get("home"):
        env["HOME"] = str(corpus / "home")
        monkeypatch.setenv("HOME", env["HOME"])  # sshparse reads $HOME for Include's ~, as glob does in ssh
    mismatches, compared, refused = [], 0, []
    for number, pairs in enumerate(case["options"]):
        options = _options(pairs)
        for host in case["hosts"]:
            theirs, mine = real(config, host, options, env), ours(config, host, options)
            compared += 1
            refused += [[host, number]] if isinstance(theirs, str) else []
            if not _same(theirs, mine):
                mismatches.append(f"{host} {pairs}:\n  ssh -G:    {theirs}\n  sshparse:  {mine}")
    assert not (corpus / "MARKER").exists(), "a Match exec ran"
    assert compared == len(case["hosts"]) * len(case["options"])
    assert not mismatches, f"{len(mismatches)} of {compared} differ:\n" + "\n".join(mismatches)
    assert refused == case.get("refused", []), "ssh -G refuses what the corpus means to resolve (or resolves)"


#: The random configs' lines: keywords edgeprune reads with values that trip parsers, Host/Match/Include lines.
LINES = {
    "HostName": ["%h.lan", "Real.Example", "%h", "10.0.0.1", "::1", "%%h", "127.1"],
    "Port": ["22", "2222", "ssh", "+2201", "0", "65535", "http", '" 2200"'],
    "User": ["pi", "alice", "'bob smith'", "%u"],
    "IdentityFile": ["~/.ssh/a", "~/.ssh/b", '"~/.ssh/c d"', "%d/k", "~/.ssh/a # again"],
    "CertificateFile": ["~/.ssh/a-cert.pub", "~/.ssh/b-cert.pub"],
    "IdentitiesOnly": ["yes", "no", "true", "FALSE", "maybe"],
    "UserKnownHostsFile": ["~/kh", "/kh %h %p", "none", "~/a ~/b", "%d/%r/%u/%n/%k/%C/%L/%l/%i", "none ~/x"],
    "GlobalKnownHostsFile": ["/g1", "none", "/g1 /g2"],
    "HostKeyAlias": ["alias", "Mixed"],
    "ProxyJump": ["j.example", "u@j:2222", "none", "a,b", "ssh://u@j:22", "[::1]:22", "10.0.0.9", "a b", "x,"],
    "ProxyCommand": ["nc %h %p", "none", "ssh -W %h:%p j # kept"],
    "ConnectTimeout": ["5", "none", "1m", "0", "5 s"],
    "ServerAliveInterval": ["10", "none", "1h", "2m3s"],
    "ServerAliveCountMax": ["3", "0", "-1"],
    "StrictHostKeyChecking": ["yes", "no", "ask", "accept-new", "off"],
    "ForwardAgent": ["yes"],
}
PATTERNS = ["pi", "Pi", "pi*", "*", "!pi", "*.example", "?", "pi-?", "web", "!*.example", "a.*"]
MATCHES = ["all", "host pi*", "host !pi,*", "originalhost Pi", "user alice", "user !root", "localuser root",
           "!localuser root", "host *.example user pi", "final", "canonical", "!final host pi", "host real.example",
           "originalhost pi* host *.lan", "final all", "host pi all"]


def _random_line(rng: random.Random, folder: Path) -> str:
    roll = rng.random()
    if roll < 0.12:
        return "Host " + " ".join(rng.choice(PATTERNS) for _ in range(rng.randint(1, 3)))
    if roll < 0.2:
        return "Match " + rng.choice(MATCHES)
    if roll < 0.23:
        return f"Include {folder}/inc{rng.randint(0, 2)}.conf"
    key = rng.choice(sorted(LINES))
    return (rng.choice(["", "  ", "\t"]) + rng.choice([key, key.lower(), key.upper()]) +
            rng.choice([" ", " = ", "=", "\t"]) + rng.choice(LINES[key]))


def test_random_configs_resolve_as_ssh_resolves_them(tmp_path: Path) -> None:
    """Seeded random configs (Host, Match, Include, the keywords, odd syntax): both agree, or both refuse."""
    rng, mismatches, agreed = random.Random(14), [], 0
    for case in range(120):
        for name in ("inc0", "inc1", "inc2", "main"):
            lines = [_random_line(rng, tmp_path) for _ in range(rng.randint(0 if name != "main" else 1, 8))]
            (tmp_path / f"{name}.conf").write_text("\n".join(lines) + "\n")
        options = [] if rng.random() < 0.6 else [("User", "cli"), ("Port", "2999")][:rng.randint(1, 2)]
        for host in rng.sample(["pi", "Pi", "pi-1", "web", "a.b", "x.example", "10.0.0.7"], 2):
            theirs, mine = real(tmp_path / "main.conf", host, options), ours(tmp_path / "main.conf", host, options)
            agreed += isinstance(theirs, dict) and theirs == mine
            if not _same(theirs, mine):
                mismatches.append(f"case {case} {host} {options}:\n{(tmp_path / 'main.conf').read_text()}"
                                  f"  ssh -G:    {theirs}\n  sshparse:  {mine}")
    assert not mismatches, f"{len(mismatches)} differ:\n" + "\n".join(mismatches[:5])
    assert agreed > 120  # most resolve: the comparison is of dumps, not only of refusals


def test_the_corpus_sets_every_keyword(corpus: Path) -> None:
    """The comparison is not vacuous: across the corpus ssh printed a non-default value for every keyword, and
    some hosts resolve without error."""
    defaults = real(Path(os.devnull), "corpus-default-probe")
    assert isinstance(defaults, dict)
    seen: Dict[str, set] = {key: set() for key in KEYWORDS}
    for case in CASES:
        if case.get("home"):
            continue
        for host in case["hosts"]:
            theirs = real(corpus / case["config"], host)
            for key, values in (theirs.items() if isinstance(theirs, dict) else ()):
                if values != defaults.get(key):
                    seen[key].add(tuple(values))
    assert [key for key, values in seen.items() if not values] == []


@pytest.mark.parametrize("name", sorted(path.name for path in (CORPUS / "errors").glob("*.conf")))
def test_a_config_ssh_refuses_is_refused(name: str, corpus: Path) -> None:
    config = corpus / "errors" / name
    for host in ("x", "other", "nowhere", "nowhere.example"):
        theirs = real(config, host)
        assert isinstance(theirs, str), f"ssh -G accepts {name} for {host}: the corpus case is wrong"
        with pytest.raises(SshConfigError) as caught:
            dump(host, str(config))
        assert "\n" not in str(caught.value)


def test_match_exec_is_refused_with_its_place_and_never_run(tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    inner = tmp_path / "inner.conf"
    inner.write_text(f"# first line\nHost *\n  Port 2\nMatch exec \"touch {marker}\"\n  User ran\n")
    config = tmp_path / "config"
    config.write_text(f"Host pi\n  HostName pi.example\nInclude {inner}\n")
    with pytest.raises(SshConfigError) as caught:
        dump("pi", str(config))
    message = str(caught.value)
    assert f"Match exec in {inner}:4 is not evaluated" in message and "install OpenSSH" in message
    assert "\n" not in message
    with pytest.raises(SshConfigError, match="Match exec"):
        dump("pi", str(config), options=[("User", "someone")])
    assert not marker.exists()
    # behind a criterion that fails first, ssh does not run it either: both resolve, nothing is created
    config.write_text(f"Match host elsewhere exec \"touch {marker}\"\n  User ran\nHost *\n  User kept\n")
    assert dump("pi", str(config))["user"] == ["kept"] == real(config, "pi")["user"]  # type: ignore[index]
    assert not marker.exists()


def test_include_recursion_is_refused(tmp_path: Path) -> None:
    config = tmp_path / "loop.conf"
    config.write_text(f"Host *\n  Include {config}\n")
    assert isinstance(real(config, "h"), str)
    with pytest.raises(SshConfigError, match=f"deeper than {sshparse.MAX_DEPTH}") as caught:
        dump("h", str(config))
    assert "\n" not in str(caught.value)
    # sixteen levels are fine, as in ssh
    chain = [tmp_path / f"level{i}.conf" for i in range(sshparse.MAX_DEPTH + 1)]
    for here, below in zip(chain, chain[1:]):
        here.write_text(f"Include {below}\n")
    chain[-1].write_text("Port 2016\n")
    assert dump("h", str(chain[0]))["port"] == ["2016"] == real(chain[0], "h")["port"]  # type: ignore[index]


@pytest.mark.parametrize("path", ["missing.conf", "file/under-a-file"])
def test_an_unreadable_config_is_one_line(path: str, tmp_path: Path) -> None:
    (tmp_path / "file").write_text("Port 2\n")
    config = tmp_path / path
    assert isinstance(real(config, "h"), str)
    with pytest.raises(SshConfigError) as caught:
        dump("h", str(config))
    assert str(config) in str(caught.value) and "\n" not in str(caught.value)


def test_canonicalisation_is_refused(tmp_path: Path) -> None:
    """ssh -G would look names up in DNS (CanonicalDomains, CNAMEs): sshparse says so instead, for any
    canonicalisation (the test never runs ssh on these configs)."""
    config = tmp_path / "config"
    for text in ("CanonicalizeHostname yes\nCanonicalDomains example.com\n",
                 "Host pi\n  CanonicalizeHostname always\n", "CanonicalizePermittedCNAMEs *.a.example:*.b.example\n"):
        config.write_text(text)
        with pytest.raises(SshConfigError, match="canonicalise .*DNS") as caught:
            dump("pi", str(config))
        assert "\n" not in str(caught.value)
    config.write_text("Host other\n  CanonicalizeHostname yes\nCanonicalizeHostname no\n")
    assert dump("pi", str(config)) == real(config, "pi")


def test_the_system_config_when_no_file_is_named() -> None:
    """``config_path`` None reads ~/.ssh/config then /etc/ssh/ssh_config, as ssh without -F: both read this
    machine's own files (only read; skipped where they hold a Match exec or ask for canonicalisation)."""
    own = [Path.home() / ".ssh" / "config", Path("/etc/ssh/ssh_config"), *Path("/etc/ssh").glob("ssh_config.d/*")]
    if any(re.search(r"(?im)^\s*match\b.*\bexec\b", p.read_text(errors="replace")) for p in own if p.is_file()):
        pytest.skip("this machine's ssh config has a Match exec: ssh -G would run it")
    try:
        mine = dump("edgeprune-probe.example", None)
    except SshConfigError as exc:
        pytest.skip(f"this machine's ssh config is not for sshparse: {exc}")
    assert mine == real(None, "edgeprune-probe.example")


def test_home_and_local_user_stand_for_another_user(tmp_path: Path) -> None:
    config = tmp_path / "config"
    config.write_text("Match localuser alice\n  Port 2999\nHost *\n  UserKnownHostsFile ~/kh %d/kh2 %u\n")
    resolved = dump("pi", str(config), home="/home/alice", local_user="alice")
    assert resolved["port"] == ["2999"] and resolved["user"] == ["alice"]
    assert resolved["userknownhostsfile"] == ["/home/alice/kh /home/alice/kh2 alice"]
    default = dump("pi", str(config))
    assert default["port"] == ["22"] and default["userknownhostsfile"] != resolved["userknownhostsfile"]


def test_parse_dump_keeps_repeats_order_and_odd_bytes() -> None:
    text = "user pi\nidentityfile ~/.ssh/a\nidentityfile ~/.ssh/b\nproxycommand nc\x0c%h %p\nciphers x\n"
    assert parse_dump(text) == {"user": ["pi"], "identityfile": ["~/.ssh/a", "~/.ssh/b"],
                                "proxycommand": ["nc\x0c%h %p"]}
    assert parse_dump(text, None)["ciphers"] == ["x"]
