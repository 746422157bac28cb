"""Which operators the XNNPACK delegate takes, and for each one it leaves to the CPU kernels, why.

A table, not a re-implementation: per builtin op, the tensor types its ``Visit*Node`` accepts and the extra
conditions it checks, as in tflite/delegates/xnnpack/xnnpack_delegate.cc (LiteRT f674577; TensorFlow's copy
under tensorflow/lite/delegates/xnnpack/ is the same code). Type classes:

- ``f``: float32/float16 only (``CheckTensorFloatType``: e.g. SOFTMAX, AVERAGE_POOL_2D, DIV, RELU, HARD_SWISH);
- ``q``: float, or int8/uint8 quantized per tensor (``CheckTensorFloatOrQUInt8Type``: CONV_2D, ADD, MEAN, ...);
- ``s``: float or int8 per tensor (``CheckTensorFloatOrQInt8Type``: ELU).

DENSIFY and DEQUANTIZE of constants are the delegate's "static unpacking": it expands them in advance and they
count as taken when every op reading their output is taken (``GetOpsToReplace``). The default delegate of
ai-edge-litert and tflite-runtime is assumed (int8/uint8 enabled, dynamic-range quantization on). The
``tests/host/test_explain_delegate.py`` tests compare this table with the real delegate on built graphs.
"""
from __future__ import annotations

from typing import Dict, List, Optional

from .graph import Graph, Op, Tensor
from .weights import is_static, stored_constant

FLOAT = ("float32", "float16")
#: Builtin op -> type class (see the module docstring).
TYPE_CLASS: Dict[str, str] = {
    **dict.fromkeys("ABS CEIL COS EXP FLOOR GELU HARD_SWISH LOG NEG RELU RELU6 RELU_N1_TO_1 ROUND RSQRT SIN SQRT "
                    "SQUARE DIV MAXIMUM MINIMUM PRELU SQUARED_DIFFERENCE AVERAGE_POOL_2D SOFTMAX".split(), "f"),
    **dict.fromkeys("LOGISTIC TANH QUANTIZE LEAKY_RELU ADD MUL SUB MAX_POOL_2D MEAN SUM REDUCE_MAX REDUCE_MIN PAD "
                    "RESHAPE CONCATENATION DEPTH_TO_SPACE SPACE_TO_DEPTH EXPAND_DIMS SLICE STRIDED_SLICE SPLIT "
                    "TRANSPOSE RESIZE_BILINEAR BATCH_MATMUL TRANSPOSE_CONV CONV_2D DEPTHWISE_CONV_2D "
                    "FULLY_CONNECTED".split(), "q"),
    "ELU": "s", "DEQUANTIZE": "deq",
}
#: MediaPipe's custom ops the delegate implements (float32 only): name -> (inputs, outputs) it expects.
CUSTOM_OPS = {"Convolution2DTransposeBias": (3, 1), "MaxPoolingWithArgmax2D": (1, 2), "MaxUnpooling2D": (2, 1)}
#: tflite::ActivationFunctionType values XNNPACK folds into an output range (NONE, RELU, RELU_N1_TO_1, RELU6).
ACTIVATIONS = (0, 1, 2, 3)
ACTIVATION_NAMES = {4: "TANH", 5: "SIGN_BIT"}
MAX_DIMS = 6  # XNN_MAX_TENSOR_DIMS
_PARAMETERS = ("int32", "int64")  # constant axes, paddings, shapes: checked by the ops that read them


def delegated(graph: Graph) -> Dict[int, Optional[str]]:
    """Op index -> None when XNNPACK takes the op, else why it runs on the builtin CPU kernels."""
    verdicts: Dict[int, Optional[str]] = {}
    unpacking: List[Op] = []
    for op in graph.ops:
        if _unpacks_constant(graph, op):
            unpacking.append(op)
            continue
        verdicts[op.index] = check(graph, op)
    for op in reversed(unpacking):  # a DENSIFY feeding a DEQUANTIZE is decided after it
        readers = graph.consumers(op.outputs[0])
        left = [r for r in readers if verdicts.get(r.index) is not None]
        verdicts[op.index] = None if readers and not left else (
            f"it unpacks a constant for {left[0].name} (index {left[0].index}), which XNNPACK does not take"
            if left else "nothing reads what it unpacks")
    return dict(sorted(verdicts.items()))


def _unpacks_constant(graph: Graph, op: Op) -> bool:
    """DENSIFY of a sparse constant, or DEQUANTIZE of a float16/int8 constant, as the delegate unpacks them."""
    if op.custom or len(op.inputs) != 1 or len(op.outputs) != 1 or min(op.inputs + op.outputs) < 0:
        return False
    source, target = graph.tensors[op.inputs[0]], graph.tensors[op.outputs[0]]
    if op.name == "DENSIFY":
        return (source.constant and source.sparsity is not None and source.dtype in ("float32", "float16", "int8")
                and target.dtype == source.dtype)
    if op.name == "DEQUANTIZE":
        return (source.sparsity is None and is_static(graph, source.index) and target.dtype == "float32"
                and (source.dtype == "float16" or (source.dtype == "int8" and source.scales > 0)))
    return False


def _type_problem(tensor: Tensor, kind: str, op: str) -> Optional[str]:
    """Why XNNPACK refuses ``tensor`` as a value of ``op`` (type class ``kind``), None when it accepts it."""
    if tensor.dtype in FLOAT:
        return None
    if (tensor.dtype == "int8" and kind in ("q", "s")) or (tensor.dtype == "uint8" and kind == "q"):
        if tensor.scales == 1 and tensor.quantized_dimension == 0:
            return None
        return f"{tensor.dtype} tensor {tensor.index} is not quantized per tensor"
    accepted = {"f": "float", "q": "float, int8 and uint8", "s": "float and int8"}.get(kind, "float")
    return f"{tensor.dtype} values: XNNPACK runs {op} on {accepted} only"


def check(graph: Graph, op: Op) -> Optional[str]:
    """None when the delegate's checks for ``op`` pass, else the first one that fails, in words."""
    if op.custom:
        if op.name in CUSTOM_OPS:
            if (len(op.inputs), len(op.outputs)) != CUSTOM_OPS[op.name]:
                return (f"{len(op.inputs)} inputs and {len(op.outputs)} outputs (XNNPACK's {op.name} takes "
                        f"{CUSTOM_OPS[op.name][0]} and {CUSTOM_OPS[op.name][1]})")
            bad = [graph.tensors[t] for t in op.inputs + op.outputs if t >= 0 and graph.tensors[t].dtype != "float32"]
            return f"{bad[0].dtype} values: XNNPACK runs {op.name} on float32 only" if bad else None
        return "custom op: XNNPACK has no kernel for it"
    kind = TYPE_CLASS.get(op.name)
    if kind is None:
        return f"XNNPACK has no kernel for {op.name}"
    if op.name == "FULLY_CONNECTED" and op.version == 8:
        return "sparse FULLY_CONNECTED (version 8) is not delegated"
    for position in op.inputs + op.outputs:
        if position < 0:
            continue
        tensor = graph.tensors[position]
        if len(tensor.shape) > MAX_DIMS:
            return f"tensor {position} has {len(tensor.shape)} dimensions, XNNPACK at most {MAX_DIMS}"
    if op.name in ("CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED", "TRANSPOSE_CONV", "BATCH_MATMUL"):
        return _weighted(graph, op)
    if kind == "deq":
        source, target = graph.tensors[op.inputs[0]], graph.tensors[op.outputs[0]]
        if source.dtype not in ("int8", "uint8") or source.scales != 1:
            return f"DEQUANTIZE of {source.dtype} values that are not a constant XNNPACK can unpack"
        return None if target.dtype in FLOAT else f"DEQUANTIZE to {target.dtype}"
    for position in op.inputs + op.outputs:
        tensor = graph.tensors[position] if position >= 0 else None
        if tensor is None or (tensor.constant and tensor.dtype in _PARAMETERS):
            continue
        problem = _type_problem(tensor, kind, op.name)
        if problem:
            return problem
    return _conditions(graph, op)


def _conditions(graph: Graph, op: Op) -> Optional[str]:
    """The op-specific checks of the ``Visit*Node`` functions that do not concern types."""
    options = op.options
    activation = options.get("activation", 0)
    if activation not in ACTIVATIONS:
        return f"fused activation {ACTIVATION_NAMES.get(activation, activation)} is not supported"
    if op.name in ("ADD", "MUL", "SUB"):
        types = {graph.tensors[t].dtype for t in op.inputs + op.outputs if t >= 0}
        return "mixed types" if len(types) > 1 else None
    if op.name == "SOFTMAX" and options.get("beta") != 1.0:
        return f"SOFTMAX with beta {options.get('beta')} (XNNPACK: 1.0 only)"
    if op.name == "QUANTIZE":  # requantizing only within one integer type
        source, target = graph.tensors[op.inputs[0]], graph.tensors[op.outputs[0]]
        if source.dtype not in FLOAT and source.dtype != target.dtype:
            return f"QUANTIZE from {source.dtype} to {target.dtype}"
    if op.name == "LEAKY_RELU" and not options.get("alpha"):
        return "LEAKY_RELU with alpha 0"
    if op.name in ("AVERAGE_POOL_2D", "MAX_POOL_2D"):
        sw, sh, fw, fh = (options[k] for k in ("stride_w", "stride_h", "filter_w", "filter_h"))
        if min(sw, sh, fw, fh) <= 0:
            return "invalid stride or filter size"
        if sw > fw or sh > fh:
            return f"stride {sh}x{sw} larger than the {fh}x{fw} window"
        if fw == fh == 1 and max(sw, sh) > 1:
            return "1x1 window with a stride over 1"
    needs_constant = {"MEAN": 1, "SUM": 1, "REDUCE_MAX": 1, "REDUCE_MIN": 1, "PAD": 1, "RESHAPE": 1,
                      "EXPAND_DIMS": 1, "TRANSPOSE": 1, "SPLIT": 0, "RESIZE_BILINEAR": 1}
    position = needs_constant.get(op.name)
    if position is not None and position < len(op.inputs) and op.inputs[position] >= 0:
        tensor = graph.tensors[op.inputs[position]]
        if not tensor.constant:
            return f"its {'axes' if op.name not in ('PAD', 'RESHAPE') else 'second input'} are not a constant"
    return None


def _weighted(graph: Graph, op: Op) -> Optional[str]:
    """CONV_2D, DEPTHWISE_CONV_2D, FULLY_CONNECTED and friends: activations, weights, bias and parameters."""
    if len(op.inputs) < 2 or min(op.inputs[:2]) < 0 or not op.outputs or op.outputs[0] < 0:
        return "a weighted op without its input or weights"
    source, weights = graph.tensors[op.inputs[0]], graph.tensors[op.inputs[1]]
    target = graph.tensors[op.outputs[0]]
    for tensor in (source, target):
        problem = _type_problem(tensor, "q", op.name)
        if problem:
            return problem
    if op.name in ("TRANSPOSE_CONV", "BATCH_MATMUL"):
        return None
    stored = stored_constant(graph, weights.index)
    if weights.dtype not in FLOAT + ("int8", "int4") or (weights.dtype == "int4" and op.name != "FULLY_CONNECTED"):
        return f"{weights.dtype} weights"
    if not is_static(graph, weights.index):
        return "its weights are not a constant"
    if stored is not None and stored.dtype == "int8" and stored.scales == 0:
        return "int8 weights without quantization parameters"
    if source.dtype != target.dtype:
        return f"mixed types ({source.dtype} in, {target.dtype} out)"
    dynamic = source.dtype in FLOAT and weights.dtype in ("int8", "int4")  # dynamic-range quantization
    if source.dtype != weights.dtype and not dynamic and not (op.name == "FULLY_CONNECTED" and source.dtype == "int8"
                                                              and weights.dtype == "int4"):
        return f"mixed types ({source.dtype} values, {weights.dtype} weights)"
    bias = op.inputs[2] if len(op.inputs) > 2 else -1
    if bias < 0 and op.name != "FULLY_CONNECTED":
        return f"{op.name} without a bias"
    if bias >= 0 and not is_static(graph, bias):
        return "its bias is not a constant"
    if op.name == "FULLY_CONNECTED":
        if op.options.get("weights_format", 0) != 0:
            return "shuffled weights format"
    else:
        strides = [op.options.get(k, 0) for k in ("stride_w", "stride_h", "dilation_w", "dilation_h")]
        if min(strides) <= 0:
            return "invalid stride or dilation"
        if len(source.shape) != 4 or len(weights.shape) != 4:
            return "inputs that are not 4-dimensional"
    if op.name == "DEPTHWISE_CONV_2D":
        multiplier = op.options.get("depth_multiplier", 0)
        if multiplier <= 0 or weights.shape[3] % multiplier:
            return f"depth multiplier {multiplier} does not divide the {weights.shape[3]} output channels"
    activation = op.options.get("activation", 0)
    if activation not in ACTIVATIONS:
        return f"fused activation {ACTIVATION_NAMES.get(activation, activation)} is not supported"
    return None
