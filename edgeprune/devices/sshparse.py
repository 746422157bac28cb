"""``ssh -G`` without an ssh client: OpenSSH 9.2's ssh_config rules in Python, for the keywords edgeprune reads.

:mod:`sshconfig` lets OpenSSH resolve a device; where no ``ssh`` is installed this module makes the same dump, so a
config means one thing with or without the client (tests/fleet/test_ssh_config_corpus.py compares the two host by
host). It refuses rather than guesses: ``Match exec`` is never run, canonicalisation (DNS) never attempted.
"""
from __future__ import annotations

import glob
import hashlib
import os
import pwd
import re
import socket
import stat
from dataclasses import dataclass, field, replace
from typing import Dict, Iterable, List, Optional, Sequence, Tuple
from urllib.parse import unquote_plus

from ..errors import ConfigError

KEYWORDS: Tuple[str, ...] = (
    "hostname", "port", "user", "identityfile", "identitiesonly", "certificatefile", "userknownhostsfile",
    "globalknownhostsfile", "hostkeyalias", "proxyjump", "proxycommand", "connecttimeout", "serveraliveinterval",
    "serveralivecountmax", "stricthostkeychecking")
#: Every other keyword Debian's ssh 9.2 knows (upstream's, GSSAPI's, keep-alive's); those without code here: unchecked.
_OTHER = frozenset("""
    protocol cipher fallbacktorsh globalknownhostsfile2 rhostsauthentication userknownhostsfile2 useroaming usersh
    useprivilegedport afstokenpassing kerberosauthentication kerberostgtpassing rsaauthentication
    rhostsrsaauthentication compressionlevel gssapiauthentication gssapidelegatecredentials gssapiclientidentity
    gssapiserveridentity gssapikeyexchange gssapikexalgorithms gssapirenewalforcesrekey gssapitrustdns pkcs11provider
    smartcarddevice forwardagent forwardx11 forwardx11trusted forwardx11timeout exitonforwardfailure xauthlocation
    gatewayports passwordauthentication kbdinteractiveauthentication kbdinteractivedevices
    challengeresponseauthentication skeyauthentication tisauthentication pubkeyauthentication dsaauthentication
    hostbasedauthentication addkeystoagent identityagent ciphers macs remoteforward localforward permitremoteopen
    escapechar connectionattempts batchmode checkhostip compression tcpkeepalive keepalive numberofpasswordprompts
    syslogfacility loglevel logverbose dynamicforward preferredauthentications hostkeyalgorithms
    casignaturealgorithms bindaddress bindinterface clearallforwardings enablesshkeysign verifyhostkeydns
    nohostauthenticationforlocalhost rekeylimit addressfamily sendenv setenv controlpath controlmaster controlpersist
    hashknownhosts tunnel tunneldevice localcommand permitlocalcommand remotecommand visualhostkey kexalgorithms
    ipqos requesttty sessiontype stdinnull forkafterauthentication proxyusefdpass streamlocalbindmask
    streamlocalbindunlink revokedhostkeys fingerprinthash updatehostkeys hostbasedacceptedalgorithms
    hostbasedkeytypes pubkeyacceptedalgorithms pubkeyacceptedkeytypes securitykeyprovider knownhostscommand
    requiredrsasize enableescapecommandline useblacklistedkeys canonicaldomains canonicalizefallbacklocal
    canonicalizemaxdots host match include proxyjump proxycommand""".split())
_ALIASES = {"identityfile2": "identityfile", "protocolkeepalives": "serveraliveinterval",
            "setuptimeout": "serveraliveinterval"}
_FLAG = {"true": "yes", "yes": "yes", "false": "no", "no": "no"}
#: Multi-state values as ssh -G prints them: the first name of the state (``no`` is ``false``).
_TABLES = {"identitiesonly": _FLAG, "canonicalizehostname": {**_FLAG, "always": "always"},
           "stricthostkeychecking": {"true": "true", "yes": "true", "false": "false", "no": "false", "off": "false",
                                     "ask": "ask", "accept-new": "accept-new"}}
_LISTS = ("userknownhostsfile", "globalknownhostsfile", "canonicalizepermittedcnames")
_SCALARS = frozenset(KEYWORDS) - set(_LISTS) - _OTHER | set(_TABLES) | {"ignoreunknown"}
_DEFAULT_IDS = tuple(f"~/.ssh/id_{k}" for k in ("rsa", "ecdsa", "ecdsa_sk", "ed25519", "ed25519_sk", "xmss", "dsa"))
_WS = " \t\r\n"
#: A line: the keyword, then blanks and at most one '=' (strdelim), then the rest.
_LINE = re.compile(r"[ \t\r\n]*([^ \t\r\n=]*)[ \t\r\n]*(?:=[ \t\r\n]*)?(.*)", re.S)
_NUMBER = r"[ \t\n\v\f\r]*[+-]?[0-9]+"  # what strtonum and strtol take
_TIME = re.compile(f"({_NUMBER})([sSmMhHdDwW]|\\Z)")
_UNITS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
_HOP = re.compile(r"(?:(?P<user>.*)@)?(?P<host>\[[^\]]*\]|(?!\[)[^:/]*)(?::(?P<port>.*))?", re.S)
_URI = re.compile(r"ssh://(?:(?P<user>[^@;]*)[^@]*@)?(?P<host>\[[^\]]*\]|(?!\[)[^:/]*)(?::(?P<port>[^/]*))?/?", re.S)
MAX_DEPTH = 16  #: OpenSSH's READCONF_MAX_DEPTH: Includes nested deeper are refused
_INSTALL = "install OpenSSH's client (ssh) so `ssh -G` resolves it"
Dump = Dict[str, List[str]]


class SshConfigError(ConfigError):
    """An ssh_config this parser cannot resolve: unreadable, wrong, or asking for what only ssh may do."""


def parse_dump(text: str, keywords: Optional[Iterable[str]] = KEYWORDS) -> Dump:
    """``ssh -G`` output as {keyword: [values in order]}, only ``keywords`` (None: all), so that
    ``parse_dump(ssh_output) == dump(...)``. Split on newlines only: a value may hold any other control byte."""
    wanted = None if keywords is None else set(keywords)
    out: Dump = {}
    for line in text.split("\n"):
        key, _, value = line.partition(" ")
        if key and (wanted is None or key in wanted):
            out.setdefault(key, []).append(value)
    return out


def _lower(text: str) -> str:
    """C's tolower, ASCII only, as OpenSSH lowercases."""
    return "".join(chr(ord(c) + 32) if "A" <= c <= "Z" else c for c in text)


def _argv(s: str) -> Optional[List[str]]:
    """argv_split: words, 'quotes' "quotes", backslash escapes; a word starting with '#' ends it; None: open quote."""
    words: List[Optional[str]] = [None]  # the last one is being read; None: between words
    quote, i = "", 0
    while i < len(s) and not (words[-1] is None and s[i] == "#"):
        c, after = s[i], s[i + 1:i + 2]
        if c == "\\" and after and (after in "'\"\\" or not quote and after == " "):
            words[-1], i = (words[-1] or "") + after, i + 1
        elif not quote and c in " \t":
            words += [None] if words[-1] is not None else []
        elif c in "\"'" and quote in ("", c):
            words[-1], quote = words[-1] or "", "" if quote else c
        else:
            words[-1] = (words[-1] or "") + c
        i += 1
    return None if quote else [word for word in words if word is not None]


def _match(s: str, pattern: str) -> bool:
    """OpenSSH's match_pattern: ``*`` and ``?``, case-sensitive, the whole string."""
    return re.fullmatch("".join({"*": ".*", "?": "."}.get(c) or re.escape(c) for c in pattern), s, re.S) is not None


def _match_list(s: str, patterns: str, lower: bool) -> int:
    """match_pattern_list: 1 a pattern matches, -1 a ``!pattern`` matches (that wins), 0 neither."""
    positive = 0
    for sub in patterns.split(","):
        negated, sub = sub.startswith("!"), sub[sub.startswith("!"):]
        if _match(s, _lower(sub) if lower else sub):
            if negated:
                return -1
            positive = 1
    return positive


def _port(text: str) -> int:
    """a2port: 1..65535 or a service from /etc/services (``ssh`` is 22); -1 when neither."""
    try:
        value = int(text) if re.fullmatch(_NUMBER, text) and int(text) <= 65535 else socket.getservbyname(text, "tcp")
    except (OSError, UnicodeError):
        return -1
    return value if value > 0 else -1


def _expand(text: str, tokens: Dict[str, str], at: str, env: bool = False) -> str:
    """percent_expand (and ``${VAR}`` where ``env``), left to right: an unknown %-token is an error, as in ssh."""
    out, i = [], 0
    while i < len(text):
        var = re.match(r"\$\{([^}]+)\}", text[i:]) if env and text.startswith("${", i) else None
        key = text[i + 1:i + 2] if text[i] == "%" else ""
        if env and text.startswith("${", i) and (not var or var.group(1) not in os.environ) or \
                key and key != "%" and key not in tokens or text[i:] == "%":
            raise SshConfigError(f"{at}: cannot expand {text[i:i + 2]!r} in {text!r}")
        out.append(os.environ[var.group(1)] if var else tokens.get(key, "%") if key else text[i])
        i += var.end() if var else 2 if key else 1
    return "".join(out)


def _tilde(path: str, home: str) -> str:
    """tilde_expand: ``~`` and ``~/x`` in ``home`` (with one slash after it, as OpenSSH writes it), ``~user/x``."""
    if not path.startswith("~") or path[1:2] not in ("", "/"):
        return os.path.expanduser(path)
    return home.rstrip("/") + "/" + path[1:].lstrip("/")


def _hop(spec: str) -> Optional[Tuple[Optional[str], str, int]]:
    """``[user@]host[:port]`` or ``ssh://[user@]host[:port]`` (a ProxyJump hop): (user, host, port or -1)."""
    uri = spec.startswith("ssh://")
    found = (_URI if uri else _HOP).fullmatch(spec)
    user, host, port = found.group("user", "host", "port") if found else (None, "", None)
    host, number = host[1:-1] if host.startswith("[") else host, _port(port) if port else -1
    if not host or port and number < 0 or user == "" or uri and (not re.fullmatch(
            r"[A-Za-z0-9][A-Za-z0-9._-]*", host) or ".." in host or re.search("%(?![0-9A-Fa-f]{2})", user or "")):
        return None
    user = unquote_plus(user, errors="surrogateescape") if uri and user else user
    return user, host[:-1] if uri and host.endswith(".") else host, number


@dataclass
class _State:
    """Who asks (``home``: ``~`` in known_hosts and %d; ``include_home``: ``~`` in Include, $HOME as glob reads it)
    and what the lines set so far: the first value obtained wins; IdentityFile and CertificateFile accumulate."""

    user: str
    home: str
    include_home: str
    host_arg: str = ""
    scalars: Dict[str, str] = field(default_factory=dict)
    files: Dict[str, List[Tuple[str, bool]]] = field(default_factory=lambda: dict(identityfile=[], certificatefile=[]))
    lists: Dict[str, List[str]] = field(default_factory=dict)
    jump: Optional[Tuple[Optional[str], str, int, Optional[str]]] = None  # user, host, port, hops before it
    want_final: bool = False


@dataclass
class _Reader:
    """One file read for a host, as read_config_file reads it. ``host`` is what Host patterns see (the name as
    typed; in the ``Match final`` pass the resolved HostName); ``active``: the current block applies. An Include
    is read even where its block does not apply (its errors count), but then none of its own blocks applies."""

    state: _State
    host: str
    final: bool = False
    userconf: bool = True
    active: bool = True
    nevermatch: bool = False
    depth: int = 0

    def read(self, path: str, required: bool = True, checkperm: bool = True) -> None:
        """read_config_file: a file missing is fine only where ``required`` is not (~/.ssh/config, ssh_config)."""
        if self.depth > MAX_DEPTH:
            raise SshConfigError(f"{path}: Include nested deeper than {MAX_DEPTH} (does an Include reach itself?)")
        try:
            info = os.stat(path)
            if checkperm and (info.st_uid not in (0, os.getuid()) or info.st_mode & 0o022):
                raise SshConfigError(f"bad owner or permissions on ssh config {path}")
            with open(os.devnull if stat.S_ISDIR(info.st_mode) else path, "rb") as handle:  # a folder reads empty
                text = handle.read().decode("utf-8", "surrogateescape")
        except OSError as exc:
            if required or not isinstance(exc, FileNotFoundError):
                raise SshConfigError(f"cannot read ssh config {path}: {exc.strerror or exc}") from None
            return
        for number, raw in enumerate(text.split("\n"), 1):
            self.line(raw, f"{path} line {number}")

    def line(self, raw: str, at: str) -> None:
        """process_config_line: one line of a file, or one -o option (``at`` is then "command-line")."""
        keyword, rest = _LINE.fullmatch(raw[:1] + raw[1:].rstrip(_WS + "\f")).groups()  # type: ignore[union-attr]
        if not keyword or keyword[0] == "#":
            return
        keyword, state = _ALIASES.get(_lower(keyword), _lower(keyword)), self.state
        args, known = _argv(rest), keyword in _OTHER or keyword in _SCALARS or keyword in _LISTS
        if not rest or not known and _match_list(keyword, state.scalars.get("ignoreunknown", ""), True) < 1:
            raise SshConfigError(f"{at}: " + (f"bad configuration option: {keyword}" if rest else
                                              f"no argument after keyword {keyword}"))
        if args is None or at == "command-line" and keyword in ("host", "match", "include"):
            raise SshConfigError(f"{at}: " + ("invalid quotes" if args is None else f"{keyword} is not allowed here"))
        if "" in args and keyword in ("host", "include") + _LISTS or not args and keyword in _SCALARS:
            raise SshConfigError(f"{at}: {keyword} has a missing or empty argument")
        if keyword == "host":  # a matching !pattern wins wherever it stands
            matched = [p for p in ([] if self.nevermatch else args) if _match(self.host, p[p.startswith("!"):])]
            self.active = bool(matched) and not any(p.startswith("!") for p in matched)
        elif keyword == "match":
            self.active = self.match(rest, at) and not self.nevermatch
        elif keyword == "include":  # globs, sorted, relative to ~/.ssh (/etc/ssh for the system file)
            for arg in args:
                if arg.startswith("~") and not self.userconf:
                    raise SshConfigError(f"{at}: bad include path {arg}")
                pattern = arg if arg.startswith(("/", "~")) else ("~/.ssh/" if self.userconf else "/etc/ssh/") + arg
                for path in sorted(glob.glob(_tilde(pattern, state.include_home))):
                    replace(self, nevermatch=self.nevermatch or not self.active, depth=self.depth + 1).read(path)
        elif keyword == "proxyjump":
            self.jump(rest.lstrip(_WS + "="), at)
        elif keyword in _LISTS:
            if len(args) > 1 and "none" in map(_lower, args):
                raise SshConfigError(f'{at}: {keyword} "none" must stand alone')
            state.lists.setdefault(keyword, args) if self.active else None
        elif keyword in _SCALARS or keyword == "proxycommand":
            value = rest.lstrip(_WS + "=") if keyword == "proxycommand" else _value(keyword, args, at)
            files = state.files.get(keyword)
            if files is None and self.active and value:
                state.scalars.setdefault(keyword, value)
            elif files is not None and self.active and (value, self.userconf) not in files:
                files.append((value, self.userconf))

    def match(self, rest: str, at: str) -> bool:
        """match_cfg_line: ``Match host`` sees the HostName resolved so far, ``Match user`` the user so far."""
        scalars, local = self.state.scalars, self.state.user
        host = scalars["hostname"] if self.final else _expand(scalars.get("hostname", "%h"), {"h": self.host}, at)
        subjects = {"host": _lower(host), "originalhost": _lower(self.state.host_arg), "localuser": local,
                    "user": scalars.get("user", local)}
        words = [quoted or bare for quoted, bare in re.findall(r'"([^"]*)"|([^ \t\r\n"=]+)', rest)]
        words = words[:next((i for i, word in enumerate(words) if word.startswith("#")), len(words))]
        result, attributes = True, 0
        while words:
            attrib = words.pop(0)
            negate = attrib.startswith("!")
            name, attributes = _lower(attrib[negate:]), attributes + 1
            if name == "all":  # alone (ssh lets one criterion before it pass)
                if attributes > 2 or words:
                    raise SshConfigError(f"{at}: '{attrib}' cannot be combined with other Match attributes")
                return result and not negate
            if name in ("canonical", "final"):
                self.state.want_final |= name == "final"
                result = result and self.final != negate
                continue
            arg = words.pop(0) if words else ""
            if not arg:
                raise SshConfigError(f"{at}: missing Match criteria for {attrib}")
            if name == "exec":
                _expand(arg, dict.fromkeys("CLdhiklnpru", ""), at)  # an unknown token fails first, as in ssh
                if result:
                    raise SshConfigError(f"Match exec in {at.replace(' line ', ':')} is not evaluated by "
                                         f"edgeprune's own parser; {_INSTALL}")
            elif name in subjects:
                result = result and (_match_list(subjects[name], arg, name.endswith("host")) == 1) != negate
            else:
                raise SshConfigError(f"{at}: unsupported Match attribute {attrib}")
        if attributes == 0:
            raise SshConfigError(f"{at}: bad Match condition")
        return result

    def jump(self, value: str, at: str) -> None:
        """ProxyJump as Debian's 9.2p1-2+deb12u10 reads it: up to the first blank or '#', every hop checked, the
        last kept (the others print before it); ``none`` only as the whole value; set, it blocks ProxyCommand."""
        state = self.state
        if _lower(value) == "none":
            state.jump = state.jump or ((None, "none", 0, None) if self.active else None)
            return
        spec = value[:1] + re.split("[ \t\n\v\f\r]", value[1:], maxsplit=1)[0]  # the first blank ends it, after one
        hops = spec.split("#")[0].rstrip(" \t\n\v\f\r").split(",")
        parsed = [_hop(hop) for hop in hops]
        if None in parsed:
            raise SshConfigError(f'{at}: invalid ProxyJump "{value}"')
        if self.active and state.jump is None and "proxycommand" not in state.scalars:
            state.jump = parsed[-1] + (",".join(hops[:-1]) or None,)  # type: ignore[operator]
            state.scalars["proxycommand"] = "none"


def _value(keyword: str, args: List[str], at: str) -> str:
    """One checked value as ssh -G prints it; "" for a ``none`` that leaves the option unset."""
    arg, value = args[0], None
    if keyword == "port":
        value = str(_port(arg)) if _port(arg) > 0 else None
    elif keyword in ("connecttimeout", "serveraliveinterval"):
        times = list(_TIME.finditer(arg))  # convtime: 90, 1h30m ... (a bare number only last)
        total = sum(int(t[1]) * _UNITS[_lower(t[2])] for t in times)
        valid = times and "".join(t[0] for t in times) == arg and total < 2 ** 31 and min(int(t[1]) for t in times) >= 0
        value = "" if arg == "none" else str(total) if valid else None
    elif keyword == "serveralivecountmax":
        value = str(int(arg)) if re.fullmatch(_NUMBER, arg) and 0 <= int(arg) < 2 ** 31 else None
    else:
        value = _TABLES[keyword].get(_lower(arg)) if keyword in _TABLES else arg
    if value is None or len(args) > 1:
        raise SshConfigError(f"{at}: bad {keyword} {' '.join(args)!r}")
    return value


def _output(name: str, state: _State) -> Dump:
    """fill_default_options then dump_client_config, for KEYWORDS."""
    scalars, thishost, host_arg = state.scalars, socket.gethostname(), state.host_arg
    port, user, alias = scalars.get("port", "22"), scalars.get("user", state.user), scalars.get("hostkeyalias")
    jump = None if state.jump == (None, "none", 0, None) else state.jump
    if jump and (jump[1], jump[2] if jump[2] > 0 else 22, jump[0] or user) == (name, int(port), user):
        raise SshConfigError(f"jumphost loop via {jump[1]}")
    tokens = {"C": hashlib.sha1((thishost + name + port + user).encode(errors="surrogateescape")).hexdigest(),
              "L": thishost.split(".")[0], "i": str(os.getuid()), "k": _lower(alias) if alias else host_arg,
              "l": thishost, "n": host_arg, "p": port, "d": state.home, "h": name, "r": user, "u": state.user}
    known = state.lists.get("userknownhostsfile", ["~/.ssh/known_hosts", "~/.ssh/known_hosts2"])
    system = state.lists.get("globalknownhostsfile", ["/etc/ssh/ssh_known_hosts", "/etc/ssh/ssh_known_hosts2"])
    out = {"hostname": [name], "port": [port], "user": [user], "hostkeyalias": [_lower(alias)] if alias else [],
           "userknownhostsfile": ["none" if _lower(known[0]) == "none" else " ".join(
               _expand(_tilde(k, state.home), tokens, "UserKnownHostsFile", True) for k in known)],
           "globalknownhostsfile": ["none" if _lower(system[0]) == "none" else " ".join(system)],
           "identityfile": [path for path, _ in state.files["identityfile"]] or list(_DEFAULT_IDS),
           "certificatefile": [path for path, _ in state.files["certificatefile"]]}
    for key, default in (("identitiesonly", "no"), ("connecttimeout", "none"), ("stricthostkeychecking", "ask"),
                         ("serveraliveinterval", "0"), ("serveralivecountmax", "3")):
        out[key] = [scalars.get(key, default)]
    if jump:
        bracket = ":" in jump[1] or not jump[1].strip("0123456789.")
        out["proxyjump"] = [(f"{jump[3]}," if jump[3] else "") + (f"{jump[0]}@" if jump[0] else "") +
                            (f"[{jump[1]}]" if bracket else jump[1]) + (f":{jump[2]}" if jump[2] > 0 else "")]
    elif _lower(scalars.get("proxycommand", "none")) != "none":
        out["proxycommand"] = [scalars["proxycommand"]]
    return {key: values for key, values in out.items() if values}


def dump(host: str, config_path: Optional[str], *, options: Sequence[Tuple[str, str]] = (),
         home: Optional[str] = None, local_user: Optional[str] = None) -> Dump:
    """What ``ssh -G -F config_path [-o K=V for options] host`` prints, as {keyword: [values in order]} for
    KEYWORDS. ``config_path`` None: ~/.ssh/config then /etc/ssh/ssh_config, as ssh without -F; "none": no file.
    ``home`` and ``local_user`` default to the current user's (``home`` also stands for $HOME in Include)."""
    me = pwd.getpwuid(os.getuid())
    state = _State(local_user or me.pw_name, home or me.pw_dir, home or os.environ.get("HOME") or me.pw_dir)
    for key, value in options:
        _Reader(state, "").line(f"{key}={value}", "command-line")
    user, at, bare = host.rpartition("@")
    parsed = _hop(host) if host.startswith("ssh://") else None if at and not user else (user or None, bare, -1)
    if parsed is None or not parsed[1]:
        raise SshConfigError(f"{host!r} is not a host ssh accepts")
    user, state.host_arg, port = parsed
    state.scalars.update({"user": user} if user and "user" not in state.scalars else {})
    state.scalars.update({"port": str(port)} if port > 0 and "port" not in state.scalars else {})
    files = [] if _lower(config_path or "") == "none" else [(config_path, True, True, False)] if config_path else [
        (os.path.join(state.home, ".ssh", "config"), True, False, True), ("/etc/ssh/ssh_config", False, False, False)]
    for path, userconf, required, checkperm in files:
        _Reader(state, state.host_arg, userconf=userconf).read(path, required, checkperm)
    scalars = state.scalars  # the name, as ssh.c makes it: HostName with %h, lowercased unless an address
    if scalars.get("canonicalizehostname", "no") != "no" or \
            _lower(state.lists.get("canonicalizepermittedcnames", ["none"])[0]) != "none":
        raise SshConfigError(f"the config asks ssh to canonicalise {host!r} (DNS lookups); {_INSTALL}")
    name = _expand(scalars.get("hostname", "%h"), {"h": state.host_arg}, "HostName")
    scalars.update({"hostname": name} if "hostname" in scalars else {})
    try:  # an address as getnameinfo writes it (127.1 is 127.0.0.1; numeric only, nothing is looked up)
        found = socket.getaddrinfo(name, "22", 0, socket.SOCK_STREAM, 0, socket.AI_NUMERICHOST | socket.AI_NUMERICSERV)
        numeric = socket.getnameinfo(found[0][4], socket.NI_NUMERICHOST)[0] if len(found) == 1 else None
    except (OSError, UnicodeError, ValueError):
        numeric = None
    if numeric is None:
        name = name if "%" in name or ":" in name or not name.strip("0123456789.") else _lower(name)
    elif _lower(numeric) != _lower(name):
        name = numeric
    if state.want_final:  # Match final: every file again, Host patterns now see the resolved name
        state.scalars["hostname"] = name
        for path, userconf, required, checkperm in files:
            _Reader(state, name, final=True, userconf=userconf).read(path, required, checkperm)
    return _output(name, state)
