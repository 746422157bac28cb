"""The model file and its interpreter: checking the file, loading it safely, describing its tensors.

A truncated file must not crash the agent (``flatbuffer`` checks the file, ``preflight_load`` parses it in a
child), and every failure to load keeps the runtime's own message with a next step for a person
(``opcheck.load_error``, the one place for it).
"""

from __future__ import annotations

import hashlib
import os
import sys
import time
from typing import Any, Dict, List, Optional, Tuple

import numpy as np

from . import opcheck
from .protocol import DATA_MISMATCH, DELEGATE, MODEL_LOAD, AgentError, write_all
from .runtime import Runtime, runtime_message


def file_digest(path: str) -> Tuple[str, int]:
    """sha256 and size of a file, read in chunks (models can be large)."""
    digest = hashlib.sha256()
    size = 0
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
            size += len(chunk)
    return digest.hexdigest(), size


def check_model_file(path: str) -> Tuple[str, int]:
    if not os.path.exists(path):
        raise AgentError(MODEL_LOAD, "model file not found: %s" % path,
                         hint="check the path passed to `run`")
    if not os.path.isfile(path):
        raise AgentError(MODEL_LOAD, "model path is not a regular file: %s" % path)
    try:
        sha, size = file_digest(path)
    except OSError as exc:
        raise AgentError(MODEL_LOAD, "cannot read model file: %s" % exc)
    if size == 0:
        raise AgentError(MODEL_LOAD, "model file is empty: %s" % path,
                         hint="the transfer to the device probably failed; copy it again")
    return sha, size


def preflight_load(rt: Runtime, model_path: str) -> None:
    """Parse the model in a forked child first.

    tflite_runtime 2.14 has no flatbuffer verifier: a truncated .tflite
    (an interrupted scp, a full SD card) makes it segfault, which would kill
    the agent before it could print any JSON.  The child takes that crash
    instead, and its exception text (e.g. an unsupported op version) becomes
    the error message.  Where fork does not exist the check is skipped.
    """
    if not hasattr(os, "fork"):
        return
    kwargs = rt.interpreter_kwargs(threads=1, no_default_delegates=True)
    read_fd, write_fd = os.pipe()
    sys.stdout.flush()
    sys.stderr.flush()
    pid = os.fork()
    if pid == 0:  # child: never return into the agent
        status = 0
        try:
            os.close(read_fd)
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, 1)
            os.dup2(devnull, 2)
            message = b""
            try:
                interpreter = rt.Interpreter(model_path=model_path, **kwargs)
                interpreter.allocate_tensors()
            except BaseException as exc:  # noqa: B902 - report anything
                message = ("ERR" + runtime_message(exc)).encode("utf-8", "replace")
            write_all(write_fd, message)
        except BaseException:
            status = 70
        finally:
            os._exit(status)
    os.close(write_fd)
    chunks: List[bytes] = []
    while True:
        chunk = os.read(read_fd, 65536)
        if not chunk:
            break
        chunks.append(chunk)
    os.close(read_fd)
    _, wait_status = os.waitpid(pid, 0)
    text = b"".join(chunks).decode("utf-8", "replace")
    if os.WIFSIGNALED(wait_status):
        signum = os.WTERMSIG(wait_status)
        try:
            import signal
            signame = signal.Signals(signum).name
        except (ValueError, AttributeError):
            signame = "signal %d" % signum
        raise AgentError(
            MODEL_LOAD,
            "%s %s crashed (%s) while parsing the model; the file is probably "
            "truncated or corrupt" % (rt.name, rt.version, signame),
            hint="compare the file's sha256 with the host's copy and transfer it again")
    if text.startswith("ERR"):
        raise opcheck.load_error(rt.name, rt.version, text[3:].strip())


def load_delegates(rt: Runtime, path: Optional[str],
                   options: Dict[str, str]) -> List[Any]:
    if not path:
        return []
    if rt.load_delegate is None:
        raise AgentError(DELEGATE, "runtime %s has no load_delegate" % rt.name)
    if os.sep in path and not os.path.exists(path):
        raise AgentError(DELEGATE, "delegate library not found: %s" % path,
                         hint="install the delegate (e.g. libedgetpu1-std for a Coral "
                              "USB accelerator) or fix the path")
    message = ""
    # A Delegate whose library failed to load raises AttributeError from its
    # __del__ (tflite_runtime and ai_edge_litert alike), which Python prints
    # as a scary "Exception ignored" traceback; that one is muted.
    previous_hook = sys.unraisablehook

    def hook(unraisable: Any) -> None:
        exc = getattr(unraisable, "exc_value", None)
        if isinstance(exc, AttributeError) and "_library" in str(exc):
            return
        previous_hook(unraisable)

    sys.unraisablehook = hook
    try:
        try:
            return [rt.load_delegate(path, options or None)]
        except Exception as exc:
            message = runtime_message(exc)
    finally:
        sys.unraisablehook = previous_hook
    raise AgentError(DELEGATE, "cannot load delegate %s: %s" % (path, message),
                     hint="check that the library exists for this architecture "
                          "and that its device is attached")


def load_interpreter(rt: Runtime, model_path: str, threads: Optional[int], no_xnnpack: bool,
                     delegates: List[Any], shapes: Optional[Dict[int, List[int]]] = None) -> Tuple[Any, float]:
    """Create the interpreter, resize the inputs in ``shapes`` (tensor index -> dims) and allocate tensors;
    returns (it, init_ms), the resize included."""
    kwargs = rt.interpreter_kwargs(threads, no_xnnpack, delegates)
    stage = "load"
    start = time.perf_counter_ns()
    try:
        interpreter = rt.Interpreter(model_path=model_path, **kwargs)
        stage = "resize"
        for index, dims in sorted((shapes or {}).items()):
            interpreter.resize_tensor_input(index, list(dims))
        stage = "allocate"
        interpreter.allocate_tensors()
    except Exception as exc:
        error = opcheck.load_error(rt.name, rt.version, runtime_message(exc), bool(delegates))
        if shapes and (stage == "resize" or stage == "allocate" and error.kind == MODEL_LOAD):
            error = AgentError(MODEL_LOAD, "%s %s cannot run the model at the input shapes %s: %s"
                               % (rt.name, rt.version, _shapes_text(interpreter, shapes), error.message),
                               hint="give the cell input_shapes the model accepts: its inputs' shape_signature "
                                    "says which dimensions may change (-1)")
        raise error
    init_ms = (time.perf_counter_ns() - start) / 1e6
    return interpreter, init_ms


def _shapes_text(interpreter: Any, shapes: Dict[int, List[int]]) -> str:
    names = {d["index"]: d.get("name") for d in interpreter.get_input_details()}
    return ", ".join("%s %s" % (names.get(i, i), list(dims)) for i, dims in sorted(shapes.items()))


def xnnpack_applied(interpreter: Any, external_delegate: bool) -> Optional[bool]:
    """Whether the XNNPACK default delegate took over part of the graph.

    There is no public API for this; a delegated subgraph shows up as a node
    named DELEGATE in the execution plan.  With an external delegate loaded
    the DELEGATE nodes could be either, so the answer is then only "no" when
    there are none; null means "cannot tell".
    """
    getter = getattr(interpreter, "_get_ops_details", None)
    if getter is None:
        return None
    try:
        names = [op.get("op_name") for op in getter()]
    except Exception:
        return None
    has_delegate = "DELEGATE" in names
    if external_delegate:
        return False if not has_delegate else None
    return has_delegate


def tensor_info(detail: Dict[str, Any]) -> Dict[str, Any]:
    scale, zero_point = detail.get("quantization", (0.0, 0))
    signature = detail.get("shape_signature")
    return {
        "name": detail.get("name"),
        "dtype": np.dtype(detail["dtype"]).name,
        "shape": [int(d) for d in detail["shape"]],
        "shape_signature": [int(d) for d in signature] if signature is not None else None,
        "quantization": {"scale": float(scale), "zero_point": int(zero_point)},
    }


def io_details(interpreter: Any) -> Tuple[List[Dict[str, Any]], List[Dict[str, Any]]]:
    return interpreter.get_input_details(), interpreter.get_output_details()


def describe_io(interpreter: Any, model_doc: Dict[str, Any]) -> Tuple[Dict[str, Any], Dict[str, Any]]:
    """Record the model's inputs and outputs in ``model_doc``; return the one input and the first output.

    ``run`` measures single-input classifiers: anything else is a ``data-mismatch`` (after recording it)."""
    in_details, out_details = io_details(interpreter)
    model_doc["num_inputs"] = len(in_details)
    model_doc["num_outputs"] = len(out_details)
    if in_details:
        model_doc["input"] = tensor_info(in_details[0])
    if out_details:
        model_doc["output"] = tensor_info(out_details[0])
    if len(in_details) != 1 or not out_details:
        raise AgentError(DATA_MISMATCH, "the agent measures single-input classifiers; this model has "
                         "%d inputs and %d outputs" % (len(in_details), len(out_details)))
    return in_details[0], out_details[0]


def describe_all_io(interpreter: Any, model_doc: Dict[str, Any]) -> Tuple[List[Dict[str, Any]],
                                                                          List[Dict[str, Any]]]:
    """``plan``: every input and output in ``model_doc`` (``inputs``/``outputs``, the shapes allocated; ``input``
    and ``output`` the first of each), any number of either."""
    in_details, out_details = io_details(interpreter)
    model_doc["num_inputs"] = len(in_details)
    model_doc["num_outputs"] = len(out_details)
    model_doc["inputs"] = [tensor_info(d) for d in in_details]
    model_doc["outputs"] = [tensor_info(d) for d in out_details]
    if in_details:
        model_doc["input"] = model_doc["inputs"][0]
    if out_details:
        model_doc["output"] = model_doc["outputs"][0]
    return in_details, out_details
