"""The ``plan`` command: one agent process measures many cells in interleaved rounds.

A plan (a JSON file the host writes) lists the cells: a model with its runtime, threads, XNNPACK on/off, the
shapes of its dynamic inputs and per-visit warm-up/runs/min_seconds. The agent checks the plan with plain Python
(no jsonschema on a device), then prepares each cell (``cellprep``: the file, its flatbuffer, a forked pre-flight
parse, init time and peak RSS in a forked child of its own). A cell that fails gets its own error and the others
go on. The parent then loads every loadable cell with its inputs (the eval set's, or generated from the input
tensors when the plan has no eval set: a latency-only plan) and measures them in rounds (``rounds``), and
finally their accuracy on the eval set, once each (null for generated inputs).
"""

from __future__ import annotations

import json
import os
from typing import Any, Dict, List, Optional

from . import PLAN_VERSION
from . import runtime as runtime_mod
from .protocol import BAD_ARGUMENTS, DATA_MISMATCH, AgentError

ROUNDS_DEFAULTS = {"min": 5, "max": 50, "target_ci": 0.02, "budget_s": 300.0}
CELL_DEFAULTS = {"runtime": "auto", "threads": None, "xnnpack": True, "warmup": 20, "runs": 100,
                 "min_seconds": 0.0, "delegate": None, "delegate_options": {}, "input_shapes": {}}
MAX_DELEGATE_OPTIONS = 32
MAX_INPUT_SHAPES = 256
MAX_RANK = 16
MAX_DIM = 2 ** 31 - 1
MAX_CELLS = 256
MAX_PLAN_BYTES = 1 << 20
#: Seconds one cell's per-op profiler run may take (the host's plan deadline allows for it: devices/cells.py).
OP_PROFILE_DEADLINE_S = 120.0


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
    shapes = cell["input_shapes"]
    if not isinstance(shapes, dict) or len(shapes) > MAX_INPUT_SHAPES:
        raise _bad("%s.input_shapes must be an object of at most %d inputs' shapes" % (where, MAX_INPUT_SHAPES))
    for name, dims in shapes.items():
        if (not isinstance(dims, list) or len(dims) > MAX_RANK
                or not all(not isinstance(d, bool) and isinstance(d, int) and 1 <= d <= MAX_DIM for d in dims)):
            raise _bad("%s.input_shapes[%s] must be a list of at most %d positive integers, got %r"
                       % (where, json.dumps(name), MAX_RANK, dims))
    cell["input_shapes"] = {name: list(dims) for name, dims in shapes.items()}
    return cell


def validate_plan(raw: Any, base: str) -> Dict[str, Any]:
    """The plan with its defaults filled in and its paths made absolute; ``bad-arguments`` when it is not one.

    Relative paths are taken from the plan file's folder.
    """
    _check_keys(raw, "the plan", ("plan_version", "cells"),
                ("eval", "seed", "rounds", "samples", "max_eval", "op_profile", "op_profiler", "sustained"))
    if raw["plan_version"] != PLAN_VERSION or isinstance(raw["plan_version"], bool):
        raise _bad("plan_version %r is not supported by this agent (it runs plan_version %d)"
                   % (raw["plan_version"], PLAN_VERSION))
    eval_path = raw.get("eval")
    plan: Dict[str, Any] = {"plan_version": PLAN_VERSION,
                            "eval": _path(eval_path, "eval", base) if eval_path is not None else None,
                            "seed": _int(raw.get("seed", 0), "seed", 0, 2 ** 31 - 1),
                            "samples": raw.get("samples", False), "max_eval": raw.get("max_eval")}
    if not isinstance(plan["samples"], bool):
        raise _bad("samples must be true or false")
    if plan["max_eval"] is not None:
        _int(plan["max_eval"], "max_eval", 1)
        if plan["eval"] is None:
            raise _bad("max_eval needs an eval file (a plan without eval generates its inputs)")
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
    _extras(raw, plan, ids)
    return plan


def _extras(raw: Dict[str, Any], plan: Dict[str, Any], ids: List[str]) -> None:
    """``op_profile``, ``op_profiler`` and ``sustained`` (issue 13): what the plan does after its rounds."""
    plan["op_profile"] = raw.get("op_profile", False)
    if not isinstance(plan["op_profile"], bool):
        raise _bad("op_profile must be true or false")
    tool = raw.get("op_profiler")
    if tool is not None and (not isinstance(tool, str) or not 1 <= len(tool) <= 4096):
        raise _bad("op_profiler must be null or a path of 1-4096 characters")
    plan["op_profiler"] = tool
    sustained = raw.get("sustained")
    if sustained is not None:
        _check_keys(sustained, "sustained", ("cell", "seconds"), ())
        if sustained["cell"] not in ids:
            raise _bad("sustained.cell %s is not a cell of the plan" % json.dumps(sustained["cell"])[:140])
        sustained = {"cell": sustained["cell"],
                     "seconds": _number(sustained["seconds"], "sustained.seconds", 0.0, 86400.0, open_low=True)}
    plan["sustained"] = sustained


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


# --- the command ---


def _cell_error(out: Dict[str, Any], exc: AgentError) -> None:
    out["status"] = "error"
    out["error"] = exc.to_json()


def _load_for_rounds(cell: Dict[str, Any], prepared: Any, arrays: Optional[Dict[str, Any]], seed: int,
                     out: Dict[str, Any]) -> Any:
    """The parent's interpreter for one cell, with its timing inputs (from the eval arrays, or generated when
    there are none); describes the model and its inputs into ``out``."""
    from . import evaldata, model, rounds

    rt = prepared.runtime
    delegates = model.load_delegates(rt, cell["delegate"], cell["delegate_options"])
    interpreter, _ = model.load_interpreter(rt, cell["model"], cell["threads"], not cell["xnnpack"], delegates,
                                            prepared.shapes)
    out["runtime"]["xnnpack"] = model.xnnpack_applied(interpreter, bool(delegates))
    in_details, out_details = model.describe_all_io(interpreter, out["model"])
    if arrays is None:
        cell_seed = evaldata.generated_seed(seed, out["model"]["sha256"])
        feeds, tensors = evaldata.generate_feeds(in_details, cell_seed)
        out["inputs"] = {"source": "generated", "seed": cell_seed, "samples": len(feeds), "tensors": tensors}
        return rounds.LoadedCell(cell, interpreter, in_details, out_details, feeds, None)
    if not in_details or not out_details:
        raise AgentError(DATA_MISMATCH, "accuracy needs a model with inputs and an output; this one has %d inputs "
                         "and %d outputs" % (len(in_details), len(out_details)))
    inputs, feeds, tensors = evaldata.eval_feeds(arrays, in_details)
    out["inputs"] = {"source": "eval", "seed": None, "samples": len(feeds), "tensors": tensors}
    return rounds.LoadedCell(cell, interpreter, in_details, out_details, feeds, inputs)


def cmd_plan(plan: Dict[str, Any], doc: Dict[str, Any]) -> None:
    """Measure a checked plan (``read_plan``) into ``doc`` (see schemas/agent-plan-result.schema.json)."""
    from . import sysinfo

    doc["device"] = sysinfo.collect_device()
    from . import cellprep, evaldata, measure, rounds

    arrays, y = evaldata.read_eval(plan["eval"], plan["max_eval"]) if plan["eval"] else (None, None)
    cells: List[Dict[str, Any]] = []
    runtimes: Dict[str, Any] = {}
    ready = []
    for cell in plan["cells"]:  # every child before any interpreter is loaded here: the children stay small
        out: Dict[str, Any] = {"id": cell["id"], "status": "ok"}
        cells.append(out)
        try:
            ready.append((cell, cellprep.prepare_cell(cell, runtimes, out), out))
        except AgentError as exc:
            _cell_error(out, exc)
    doc["cells"] = cells
    loaded = []
    for cell, prepared, out in ready:
        try:
            loaded.append((_load_for_rounds(cell, prepared, arrays, plan["seed"], out), out))
        except AgentError as exc:
            _cell_error(out, exc)
    del arrays
    if not loaded:
        _plan_failed(cells, "no cell of the plan could be loaded")
    result = rounds.run_rounds([lc for lc, _ in loaded], plan["seed"], plan["rounds"])
    for lc, out in loaded:
        if lc.failure is not None:
            _cell_error(out, lc.failure)
    if all(lc.failure is not None for lc, _ in loaded):
        _plan_failed(cells, "no cell of the plan could be measured")
    doc["visits"] = result["visits"]
    doc["stopped_by"] = result["stopped_by"]
    doc["rounds_done"] = result["rounds_done"]
    doc["rounds_s"] = result["rounds_s"]
    for lc, out in loaded:
        if lc.failure is not None:
            continue
        out.update(rounds.pooled_timing(lc, plan["samples"], plan["rounds"]["target_ci"]))
        if lc.prepared is None:  # generated inputs: nothing to be right about (out["inputs"] says so)
            out["accuracy"] = None
            continue
        try:
            out["accuracy"] = measure.evaluate_inputs(lc.interpreter, lc.in_details, lc.out_details[0],
                                                      lc.prepared, y)
        except AgentError as exc:
            _cell_error(out, exc)
    _after_rounds(plan, [(lc, out) for lc, out in loaded if out["status"] == "ok"], doc)
    doc["rss_peak_kib"] = measure.rss_peak_kib()


def _after_rounds(plan: Dict[str, Any], measured: List[Any], doc: Dict[str, Any]) -> None:
    """The sustained run, then the op profiles: after the rounds, so neither heats or loads the device while the
    cells are compared. The A/A twin is not profiled (its file and settings are the baseline's)."""
    from . import sustained

    wanted = plan["sustained"]
    if wanted is not None:
        lc = next((lc for lc, out in measured if lc.id == wanted["cell"]), None)
        if lc is not None:
            doc["sustained"] = sustained.run_sustained(lc.interpreter, lc.feeds, lc.id, wanted["seconds"])
        else:
            failed = AgentError(DATA_MISMATCH, "the cell %s was not measured, so it was not kept running"
                                % json.dumps(wanted["cell"])[:140])
            doc["sustained"] = {"cell": wanted["cell"], "seconds": wanted["seconds"], "stopped_by": "error",
                                "error": failed.to_json(), "sources": sustained.sensors(), "samples": []}
    if plan["op_profile"]:
        from . import opprofile

        for lc, out in measured:
            if not lc.id.endswith("@aa"):
                out["op_profile"] = opprofile.op_profile(lc.interpreter, lc.cell, plan["op_profiler"],
                                                         OP_PROFILE_DEADLINE_S)


def _plan_failed(cells: List[Dict[str, Any]], what: str) -> None:
    first = next(out["error"] for out in cells if "error" in out)
    raise AgentError(first["kind"], "%s; the first one failed with: %s" % (what, first["message"]),
                     hint=first.get("hint"))
