"""Which ops XNNPACK can run in CHW (NCHW) layout, the layout of its sparse inference path.

A transcription of XNNPACK's ``xnn_check_nchw_compatibility`` (src/subgraph.c, XNNPACK 75db3c0) onto TFLite
operators, after the delegate's translation (padding from ``CalculatePadding``, the SAME-to-explicit conversion
of ``xnn_define_[depthwise_]convolution_2d`` for stride 1, the fusion of a zero PAD into a VALID convolution in
``xnn_subgraph_fusion``). ``problem`` returns None for an op that may sit inside the CHW part, else why not;
``is_exit`` names the ops that end it (XNN_LAYOUT_FLAG_COMPATIBLE_NCHW2NHWC).
"""
from __future__ import annotations

from typing import List, Optional, Tuple

from .graph import Graph, Op
from .weights import is_static

SAME, VALID = 0, 1  # tflite::Padding
Pads = Tuple[int, int, int, int]  # top, bottom, left, right
#: TFLite ops XNNPACK turns into unary element-wise nodes (CHW-compatible on 4-D inputs).
UNARY = frozenset("ABS CEIL COS ELU EXP FLOOR GELU HARD_SWISH LEAKY_RELU LOG LOGISTIC NEG RELU RELU6 RELU_N1_TO_1 "
                  "ROUND RSQRT SIN SQRT SQUARE TANH".split())
SAME_STRIDE_2 = ("SAME padding with stride 2: XNNPACK keeps it as TensorFlow SAME padding (worked out at run "
                 "time), which its CHW path refuses; pad with ZeroPadding2D(1) and use padding='valid'")


def constant_ints(graph: Graph, tensor: int) -> Optional[List[int]]:
    """A small constant int32 tensor's values (axes, paddings), None when it is not one."""
    if tensor < 0:
        return None
    t = graph.tensors[tensor]
    if t.dtype != "int32" or t.data is None or t.data[1] > 4096:
        return None
    return [int(v) for v in graph.array(t)]


def spatial_axes(graph: Graph, op: Op) -> Optional[List[int]]:
    """The axes a reduction over a 4-D input reduces, made non-negative; None when they cannot be read."""
    source = graph.tensors[op.inputs[0]] if op.inputs and op.inputs[0] >= 0 else None
    axes = constant_ints(graph, op.inputs[1]) if len(op.inputs) > 1 else None
    if source is None or axes is None or len(source.shape) != 4:
        return None
    return sorted({a % 4 for a in axes})


def is_exit(graph: Graph, op: Op) -> bool:
    """MEAN over height and width of a 4-D tensor (global average pooling), or DEPTH_TO_SPACE."""
    if op.name == "DEPTH_TO_SPACE" and not op.custom:
        return True
    return op.name == "MEAN" and not op.custom and spatial_axes(graph, op) == [1, 2]


def fused_pad(graph: Graph, pad: Op) -> Optional[Tuple[Op, Pads]]:
    """(the convolution, the padding) when XNNPACK fuses this PAD into the [depthwise] convolution reading it.

    ``xnn_subgraph_fusion``: a zero PAD on height and width only, whose output has one consumer, a convolution
    without TensorFlow SAME padding (VALID, or SAME with stride 1 which the define call made explicit).
    """
    if pad.name != "PAD" or pad.custom or len(pad.inputs) < 2 or not pad.outputs:
        return None
    values = constant_ints(graph, pad.inputs[1])
    readers = graph.consumers(pad.outputs[0])
    if values is None or len(values) != 8 or any(values[i] for i in (0, 1, 6, 7)) or len(readers) != 1:
        return None
    conv = readers[0]
    if (conv.name not in ("CONV_2D", "DEPTHWISE_CONV_2D") or conv.inputs[0] != pad.outputs[0]
            or pad.outputs[0] in graph.outputs or conv_padding(graph, conv) is None):
        return None
    return conv, (values[2], values[3], values[4], values[5])


def kernel(graph: Graph, op: Op) -> Tuple[int, int]:
    """(height, width) of a convolution's kernel: its weights are [out, h, w, in] (depthwise: [1, h, w, out])."""
    shape = graph.tensors[op.inputs[1]].shape
    return (shape[1], shape[2]) if len(shape) == 4 else (0, 0)


def conv_padding(graph: Graph, op: Op) -> Optional[Pads]:
    """The explicit padding XNNPACK sees for a convolution; None when it keeps TensorFlow SAME padding."""
    if op.options.get("padding") == VALID:
        return (0, 0, 0, 0)
    if (op.options.get("stride_w"), op.options.get("stride_h")) != (1, 1):
        return None
    kh, kw = kernel(graph, op)
    dh, dw = op.options.get("dilation_h", 1), op.options.get("dilation_w", 1)
    ph, pw = max(kh - 1, 0) * dh, max(kw - 1, 0) * dw
    return (ph // 2, ph - ph // 2, pw // 2, pw - pw // 2)


def describe_conv(graph: Graph, op: Op) -> str:
    """E.g. "CONV_2D 5x5 stride 2 on 3 channels (index 1)"."""
    kh, kw = kernel(graph, op)
    source = graph.tensors[op.inputs[0]].shape
    channels = (f" on {source[3]} channel" + ("" if source[3] == 1 else "s")) if len(source) == 4 else ""
    return (f"{op.name} {kh}x{kw} stride {op.options.get('stride_h')}"
            + (f"x{op.options.get('stride_w')}" if op.options.get('stride_w') != op.options.get('stride_h') else "")
            + f"{channels} (index {op.index})")


def total_padding(graph: Graph, op: Op, folded: Optional[Pads]) -> Optional[Pads]:
    """The convolution's own explicit padding plus a fused PAD's; None for TensorFlow SAME padding kept."""
    own = conv_padding(graph, op)
    if own is None:
        return None
    return tuple(a + b for a, b in zip(own, folded or (0, 0, 0, 0)))  # type: ignore[return-value]


def problem(graph: Graph, op: Op, folded: Optional[Pads] = None) -> Optional[str]:
    """None when ``op`` can run inside XNNPACK's CHW part, else why not (after "cannot run in CHW layout: ")."""
    values = [graph.tensors[t] for t in op.inputs + op.outputs if t >= 0]
    if any(t.dtype not in ("float32", "float16") for t in values if not (t.constant and t.dtype == "int32")):
        return "it has non-float values"
    name = op.name if not op.custom else "custom"
    if name == "CONV_2D":
        return _conv(graph, op, folded)
    if name == "DEPTHWISE_CONV_2D":
        return _depthwise(graph, op, folded)
    if name in ("ADD", "MUL"):
        shapes = [graph.tensors[t].shape for t in op.inputs[:2]]
        if len(shapes) != 2 or any(len(s) != 4 for s in shapes):
            return "XNNPACK needs both inputs 4-dimensional there"
        first = sum(1 for d in shapes[0] if d != 1)  # XNNPACK checks input 0's shape for either constant input
        if any(is_static(graph, t) for t in op.inputs[:2]) and first > 1:
            return "a constant operand (XNNPACK accepts one only beside a scalar or vector)"
        return None
    if name in UNARY:
        return None if len(graph.tensors[op.inputs[0]].shape) == 4 else "its input is not 4-dimensional"
    if name == "RESIZE_BILINEAR":
        shape = graph.tensors[op.inputs[0]].shape
        return None if len(shape) == 4 and shape[1] > 1 and shape[2] > 1 else "its input is 1 pixel high or wide"
    if name == "MEAN":
        axes = spatial_axes(graph, op)
        return f"MEAN over axes {axes}: only a MEAN over height and width ends the CHW part"
    return "XNNPACK's CHW path has no kernel for it"


def _conv(graph: Graph, op: Op, folded: Optional[Pads]) -> Optional[str]:
    kh, kw = kernel(graph, op)
    source, weights = graph.tensors[op.inputs[0]].shape, graph.tensors[op.inputs[1]].shape
    if len(source) == 4 and len(weights) == 4 and source[3] != weights[3]:
        return "a grouped convolution"
    if (op.options.get("dilation_h"), op.options.get("dilation_w")) != (1, 1):
        return "a dilated convolution"
    if (kh, kw) != (1, 1):
        return (f"a {kh}x{kw} stride-{op.options.get('stride_h')} convolution: only 1x1 convolutions run in CHW "
                "layout (and a 3x3 stride-2 conv on 3 channels as the first op)")
    pads = total_padding(graph, op, folded)
    if pads != (0, 0, 0, 0):
        return "a 1x1 convolution with padding"
    if (op.options.get("stride_h"), op.options.get("stride_w")) != (1, 1):
        return "a 1x1 convolution with a stride over 1"
    return None


def _depthwise(graph: Graph, op: Op, folded: Optional[Pads]) -> Optional[str]:
    kh, kw = kernel(graph, op)
    sh, sw = op.options.get("stride_h"), op.options.get("stride_w")
    if (op.options.get("dilation_h"), op.options.get("dilation_w")) != (1, 1):
        return "a dilated depthwise convolution"
    pads = total_padding(graph, op, folded)
    if pads is None:
        return SAME_STRIDE_2
    if op.options.get("depth_multiplier") != 1:
        return f"depth multiplier {op.options.get('depth_multiplier')} (XNNPACK: 1)"
    if sh != sw or sh not in (1, 2):
        return f"stride {sh}x{sw} (XNNPACK: 1x1 or 2x2)"
    if kh != kw or kh not in (3, 5):
        return f"a {kh}x{kw} kernel (XNNPACK: 3x3 or 5x5)"
    need = kh // 2
    if pads != (need,) * 4:
        return (f"padding top {pads[0]}, bottom {pads[1]}, left {pads[2]}, right {pads[3]} "
                f"(XNNPACK: {need} on each side for a {kh}x{kw} kernel)")
    return None
