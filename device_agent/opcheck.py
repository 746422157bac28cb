"""Ops a runtime cannot run, and the one place where a runtime's refusal to load a model becomes an error.

Custom ops are found from the flatbuffer (``flatbuffer.read_model``) before any interpreter sees the model:
no runtime upgrade registers a MediaPipe kernel, so those get ``unsupported-op`` naming the op and where it
comes from, never "install a newer runtime". Only a builtin op (or op version) the runtime is too old for gets
that hint. No numpy here: the host may use the same words.
"""

from __future__ import annotations

import re
from typing import Iterable, List, Optional, Tuple

from .protocol import DELEGATE, MODEL_LOAD, UNSUPPORTED_OP, AgentError

#: Custom ops every runtime's builtin op resolver registers (tensorflow/lite/core/kernels/register.cc).
REGISTERED_CUSTOM_OPS = frozenset(("TFLite_Detection_PostProcess", "Mfcc", "AudioSpectrogram", "NumericVerify"))
#: Registered by the builtin op resolver of recent runtimes only: a newer runtime does help with these.
NEWER_RUNTIME_CUSTOM_OPS = frozenset(("aeq.hadamard_rotation",))
#: MediaPipe's own kernels (mediapipe/util/tflite/operations), registered by MediaPipe's op resolvers only.
MEDIAPIPE_OPS = frozenset(("Convolution2DTransposeBias", "MaxPoolingWithArgmax2D", "MaxUnpooling2D",
                           "TransformTensorBilinear", "TransformLandmarks", "Landmarks2TransformMatrix"))
EDGETPU_OP = "edgetpu-custom-op"
#: TensorFlow ops kept by SELECT_TF_OPS are custom ops named Flex<Op>; TensorFlow's own interpreter runs them.
FLEX_PREFIX = "Flex"
#: At most this many ops are named in one message.
MAX_NAMED = 8

NEWER_RUNTIME = ("install a newer runtime (`pip install -U ai-edge-litert`) or convert the model for %s %s "
                 "(an older TensorFlow, or without the newer op)")


def _custom_op(name: str) -> Tuple[str, str]:
    """(message, hint) for a custom op no runtime of the agent registers."""
    if name.startswith(FLEX_PREFIX):
        return ("custom op `%s` (TensorFlow select op): not a LiteRT builtin; it needs the Flex delegate, which "
                "only the `tensorflow` runtime's interpreter has" % name,
                "give the cell the runtime `tensorflow`, or convert the model without SELECT_TF_OPS")
    if name == EDGETPU_OP:
        return ("custom op `%s` (Edge TPU compiler): not a LiteRT builtin; only the Edge TPU delegate runs it" % name,
                "give the cell the delegate libedgetpu.so.1 (a Coral device), or benchmark the model as it was "
                "before edgetpu_compiler")
    if name in MEDIAPIPE_OPS:
        return ("custom op `%s` (MediaPipe): not a LiteRT builtin; register it or use a runtime that has it" % name,
                "MediaPipe registers these kernels in its own interpreter; benchmark the model there, or export "
                "it without them")
    return ("custom op `%s`: not a LiteRT builtin; register it or use a runtime that has it" % name,
            "a model converted with allow_custom_ops needs each custom op's kernel registered in the interpreter; "
            "convert it with builtin ops only (or SELECT_TF_OPS for the `tensorflow` runtime)")


def runtime_lacks(name: str, runtime: str) -> bool:
    """Whether ``runtime`` (a module name of runtime.RUNTIMES) can be told, before loading, not to have the
    custom op ``name``."""
    if name in REGISTERED_CUSTOM_OPS or name in NEWER_RUNTIME_CUSTOM_OPS:
        return False
    return not (name.startswith(FLEX_PREFIX) and runtime == "tensorflow")


def unsupported_ops_error(names: Iterable[str], said: Optional[str] = None) -> AgentError:
    """``unsupported-op`` naming each custom op (at most MAX_NAMED) and where it comes from."""
    unique: List[str] = []
    for name in names:
        if name not in unique:
            unique.append(name)
    parts = [_custom_op(name) for name in unique[:MAX_NAMED]]
    message = "; ".join(text for text, _ in parts)
    if len(unique) > MAX_NAMED:
        message += "; and %d more custom ops" % (len(unique) - MAX_NAMED)
    if said:
        message += " (the runtime said: %s)" % said
    return AgentError(UNSUPPORTED_OP, message, hint=parts[0][1] if parts else None)


def refuse_custom_ops(custom_names: Iterable[str], runtime: str) -> None:
    """Raise ``unsupported-op`` when the model has custom ops this runtime cannot have (no delegate given)."""
    lacking = [name for name in custom_names if runtime_lacks(name, runtime)]
    if lacking:
        raise unsupported_ops_error(lacking)


_UNRESOLVED = re.compile(r"unresolved custom op: (\S+?)\.?(?:\s|$)")
_BUILTIN = re.compile(r"Didn't find op for builtin opcode '([^']*)' version '(\d+)'")


def load_error(runtime: str, version: Optional[str], message: str, delegated: bool = False) -> AgentError:
    """The error for a runtime's refusal to load (or allocate) a model: kind, its own message, a next step.

    An unresolved custom op is ``unsupported-op``; with a delegate, a message about the delegate is
    ``delegate``; a builtin op or op version the runtime lacks is ``model-load`` with "a newer runtime" as
    the hint; a broken file is ``model-load`` with "copy it again".
    """
    first_line = message.strip().splitlines()[0] if message.strip() else message
    custom = [name for name in _UNRESOLVED.findall(message)]
    if custom:
        error = unsupported_ops_error(custom, said=first_line)
        if any(name in NEWER_RUNTIME_CUSTOM_OPS for name in custom):
            error.hint = NEWER_RUNTIME % (runtime, version)
        return error
    lowered = message.lower()
    if delegated and "delegate" in lowered:
        return AgentError(DELEGATE, message, hint="the delegate could not take this model; run without the "
                                                  "delegate or compile the model for it")
    builtin = _BUILTIN.search(message)
    if builtin or "builtin_code out of range" in lowered:
        what = ("%s version %s" % builtin.groups()) if builtin else "a builtin op"
        return AgentError(MODEL_LOAD, message, hint="the model uses %s, newer than %s %s has: %s"
                          % (what, runtime, version, NEWER_RUNTIME % (runtime, version)))
    if "identifier" in lowered or "flatbuffer" in lowered or "mmap" in lowered:
        return AgentError(MODEL_LOAD, message, hint="this is not a valid .tflite file (wrong file, or truncated "
                                                    "in transfer): compare its sha256 with the host's copy")
    return AgentError(MODEL_LOAD, message, hint="the runtime could not load this model; see its message for why")
