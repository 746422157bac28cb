"""The ``plan`` command: one agent process measures many cells in interleaved rounds.

A plan (a JSON file the host writes) lists the cells: a model with its runtime, threads, XNNPACK on/off and
per-visit warm-up/runs/min_seconds. The agent checks the plan with plain Python (no jsonschema on a device),
then, per cell: the file (sha256, size), a forked pre-flight parse, and init time and peak RSS measured in a
forked child of its own that loads only that cell (so one cell cannot inflate another's figures). A cell that
fails gets its own error and the others go on. The parent then loads every loadable cell and measures them in
rounds (``rounds``), and finally their accuracy on the eval set, once each.
"""

from __future__ import annotations

import json
import os
from typing import Any, Dict, List, Optional

from . import PLAN_SCHEMA_VERSION, PLAN_VERSION
from . import runtime as runtime_mod
from .protocol import BAD_ARGUMENTS, INTERNAL, MODEL_LOAD, AgentError, write_all

ROUNDS_DEFAULTS = {"min": 5, "max": 50, "target_ci": 0.02, "budget_s": 300.0}
CELL_DEFAULTS = {"runtime": "auto", "threads": None, "xnnpack": True, "warmup": 20, "runs": 100,
                 "min_seconds": 0.0, "delegate": None, "delegate_options": {}}
MAX_DELEGATE_OPTIONS = 32
MAX_CELLS = 256
MAX_PLAN_BYTES = 1 << 20


def _bad(message: str) -> AgentError:
    return AgentError(BAD_ARGUMENTS, "bad plan: %s" % message,
                      hint="see docs/agent.md (`plan`) or schemas/agent-plan.schema.json")


def _check_keys(obj: Any, where: str, required: tuple, optional: tuple) -> None:
    if not isinstance(obj, dict):
        raise _bad("%s must be an object" % where)
    missing = [k for k in required if k not in obj]
    unknown = sorted(k for k in obj if k not in required + optional)
    if missing:
        raise _bad("%s lacks %s" % (where, ", ".join(missing)))
    if unknown:
        raise _bad("%s has unknown keys %s" % (where, ", ".join(unknown)))


def _int(value: Any, where: str, minimum: int, maximum: int = 10 ** 9) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not minimum <= value <= maximum:
        raise _bad("%s must be an integer in [%d, %d], got %r" % (where, minimum, maximum, value))
    return value


def _number(value: Any, where: str, minimum: float, maximum: float, open_low: bool = False) -> float:
    ok = not isinstance(value, bool) and isinstance(value, (int, float))
    if not ok or not (minimum < value <= maximum if open_low else minimum <= value <= maximum):
        raise _bad("%s must be a number in %s%g, %g], got %r"
                   % (where, "(" if open_low else "[", minimum, maximum, value))
    return float(value)


def _path(value: Any, where: str, base: str) -> str:
    if not isinstance(value, str) or not value:
        raise _bad("%s must be a non-empty path" % where)
    return os.path.normpath(os.path.join(base, value))


def _cell(raw: Any, index: int, base: str) -> Dict[str, Any]:
    where = "cells[%d]" % index
    _check_keys(raw, where, ("id", "model"), tuple(CELL_DEFAULTS))
    cell = dict(CELL_DEFAULTS)
    cell.update(raw)
    if not isinstance(cell["id"], str) or not 1 <= len(cell["id"]) <= 128:
        raise _bad("%s.id must be a string of 1-128 characters" % where)
    cell["model"] = _path(cell["model"], where + ".model", base)
    if cell["runtime"] not in ("auto",) + runtime_mod.RUNTIME_NAMES:
        raise _bad("%s.runtime must be one of %s, got %r"
                   % (where, ", ".join(("auto",) + runtime_mod.RUNTIME_NAMES), cell["runtime"]))
    if cell["threads"] is not None:
        _int(cell["threads"], where + ".threads", 1, 1024)
    if not isinstance(cell["xnnpack"], bool):
        raise _bad("%s.xnnpack must be true or false" % where)
    _int(cell["warmup"], where + ".warmup", 0)
    _int(cell["runs"], where + ".runs", 1)
    cell["min_seconds"] = _number(cell["min_seconds"], where + ".min_seconds", 0.0, 86400.0)
    if cell["delegate"] is not None and (not isinstance(cell["delegate"], str) or not 1 <= len(cell["delegate"]) <= 4096):
        raise _bad("%s.delegate must be null or a library path or name of 1-4096 characters" % where)
    options = cell["delegate_options"]
    if (not isinstance(options, dict) or len(options) > MAX_DELEGATE_OPTIONS
            or not all(isinstance(k, str) and isinstance(v, str) for k, v in options.items())):
        raise _bad("%s.delegate_options must be an object of at most %d string values"
                   % (where, MAX_DELEGATE_OPTIONS))
    cell["delegate_options"] = dict(options)
    return cell


def validate_plan(raw: Any, base: str) -> Dict[str, Any]:
    """The plan with its defaults filled in and its paths made absolute; ``bad-arguments`` when it is not one.

    Relative paths are taken from the plan file's folder.
    """
    _check_keys(raw, "the plan", ("plan_version", "eval", "cells"), ("seed", "rounds", "samples", "max_eval"))
    if raw["plan_version"] != PLAN_VERSION or isinstance(raw["plan_version"], bool):
        raise _bad("plan_version %r is not supported by this agent (it runs plan_version %d)"
                   % (raw["plan_version"], PLAN_VERSION))
    plan: Dict[str, Any] = {"plan_version": PLAN_VERSION, "eval": _path(raw["eval"], "eval", base),
                            "seed": _int(raw.get("seed", 0), "seed", 0, 2 ** 31 - 1),
                            "samples": raw.get("samples", False), "max_eval": raw.get("max_eval")}
    if not isinstance(plan["samples"], bool):
        raise _bad("samples must be true or false")
    if plan["max_eval"] is not None:
        _int(plan["max_eval"], "max_eval", 1)
    rounds = dict(ROUNDS_DEFAULTS)
    _check_keys(raw.get("rounds", {}), "rounds", (), tuple(ROUNDS_DEFAULTS))
    rounds.update(raw.get("rounds", {}))
    _int(rounds["min"], "rounds.min", 1, 100000)
    _int(rounds["max"], "rounds.max", rounds["min"], 100000)
    rounds["target_ci"] = _number(rounds["target_ci"], "rounds.target_ci", 0.0, 100.0, open_low=True)
    rounds["budget_s"] = _number(rounds["budget_s"], "rounds.budget_s", 0.0, 86400.0)
    plan["rounds"] = rounds
    cells = raw["cells"]
    if not isinstance(cells, list) or not 1 <= len(cells) <= MAX_CELLS:
        raise _bad("cells must be a list of 1 to %d cells" % MAX_CELLS)
    plan["cells"] = [_cell(c, i, base) for i, c in enumerate(cells)]
    ids = [c["id"] for c in plan["cells"]]
    if len(set(ids)) != len(ids):
        raise _bad("cell ids must be unique; repeated: %s"
                   % ", ".join(sorted({i for i in ids if ids.count(i) > 1})))
    return plan


def read_plan(path: str) -> Dict[str, Any]:
    try:
        with open(path, "rb") as fh:
            data = fh.read(MAX_PLAN_BYTES + 1)
    except OSError as exc:
        raise _bad("cannot read %s: %s" % (path, exc))
    if len(data) > MAX_PLAN_BYTES:
        raise _bad("%s is larger than %d bytes" % (path, MAX_PLAN_BYTES))
    try:
        raw = json.loads(data.decode("utf-8"), parse_constant=_no_constant)
    except ValueError as exc:
        raise _bad("%s is not JSON: %s" % (path, exc))
    return validate_plan(raw, os.path.dirname(os.path.abspath(path)))


def _no_constant(name: str) -> Any:
    raise ValueError("%s is not JSON" % name)


# --- per cell, before the rounds: file, pre-flight parse, init time and peak RSS in a child of its own ---


def _reset_peak_rss() -> bool:
    """Linux (>= 4.0): make VmHWM this process's current RSS, so the peak read later is this child's own."""
    try:
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")
        return True
    except OSError:
        return False


def _child_load(rt: Any, cell: Dict[str, Any]) -> Dict[str, Any]:
    """In the forked child: load only this cell, invoke it once on zeros, report init time and memory."""
    import numpy as np

    from . import measure, model

    peak_reset = _reset_peak_rss()
    before = measure.rss_peak_kib()
    delegates = model.load_delegates(rt, cell["delegate"], cell["delegate_options"])
    interpreter, init_ms = model.load_interpreter(rt, cell["model"], cell["threads"], not cell["xnnpack"], delegates)
    after = measure.rss_peak_kib()
    details = interpreter.get_input_details()
    if len(details) == 1:  # the first invoke allocates too (e.g. XNNPACK's packed weights)
        interpreter.set_tensor(details[0]["index"], np.zeros(details[0]["shape"], dtype=details[0]["dtype"]))
        interpreter.invoke()
    return {"init_ms": init_ms, "rss_before_load_kib": before, "rss_after_load_kib": after,
            "rss_peak_kib": measure.rss_peak_kib(), "rss_peak_reset": peak_reset}


def measure_in_child(rt: Any, cell: Dict[str, Any]) -> Dict[str, Any]:
    """Run ``_child_load`` in a forked child and return what it sent back through a pipe."""
    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child never returns into the agent
        code = 0
        try:
            os.close(read_fd)
            try:
                reply: Dict[str, Any] = {"ok": _child_load(rt, cell)}
            except AgentError as exc:
                reply = {"error": exc.to_json()}
            except BaseException as exc:  # noqa: B902 - anything becomes this cell's error
                reply = {"error": {"kind": INTERNAL, "message": "%s: %s" % (type(exc).__name__, exc)}}
            write_all(write_fd, json.dumps(reply).encode("utf-8"))
        except BaseException:
            code = 70
        finally:
            os._exit(code)
    os.close(write_fd)
    with os.fdopen(read_fd, "rb") as pipe:
        data = pipe.read()
    _, status = os.waitpid(pid, 0)
    if os.WIFSIGNALED(status) or not data:
        raise AgentError(MODEL_LOAD, "%s %s: the child loading the model died (wait status %d)"
                         % (rt.name, rt.version, status),
                         hint="compare the file's sha256 with the host's copy and transfer it again")
    reply = json.loads(data.decode("utf-8"))
    if "error" in reply:
        err = reply["error"]
        raise AgentError(err["kind"], err["message"], hint=err.get("hint"))
    return reply["ok"]


def runtime_section(rt: Any, cell: Dict[str, Any]) -> Dict[str, Any]:
    off = not cell["xnnpack"]
    return {"module": rt.name, "version": rt.version, "threads": cell["threads"], "xnnpack": None,
            "xnnpack_disable_requested": off,
            "xnnpack_disable_honoured": rt.can_disable_default_delegates if off else None,
            "delegate": {"path": cell["delegate"], "options": dict(cell["delegate_options"])}
            if cell["delegate"] else None}


def prepare_cell(cell: Dict[str, Any], runtimes: Dict[str, Any], out: Dict[str, Any]) -> Optional[Any]:
    """Check one cell and measure its init time and peak RSS; fills ``out``; returns its runtime."""
    from . import model

    choice = cell["runtime"]
    if choice not in runtimes:
        try:
            runtimes[choice] = runtime_mod.select_runtime(choice)
        except AgentError as exc:
            runtimes[choice] = exc
    rt = runtimes[choice]
    if isinstance(rt, AgentError):
        raise rt
    out["runtime"] = runtime_section(rt, cell)
    sha, size = model.check_model_file(cell["model"])
    out["model"] = {"path": cell["model"], "sha256": sha, "size_bytes": size}
    model.preflight_load(rt, cell["model"])
    memory = measure_in_child(rt, cell)
    out["init_ms"] = memory.pop("init_ms")
    out["rss_peak_kib"] = memory["rss_peak_kib"]
    out["memory"] = memory
    return rt


# --- the command ---


def _cell_error(out: Dict[str, Any], exc: AgentError) -> None:
    out["status"] = "error"
    out["error"] = exc.to_json()


def _load_for_rounds(cell: Dict[str, Any], rt: Any, x: Any, out: Dict[str, Any]) -> Any:
    """The parent's interpreter for one cell, with its timing inputs; describes the model into ``out``."""
    from . import evaldata, model, rounds

    delegates = model.load_delegates(rt, cell["delegate"], cell["delegate_options"])
    interpreter, _ = model.load_interpreter(rt, cell["model"], cell["threads"], not cell["xnnpack"], delegates)
    out["runtime"]["xnnpack"] = model.xnnpack_applied(interpreter, bool(delegates))
    in_detail, out_detail = model.describe_io(interpreter, out["model"])
    return rounds.LoadedCell(cell, interpreter, in_detail, out_detail, evaldata.prepare_inputs(x, in_detail))


def cmd_plan(plan: Dict[str, Any], doc: Dict[str, Any]) -> None:
    """Measure a checked plan (``read_plan``) into ``doc`` (see schemas/agent-plan-result.schema.json)."""
    from . import sysinfo

    doc["device"] = sysinfo.collect_device()
    from . import evaldata, measure, rounds

    x, y = evaldata.load_eval(plan["eval"], plan["max_eval"])
    cells: List[Dict[str, Any]] = []
    runtimes: Dict[str, Any] = {}
    ready = []
    for cell in plan["cells"]:  # every child before any interpreter is loaded here: the children stay small
        out: Dict[str, Any] = {"id": cell["id"], "status": "ok"}
        cells.append(out)
        try:
            ready.append((cell, prepare_cell(cell, runtimes, out), out))
        except AgentError as exc:
            _cell_error(out, exc)
    doc["cells"] = cells
    loaded = []
    for cell, rt, out in ready:
        try:
            loaded.append((_load_for_rounds(cell, rt, x, out), out))
        except AgentError as exc:
            _cell_error(out, exc)
    del x
    if not loaded:
        first = next(out["error"] for out in cells if "error" in out)
        raise AgentError(first["kind"], "no cell of the plan could be loaded; the first one failed with: %s"
                         % first["message"], hint=first.get("hint"))
    result = rounds.run_rounds([lc for lc, _ in loaded], plan["seed"], plan["rounds"])
    doc["visits"] = result["visits"]
    doc["stopped_by"] = result["stopped_by"]
    doc["rounds_done"] = result["rounds_done"]
    doc["rounds_s"] = result["rounds_s"]
    for lc, out in loaded:
        out.update(rounds.pooled_timing(lc, plan["samples"], plan["rounds"]["target_ci"]))
        try:
            out["accuracy"] = measure.evaluate(lc.interpreter, lc.in_detail, lc.out_detail, lc.prepared, y, 1)
        except AgentError as exc:
            _cell_error(out, exc)
    doc["rss_peak_kib"] = measure.rss_peak_kib()
