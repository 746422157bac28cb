"""Host-side measurements of one .tflite: sizes, the sparsity stored in the file, accuracy and predictions.

Accuracy is measured with the LiteRT interpreter on the converted file, not on the Keras model, because the
file is what ships. The predictions' digest is computed exactly as the device agent computes it, so the host
can tell whether a device predicts the same labels for the same variant.
"""
from __future__ import annotations

import gzip
import hashlib
from dataclasses import dataclass, field
from typing import Any, Dict, Optional

import numpy as np

from ..errors import ModelError
from ..results.manifest import Tensor as TensorInfo  # what the manifest records of an input or output

#: Samples per invoke when the model accepts a resized batch dimension.
EVAL_BATCH = 256

_TFLITE_DTYPES = {0: np.float32, 1: np.float16, 9: np.int8, 3: np.uint8}


@dataclass
class Measurement:
    size_bytes: int
    gzip_bytes: int
    sha256: str
    sparsity: float
    accuracy: float
    input: TensorInfo
    output: TensorInfo
    predictions: np.ndarray = field(repr=False, default_factory=lambda: np.zeros(0, np.int64))

    @property
    def predictions_digest(self) -> str:
        return predictions_digest(self.predictions)


def predictions_digest(predictions: np.ndarray) -> str:
    """Same digest as device_agent: sha256 of the labels as little-endian int32, first 16 hex digits."""
    return hashlib.sha256(np.asarray(predictions, dtype="<i4").tobytes()).hexdigest()[:16]


def gzip_size(content: bytes) -> int:
    return len(gzip.compress(content, compresslevel=9))


def stored_sparsity(content: bytes) -> float:
    """Fraction of zeros over the constant weight tensors (rank >= 2) stored in the flatbuffer, counting a
    sparse-stored tensor's zeros against its dense shape."""
    from tensorflow.lite.tools import flatbuffer_utils

    model = flatbuffer_utils.read_model_from_bytearray(bytearray(content))
    zeros = total = 0
    for subgraph in model.subgraphs:
        for tensor in subgraph.tensors:
            dtype = _TFLITE_DTYPES.get(tensor.type)
            shape = list(tensor.shape) if tensor.shape is not None else []
            buffer = model.buffers[tensor.buffer] if tensor.buffer < len(model.buffers) else None
            if dtype is None or len(shape) < 2 or buffer is None or buffer.data is None or len(buffer.data) == 0:
                continue
            values = np.frombuffer(np.asarray(buffer.data, dtype=np.uint8).tobytes(), dtype=dtype)
            zero_point = 0
            quant = tensor.quantization
            if quant is not None and quant.zeroPoint is not None and len(quant.zeroPoint) == 1:
                zero_point = int(quant.zeroPoint[0])
            if tensor.sparsity is not None:  # stored sparse (EXPERIMENTAL_SPARSITY): the buffer holds the
                # non-zero values (and the zeros inside kept blocks); the tensor's shape is the dense one
                dense = int(np.prod(shape))
                zeros += dense - int(np.count_nonzero(values != zero_point))
                total += dense
                continue
            zeros += int(np.count_nonzero(values == zero_point))
            total += int(values.size)
    return zeros / total if total else 0.0


def _tensor_info(detail: Dict[str, Any]) -> TensorInfo:
    scale, zero_point = detail.get("quantization", (0.0, 0))
    return TensorInfo(
        dtype=np.dtype(detail["dtype"]).name,
        shape=[int(d) for d in detail["shape"]],
        scale=float(scale),
        zero_point=int(zero_point),
    )


def quantize_input(x: np.ndarray, info: TensorInfo) -> np.ndarray:
    """Float samples -> the model's input dtype, with the model's own scale and zero point."""
    dtype = np.dtype(info.dtype)
    if dtype.kind in "iu" and info.scale:
        bounds = np.iinfo(dtype)
        return np.clip(np.round(x / info.scale + info.zero_point), bounds.min, bounds.max).astype(dtype)
    return x.astype(dtype)


def _interpreter(content: bytes, threads: Optional[int] = None) -> Any:
    from ai_edge_litert.interpreter import Interpreter

    try:
        return Interpreter(model_content=content, num_threads=threads)
    except (ValueError, RuntimeError) as exc:
        raise ModelError(f"LiteRT cannot load the model: {exc}") from exc


def predict(content: bytes, x: np.ndarray) -> np.ndarray:
    """Labels for every sample, in batches when the model allows a resized batch, else one at a time."""
    interpreter = _interpreter(content)
    inp = interpreter.get_input_details()[0]
    out = interpreter.get_output_details()[0]
    info = _tensor_info(inp)
    batch = EVAL_BATCH
    try:
        interpreter.resize_tensor_input(inp["index"], [batch, *x.shape[1:]], strict=False)
        interpreter.allocate_tensors()
    except (ValueError, RuntimeError):
        batch = 1
        interpreter = _interpreter(content)
        interpreter.allocate_tensors()
    labels = []
    for start in range(0, len(x), batch):
        chunk = x[start : start + batch]
        if batch > 1 and len(chunk) != batch:
            interpreter.resize_tensor_input(inp["index"], [len(chunk), *x.shape[1:]], strict=False)
            interpreter.allocate_tensors()
        interpreter.set_tensor(inp["index"], quantize_input(chunk, info))
        interpreter.invoke()
        labels.append(np.argmax(interpreter.get_tensor(out["index"]), axis=-1).reshape(-1))
    return np.concatenate(labels).astype(np.int64)


def measure(content: bytes, x_test: np.ndarray, y_test: np.ndarray) -> Measurement:
    interpreter = _interpreter(content)
    predictions = predict(content, x_test)
    return Measurement(
        size_bytes=len(content),
        gzip_bytes=gzip_size(content),
        sha256=hashlib.sha256(content).hexdigest(),
        sparsity=stored_sparsity(content),
        accuracy=float(np.mean(predictions == y_test)),
        input=_tensor_info(interpreter.get_input_details()[0]),
        output=_tensor_info(interpreter.get_output_details()[0]),
        predictions=predictions,
    )
