"""The eval set: reading eval.npz and converting values to and from the model's tensor types.

The conversions use the formulas the host uses for its reference predictions (float32, round half to even),
so the agent's predictions can be compared with the host's bit for bit.
"""

from __future__ import annotations

import os
from typing import Any, Dict, Optional, Tuple

import numpy as np

from .protocol import DATA_MISMATCH, AgentError


def load_eval(path: str, max_eval: Optional[int]) -> Tuple[np.ndarray, np.ndarray]:
    """Read eval.npz (x float [N, ...], y int [N]) without unpickling anything."""
    if not os.path.isfile(path):
        raise AgentError(DATA_MISMATCH, "eval file not found: %s" % path)
    try:
        with np.load(path, allow_pickle=False) as data:
            keys = sorted(data.files)
            if "x" not in keys or "y" not in keys:
                raise AgentError(
                    DATA_MISMATCH,
                    "eval file must contain arrays 'x' and 'y'; it has %s" % (keys,),
                    hint="write it with np.savez(path, x=inputs, y=labels)")
            x = data["x"]
            y = data["y"]
    except AgentError:
        raise
    except Exception as exc:
        raise AgentError(DATA_MISMATCH, "cannot read eval file %s: %s: %s"
                         % (path, type(exc).__name__, exc),
                         hint="the eval set must be an .npz written by np.savez")
    if x.ndim < 1 or x.shape[0] == 0:
        raise AgentError(DATA_MISMATCH, "eval 'x' is empty (shape %s)" % (list(x.shape),))
    if y.ndim != 1 or y.shape[0] != x.shape[0]:
        raise AgentError(DATA_MISMATCH, "eval 'y' must have shape [%d], got %s"
                         % (x.shape[0], list(y.shape)))
    if not np.issubdtype(y.dtype, np.integer):
        raise AgentError(DATA_MISMATCH, "eval 'y' must hold integer labels, got %s" % y.dtype)
    if max_eval is not None:
        x, y = x[:max_eval], y[:max_eval]
    return x, y


def prepare_inputs(x: np.ndarray, detail: Dict[str, Any]) -> np.ndarray:
    """Convert eval inputs to what the model's input tensor takes.

    Integer inputs are quantized with the tensor's own scale/zero-point:
    q = clip(round(x / scale + zero_point)) in float32, round half to even
    (np.round), the formula the host uses for its reference predictions.
    """
    shape = [int(d) for d in detail["shape"]]
    dtype = np.dtype(detail["dtype"])
    if x.ndim != len(shape) or list(x.shape[1:]) != shape[1:]:
        raise AgentError(
            DATA_MISMATCH,
            "eval 'x' has shape %s but the model input is %s (batch first)"
            % (list(x.shape), shape),
            hint="export eval.npz from the same model the variants came from")
    if np.issubdtype(dtype, np.floating):
        if not np.issubdtype(x.dtype, np.floating):
            raise AgentError(DATA_MISMATCH, "model input is %s but eval 'x' is %s"
                             % (dtype.name, x.dtype.name))
        return np.ascontiguousarray(x, dtype=dtype)
    if np.issubdtype(dtype, np.integer):
        if x.dtype == dtype:
            return np.ascontiguousarray(x)
        scale, zero_point = detail.get("quantization", (0.0, 0))
        if not np.issubdtype(x.dtype, np.floating) or not scale:
            raise AgentError(DATA_MISMATCH,
                             "model input is %s (scale %r) and eval 'x' is %s: cannot quantize"
                             % (dtype.name, scale, x.dtype.name))
        info = np.iinfo(dtype)
        xf = np.asarray(x, dtype=np.float32)
        q = np.round(xf / np.float32(scale) + np.float32(zero_point))
        return np.ascontiguousarray(np.clip(q, info.min, info.max).astype(dtype))
    raise AgentError(DATA_MISMATCH, "unsupported model input dtype %s" % dtype.name)


def dequantize(values: np.ndarray, detail: Dict[str, Any]) -> np.ndarray:
    scale, zero_point = detail.get("quantization", (0.0, 0))
    if np.issubdtype(values.dtype, np.integer) and scale:
        return (values.astype(np.float32) - np.float32(zero_point)) * np.float32(scale)
    return values
