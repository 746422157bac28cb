"""A model's inputs: the eval set (eval.npz) converted to the model's tensor types, or inputs generated from the
input tensors themselves when there is no eval set (a latency-only plan); and outputs converted back.

The conversions use the formulas the host uses for its reference predictions (float32, round half to even),
so the agent's predictions can be compared with the host's bit for bit.
"""

from __future__ import annotations

import hashlib
import os
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np

from .protocol import DATA_MISMATCH, UNSUPPORTED_INPUT, AgentError

#: A feed: (tensor index, value) for every input of the model, set before one invoke.
Feed = Tuple[Tuple[int, np.ndarray], ...]

#: Generated inputs: this many distinct input sets (fewer when one set is large), cycled through by the timing.
GENERATED_SAMPLES = 8
MAX_GENERATED_BYTES = 64 << 20
#: Integer inputs that are not quantized (int32, int64, uint16, ...) are ids: uniform in [0, IDS_HIGH).
IDS_HIGH = 64
#: Quantized integer types: generated uniform over the whole range of the type.
QUANTIZED_TYPES = ("int8", "uint8", "int16")
#: Input dtypes the agent can feed; anything else (string, resource, complex, ...) is ``unsupported-input``.
FEEDABLE_TYPES = ("float16", "float32", "float64", "int8", "uint8", "int16", "uint16", "int32", "uint32",
                  "int64", "uint64", "bool")

EVAL_KEYS_HINT = ("write it with np.savez(path, x=inputs, y=labels), or for a model with several inputs "
                  "np.savez(path, y=labels, **{input_name: array})")


def read_eval(path: str, max_eval: Optional[int]) -> Tuple[Dict[str, np.ndarray], np.ndarray]:
    """Read eval.npz without unpickling anything: its arrays except ``y`` (the inputs: ``x``, or one per input
    tensor name), each ``[N, ...]``, and ``y``, integer labels ``[N]``."""
    if not os.path.isfile(path):
        raise AgentError(DATA_MISMATCH, "eval file not found: %s" % path)
    try:
        with np.load(path, allow_pickle=False) as data:
            keys = sorted(data.files)
            if "y" not in keys or len(keys) < 2:
                raise AgentError(
                    DATA_MISMATCH,
                    "eval file must contain arrays 'x' and 'y' (or 'y' and one array per model input name); "
                    "it has %s" % (keys,), hint=EVAL_KEYS_HINT)
            arrays = {key: data[key] for key in keys}
    except AgentError:
        raise
    except Exception as exc:
        raise AgentError(DATA_MISMATCH, "cannot read eval file %s: %s: %s"
                         % (path, type(exc).__name__, exc),
                         hint="the eval set must be an .npz written by np.savez")
    y = arrays.pop("y")
    if y.ndim != 1:
        raise AgentError(DATA_MISMATCH, "eval 'y' must hold labels [N], got shape %s" % (list(y.shape),))
    for key, x in sorted(arrays.items()):
        if x.ndim < 1 or x.shape[0] == 0:
            raise AgentError(DATA_MISMATCH, "eval '%s' is empty (shape %s)" % (key, list(x.shape)))
        if y.shape[0] != x.shape[0]:
            raise AgentError(DATA_MISMATCH, "eval 'y' must have shape [%d] like '%s', got %s"
                             % (x.shape[0], key, list(y.shape)))
    if not np.issubdtype(y.dtype, np.integer):
        raise AgentError(DATA_MISMATCH, "eval 'y' must hold integer labels, got %s" % y.dtype)
    if max_eval is not None:
        arrays = {key: x[:max_eval] for key, x in arrays.items()}
        y = y[:max_eval]
    return arrays, y


def load_eval(path: str, max_eval: Optional[int]) -> Tuple[np.ndarray, np.ndarray]:
    """``run``'s eval set: x float [N, ...] and y int [N]."""
    arrays, y = read_eval(path, max_eval)
    if "x" not in arrays:
        raise AgentError(DATA_MISMATCH, "eval file must contain arrays 'x' and 'y'; it has %s"
                         % (sorted(arrays) + ["y"],), hint=EVAL_KEYS_HINT)
    return arrays["x"], y


def prepare_inputs(x: np.ndarray, detail: Dict[str, Any], key: str = "x") -> np.ndarray:
    """Convert eval inputs (the array ``key``) to what the model's input tensor takes.

    Integer inputs are quantized with the tensor's own scale/zero-point:
    q = clip(round(x / scale + zero_point)) in float32, round half to even
    (np.round), the formula the host uses for its reference predictions.
    """
    shape = [int(d) for d in detail["shape"]]
    dtype = np.dtype(detail["dtype"])
    if x.ndim != len(shape) or list(x.shape[1:]) != shape[1:]:
        raise AgentError(
            DATA_MISMATCH,
            "eval '%s' has shape %s but the model input is %s (batch first)"
            % (key, list(x.shape), shape),
            hint="export eval.npz from the same model the variants came from")
    if np.issubdtype(dtype, np.floating):
        if not np.issubdtype(x.dtype, np.floating):
            raise AgentError(DATA_MISMATCH, "model input is %s but eval '%s' is %s"
                             % (dtype.name, key, x.dtype.name))
        return np.ascontiguousarray(x, dtype=dtype)
    if dtype == np.bool_ and (x.dtype == np.bool_ or np.issubdtype(x.dtype, np.integer)):
        return np.ascontiguousarray(x, dtype=dtype)
    if np.issubdtype(dtype, np.integer):
        if x.dtype == dtype:
            return np.ascontiguousarray(x)
        scale, zero_point = detail.get("quantization", (0.0, 0))
        if not scale and np.issubdtype(x.dtype, np.integer):  # ids, counts: the values as they are
            info = np.iinfo(dtype)
            if x.size and (x.min() < info.min or x.max() > info.max):
                raise AgentError(DATA_MISMATCH, "eval '%s' holds values outside %s" % (key, dtype.name))
            return np.ascontiguousarray(x, dtype=dtype)
        if not np.issubdtype(x.dtype, np.floating) or not scale:
            raise AgentError(DATA_MISMATCH,
                             "model input is %s (scale %r) and eval '%s' is %s: cannot quantize"
                             % (dtype.name, scale, key, x.dtype.name))
        info = np.iinfo(dtype)
        xf = np.asarray(x, dtype=np.float32)
        q = np.round(xf / np.float32(scale) + np.float32(zero_point))
        return np.ascontiguousarray(np.clip(q, info.min, info.max).astype(dtype))
    raise AgentError(DATA_MISMATCH, "unsupported model input dtype %s" % dtype.name)


def _tensor(detail: Dict[str, Any], values: str) -> Dict[str, Any]:
    return {"name": detail.get("name"), "dtype": np.dtype(detail["dtype"]).name,
            "shape": [int(d) for d in detail["shape"]], "values": values}


def eval_feeds(arrays: Dict[str, np.ndarray], in_details: Sequence[Dict[str, Any]]
               ) -> Tuple[List[np.ndarray], List[Feed], List[Dict[str, Any]]]:
    """The eval arrays for a model's inputs, converted (one per input, in input order), the timing's feeds
    (consecutive chunks of the inputs' batch, their first dimension) and a description of each input.

    An input takes the array named as the tensor; a single-input model takes ``x`` when there is none.
    """
    keys = []
    for detail in in_details:
        name = detail.get("name")
        keys.append(name if name in arrays else "x" if len(in_details) == 1 and "x" in arrays else None)
    missing = [d.get("name") for d, key in zip(in_details, keys) if key is None]
    if missing:
        raise AgentError(DATA_MISMATCH, "the eval file has no array for the input%s %s (it has %s); a model with "
                         "several inputs needs one array per input name"
                         % ("s" if len(missing) > 1 else "", ", ".join("`%s`" % m for m in missing),
                            sorted(arrays) + ["y"]), hint=EVAL_KEYS_HINT)
    batches = sorted({int(d["shape"][0]) if len(d["shape"]) else 0 for d in in_details})
    if len(batches) != 1 or batches[0] < 1:
        raise AgentError(DATA_MISMATCH, "with an eval file every input's first dimension is the batch; these "
                         "inputs have first dimensions %s" % batches)
    batch = batches[0]
    prepared = [prepare_inputs(arrays[key], detail, key) for key, detail in zip(keys, in_details)]
    count = prepared[0].shape[0] // batch
    if count < 1:
        raise AgentError(DATA_MISMATCH, "the eval file has %d samples, fewer than the inputs' batch %d"
                         % (prepared[0].shape[0], batch))
    feeds = [tuple((int(d["index"]), p[k * batch:(k + 1) * batch]) for d, p in zip(in_details, prepared))
             for k in range(count)]
    tensors = [_tensor(d, "eval '%s'%s" % (key, " (quantized)" if np.dtype(d["dtype"]).kind in "iu"
                                             and d.get("quantization", (0.0, 0))[0] else ""))
               for key, d in zip(keys, in_details)]
    return prepared, feeds, tensors


def generated_seed(plan_seed: int, model_sha256: str) -> int:
    """The seed of a cell's generated inputs: the first 4 bytes (little-endian) of sha256("<plan seed>:<model
    sha256>"). By the model, not the cell: the A/A twin (the same file) must see the same inputs as its reference,
    or a model whose time depends on its inputs would make the noise floor."""
    digest = hashlib.sha256(("%d:%s" % (plan_seed, model_sha256)).encode("utf-8")).digest()
    return int.from_bytes(digest[:4], "little")


def unfeedable(dtypes: Sequence[Tuple[str, str]]) -> Optional[AgentError]:
    """``unsupported-input`` for inputs (name, dtype) the agent cannot feed, e.g. strings; None when all can be."""
    bad: Dict[str, List[str]] = {}
    for name, dtype in dtypes:
        if dtype not in FEEDABLE_TYPES:
            bad.setdefault(dtype, []).append("`%s`" % name)
    if not bad:
        return None
    parts = []
    for dtype, names in sorted(bad.items()):
        many = len(names) > 1
        parts.append("%s inputs are not supported: input%s %s %s %s tensor%s"
                     % (dtype, "s" if many else "", ", ".join(names), "are" if many else "is a", dtype,
                        "s" if many else ""))
    return AgentError(UNSUPPORTED_INPUT, "; ".join(parts),
                      hint="the agent feeds numeric and bool tensors only; benchmark the part of the model after "
                           "its string handling (e.g. after the tokenizer)")


def generate_feeds(in_details: Sequence[Dict[str, Any]], seed: int
                   ) -> Tuple[List[Feed], List[Dict[str, Any]]]:
    """Inputs made from the input tensors alone, drawn from ``numpy.random.RandomState(seed)`` input by input:
    floats uniform in [0, 1) (image-like), int8/uint8/int16 uniform over the type's range (quantized), other
    integers uniform in [0, IDS_HIGH) (ids), bools at random. Returns the feeds and a description of each input.
    """
    error = unfeedable([(d.get("name"), np.dtype(d["dtype"]).name) for d in in_details])
    if error is not None:
        raise error
    set_bytes = sum(int(np.prod(d["shape"])) * np.dtype(d["dtype"]).itemsize for d in in_details)
    samples = max(1, min(GENERATED_SAMPLES, MAX_GENERATED_BYTES // max(1, set_bytes)))
    rng = np.random.RandomState(seed)
    blocks, tensors = [], []
    for detail in in_details:
        dtype = np.dtype(detail["dtype"])
        size = (samples,) + tuple(int(d) for d in detail["shape"])
        if dtype.kind == "f":
            block, values = rng.random_sample(size).astype(dtype), "uniform [0, 1)"
        elif dtype == np.bool_:
            block, values = rng.randint(0, 2, size=size).astype(dtype), "random bool"
        elif dtype.name in QUANTIZED_TYPES:
            info = np.iinfo(dtype)
            block = rng.randint(int(info.min), int(info.max) + 1, size=size, dtype=dtype)
            values = "uniform integers [%d, %d]" % (info.min, info.max)
        else:
            block, values = rng.randint(0, IDS_HIGH, size=size).astype(dtype), "uniform integers [0, %d)" % IDS_HIGH
        blocks.append(block)
        tensors.append(_tensor(detail, values))
    feeds = [tuple((int(d["index"]), np.array(block[k], dtype=block.dtype)) for d, block in zip(in_details, blocks))
             for k in range(samples)]
    return feeds, tensors


def dequantize(values: np.ndarray, detail: Dict[str, Any]) -> np.ndarray:
    scale, zero_point = detail.get("quantization", (0.0, 0))
    if np.issubdtype(values.dtype, np.integer) and scale:
        return (values.astype(np.float32) - np.float32(zero_point)) * np.float32(scale)
    return values
