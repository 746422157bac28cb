"""Choosing the TFLite interpreter.

A device has exactly one of three interchangeable interpreters, in order of
preference: ``ai_edge_litert`` (the maintained LiteRT wheel), ``tflite_runtime``
(the legacy wheel, the only one for old Pi images) and full ``tensorflow``.
TensorFlow takes seconds and hundreds of MiB to import, which would distort
the memory figures and the start-up time, so it is only imported when it is
the runtime actually chosen; everything else looks it up with find_spec.
"""

from __future__ import annotations

import importlib
import importlib.util
import inspect
from typing import Any, Callable, Dict, List, NamedTuple, Optional, Tuple

from .protocol import RUNTIME_MISSING, AgentError

class RuntimeSpec(NamedTuple):
    """One TFLite interpreter a device may have: adding a runtime is one row of RUNTIMES.

    ``api`` is the dotted module path that holds ``Interpreter``; ``extras`` where ``OpResolverType`` and
    ``load_delegate`` live when that is another module (TensorFlow keeps them in ``lite.experimental``).
    """

    name: str
    dists: Tuple[str, ...]  # distribution names; the first is the one to install
    api: str
    extras: Optional[str] = None


#: In preference order for --runtime auto.
RUNTIMES: Tuple[RuntimeSpec, ...] = (
    RuntimeSpec("ai_edge_litert", ("ai-edge-litert", "ai-edge-litert-nightly"), "ai_edge_litert.interpreter"),
    RuntimeSpec("tflite_runtime", ("tflite-runtime", "tflite-runtime-nightly"), "tflite_runtime.interpreter"),
    RuntimeSpec("tensorflow", ("tensorflow", "tensorflow-cpu", "tensorflow-aarch64", "tensorflow-macos",
                               "intel-tensorflow", "tf-nightly"), "tensorflow.lite", "tensorflow.lite.experimental"),
)
RUNTIME_NAMES: Tuple[str, ...] = tuple(spec.name for spec in RUNTIMES)
DIST_NAMES: Dict[str, Tuple[str, ...]] = {spec.name: spec.dists for spec in RUNTIMES}
_SPECS: Dict[str, RuntimeSpec] = {spec.name: spec for spec in RUNTIMES}

INSTALL_HINT = (
    "install a TFLite interpreter for this Python: `pip install ai-edge-litert` "
    "(or, where no ai-edge-litert wheel exists for the platform, "
    "`pip install tflite-runtime`)"
)


class Runtime:
    """The chosen interpreter module, reduced to what the agent needs."""

    def __init__(self, name: str, version: Optional[str], interpreter_cls: Any,
                 op_resolver_type: Any, load_delegate: Optional[Callable[..., Any]]) -> None:
        self.name = name
        self.version = version
        self.Interpreter = interpreter_cls
        self.OpResolverType = op_resolver_type
        self.load_delegate = load_delegate

    @property
    def can_disable_default_delegates(self) -> bool:
        """Whether XNNPACK (the default CPU delegate) can be switched off.

        Only interpreters whose constructor takes experimental_op_resolver_type
        and whose enum has BUILTIN_WITHOUT_DEFAULT_DELEGATES can; older
        tflite_runtime wheels (< 2.5) cannot, and then --no-xnnpack is reported
        as not honoured rather than silently ignored.
        """
        if self.OpResolverType is None:
            return False
        if not hasattr(self.OpResolverType, "BUILTIN_WITHOUT_DEFAULT_DELEGATES"):
            return False
        try:
            params = inspect.signature(self.Interpreter.__init__).parameters
        except (TypeError, ValueError):
            return False
        return "experimental_op_resolver_type" in params

    def interpreter_kwargs(self, threads: Optional[int], no_default_delegates: bool,
                           delegates: Optional[List[Any]] = None) -> Dict[str, Any]:
        kwargs: Dict[str, Any] = {}
        if threads is not None:
            kwargs["num_threads"] = threads
        if no_default_delegates and self.can_disable_default_delegates:
            kwargs["experimental_op_resolver_type"] = (
                self.OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES)
        if delegates:
            kwargs["experimental_delegates"] = delegates
        return kwargs


class _Unavailable(Exception):
    """A runtime that cannot be used here, with the reason why."""


def runtime_message(exc: BaseException) -> str:
    """A runtime's exception text, or the exception's type when it says nothing."""
    text = str(exc).strip()
    return text if text else type(exc).__name__


def dist_version(name: str) -> Optional[str]:
    """Installed version of a runtime module's distribution, without importing it."""
    try:
        from importlib import metadata
    except ImportError:  # pragma: no cover - Python < 3.8
        return None
    for dist in DIST_NAMES.get(name, (name,)):
        try:
            return metadata.version(dist)
        except Exception:
            continue
    return None


def _is_installed(name: str) -> bool:
    try:
        return importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):
        return False


def _resolve(dotted: str) -> Any:
    """``tensorflow.lite`` (an attribute of the package) or ``tflite_runtime.interpreter`` (a submodule)."""
    parts = dotted.split(".")
    obj = importlib.import_module(parts[0])
    for index, part in enumerate(parts[1:], start=1):
        found = getattr(obj, part, None)
        obj = found if found is not None else importlib.import_module(".".join(parts[:index + 1]))
    return obj


def _load(name: str) -> Runtime:
    if not _is_installed(name):
        raise _Unavailable("not installed")
    spec = _SPECS[name]
    try:
        api = _resolve(spec.api)
        extras = _resolve(spec.extras) if spec.extras else api
        top = importlib.import_module(name)
        version = dist_version(name) or getattr(top, "__version__", None)
        return Runtime(name, version, api.Interpreter, getattr(extras, "OpResolverType", None),
                       getattr(extras, "load_delegate", None))
    except Exception as exc:  # broken wheels fail in many ways (numpy ABI, glibc)
        raise _Unavailable("installed but import failed: %s: %s"
                           % (type(exc).__name__, exc))


def select_runtime(choice: str = "auto") -> Runtime:
    """Import the requested runtime, or the first usable one for ``auto``.

    Raises AgentError(runtime-missing) listing why each candidate was
    rejected, so a device with a broken wheel is told so instead of being
    told to install what it already has.
    """
    if choice == "auto":
        order: Tuple[str, ...] = RUNTIME_NAMES
    elif choice in RUNTIME_NAMES:
        order = (choice,)
    else:  # argparse restricts choices; this guards direct callers
        raise ValueError("unknown runtime %r" % (choice,))
    reasons: List[str] = []
    for name in order:
        try:
            return _load(name)
        except _Unavailable as exc:
            reasons.append("%s: %s" % (name, exc))
    wanted = "no TFLite runtime is usable" if choice == "auto" else (
        "runtime %s is not usable" % choice)
    raise AgentError(RUNTIME_MISSING, "%s (%s)" % (wanted, "; ".join(reasons)),
                     hint=INSTALL_HINT)


def probe_runtimes() -> Dict[str, Any]:
    """Report every runtime's availability for ``probe``.

    ai_edge_litert and tflite_runtime are really imported (cheap, and it is
    the only way to catch a wheel that is installed but broken); tensorflow is
    only looked up, so probing never pays for a TensorFlow import.
    """
    entries: List[Dict[str, Any]] = []
    auto: Optional[str] = None
    for name in RUNTIME_NAMES:
        entry: Dict[str, Any] = {
            "module": name,
            "package": DIST_NAMES[name][0],
            "installed": _is_installed(name),
            "available": False,
            "version": None,
            "checked_by": "find_spec" if name == "tensorflow" else "import",
            "error": None,
        }
        if not entry["installed"]:
            entry["error"] = "not installed"
        elif name == "tensorflow":
            entry["version"] = dist_version(name)
            entry["available"] = True
        else:
            try:
                rt = _load(name)
                entry["available"] = True
                entry["version"] = rt.version
                entry["can_disable_xnnpack"] = rt.can_disable_default_delegates
            except _Unavailable as exc:
                entry["error"] = str(exc)
                entry["version"] = dist_version(name)
        if entry["available"] and auto is None:
            auto = name
        entries.append(entry)
    return {"runtimes": entries, "auto": auto}
