"""``plan``, per cell, before the rounds: the file, what its flatbuffer says, a pre-flight parse, and init time
and peak RSS measured in a forked child that loads only that cell (so one cell cannot inflate another's figures).

The flatbuffer is read first (``flatbuffer.read_model``): a file it refuses never reaches an interpreter, a
model with custom ops the cell's runtime cannot have is ``unsupported-op`` (unless the cell has a delegate,
which may run them: then the runtime's own refusal is translated, ``opcheck.load_error``), an input the agent
cannot feed (a string) is ``unsupported-input``, and the cell's ``input_shapes`` are checked against the
model's inputs (``bad-arguments``): the shapes each input is resized to come from here.
"""

from __future__ import annotations

import json
import os
from typing import Any, Dict, List, NamedTuple

from . import flatbuffer, opcheck
from . import runtime as runtime_mod
from .protocol import BAD_ARGUMENTS, INTERNAL, MODEL_LOAD, AgentError, write_all


class Prepared(NamedTuple):
    """A cell that passed its checks and its child: what the parent needs to load it for the rounds."""

    runtime: Any                    # runtime.Runtime
    info: flatbuffer.ModelInfo
    shapes: Dict[int, List[int]]    # input tensor index -> the dims it is resized to (only those that change)


def resolve_shapes(info: flatbuffer.ModelInfo, input_shapes: Dict[str, List[int]]) -> Dict[int, List[int]]:
    """The inputs to resize: those ``input_shapes`` names (by tensor name, same rank), and every other input
    with a dynamic dimension (-1 in its shape_signature), at 1 for each such dimension."""
    names = [t.name for t in info.inputs]
    unknown = sorted(set(input_shapes) - set(names))
    if unknown:
        raise AgentError(BAD_ARGUMENTS, "input_shapes names %s, not an input of this model; its inputs are %s"
                         % (", ".join("`%s`" % n for n in unknown), ", ".join("`%s`" % n for n in names)),
                         hint="name inputs by their tensor names, as the model's inputs list them")
    shapes: Dict[int, List[int]] = {}
    for tensor in info.inputs:
        if tensor.name in input_shapes:
            dims = list(input_shapes[tensor.name])
            if len(dims) != len(tensor.shape_signature):
                raise AgentError(BAD_ARGUMENTS, "input_shapes gives `%s` %d dimensions %s; the input has %d (%s)"
                                 % (tensor.name, len(dims), dims, len(tensor.shape_signature),
                                    tensor.shape_signature))
        elif -1 in tensor.shape_signature:
            dims = [1 if d == -1 else d for d in tensor.shape_signature]
        else:
            continue
        if dims != list(tensor.shape):
            shapes[tensor.index] = dims
    return shapes


def check_model(info: flatbuffer.ModelInfo, cell: Dict[str, Any], runtime: str) -> None:
    """What the flatbuffer alone says this cell cannot run: custom ops (without a delegate), inputs."""
    if not cell["delegate"]:
        opcheck.refuse_custom_ops([op.name for op in info.custom_ops], runtime)
    from . import evaldata

    error = evaldata.unfeedable([(t.name, t.dtype) for t in info.inputs])
    if error is not None:
        raise error


def _reset_peak_rss() -> bool:
    """Linux (>= 4.0): make VmHWM this process's current RSS, so the peak read later is this child's own."""
    try:
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")
        return True
    except OSError:
        return False


def _child_load(rt: Any, cell: Dict[str, Any], shapes: Dict[int, List[int]]) -> Dict[str, Any]:
    """In the forked child: load only this cell, invoke it once on zeros, report init time and memory."""
    import numpy as np

    from . import measure, model

    peak_reset = _reset_peak_rss()
    before = measure.rss_peak_kib()
    delegates = model.load_delegates(rt, cell["delegate"], cell["delegate_options"])
    interpreter, init_ms = model.load_interpreter(rt, cell["model"], cell["threads"], not cell["xnnpack"],
                                                  delegates, shapes)
    after = measure.rss_peak_kib()
    try:  # the first invoke allocates too (e.g. XNNPACK's packed weights); its failure is the rounds' to report
        for detail in interpreter.get_input_details():
            interpreter.set_tensor(detail["index"], np.zeros(detail["shape"], dtype=detail["dtype"]))
        interpreter.invoke()
    except Exception:
        pass
    return {"init_ms": init_ms, "rss_before_load_kib": before, "rss_after_load_kib": after,
            "rss_peak_kib": measure.rss_peak_kib(), "rss_peak_reset": peak_reset}


def measure_in_child(rt: Any, cell: Dict[str, Any], shapes: Dict[int, List[int]]) -> Dict[str, Any]:
    """Run ``_child_load`` in a forked child and return what it sent back through a pipe."""
    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child never returns into the agent
        code = 0
        try:
            os.close(read_fd)
            try:
                reply: Dict[str, Any] = {"ok": _child_load(rt, cell, shapes)}
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


def prepare_cell(cell: Dict[str, Any], runtimes: Dict[str, Any], out: Dict[str, Any]) -> Prepared:
    """Check one cell and measure its init time and peak RSS; fills ``out``."""
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
    info = flatbuffer.read_model(cell["model"])
    out["model"]["ops"] = flatbuffer.describe(info)["ops"]
    check_model(info, cell, rt.name)
    shapes = resolve_shapes(info, cell["input_shapes"])
    if not (cell["delegate"] and info.custom_ops):  # without its delegate such a model cannot load at all
        model.preflight_load(rt, cell["model"])
    memory = measure_in_child(rt, cell, shapes)
    out["init_ms"] = memory.pop("init_ms")
    out["rss_peak_kib"] = memory["rss_peak_kib"]
    out["memory"] = memory
    return Prepared(rt, info, shapes)
