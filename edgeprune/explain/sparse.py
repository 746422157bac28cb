"""The rules of XNNPACK's sparse inference path, checked in order on a model's first subgraph.

XNNPACK runs a part of a float graph in CHW layout with sparse 1x1 kernels (SpMM) only when all of these hold;
each rule says where XNNPACK (75db3c0) or the TFLite delegate (LiteRT f674577) decides it:

1. ``float``: every value is float (src/subgraph.c ``all_values_fp``; int8 weights or activations never).
2. ``stored-sparse``: some weights are stored sparse and expanded by DENSIFY: only then does the delegate set
   XNN_FLAG_HINT_SPARSE_INFERENCE (xnnpack_delegate.cc: ``has_sparse_weights``, from ``static_sparse_weights_``).
3. ``stem``: the CHW part starts at a 3x3 stride-2 convolution on 3 input channels, the only node that turns
   NHWC into CHW (``xnn_check_nchw_compatibility``: XNN_LAYOUT_FLAG_COMPATIBLE_NHWC2NCHW).
4. ``stem-padding``: that convolution pads 1 on each side (a zero PAD before a VALID convolution is fused into
   it; TensorFlow SAME padding with stride 2 is not explicit padding and is refused).
5. ``ends-with-mean``: the CHW part ends in a MEAN over height and width (global average pooling) or a
   DEPTH_TO_SPACE, the nodes that turn CHW back (XNN_LAYOUT_FLAG_COMPATIBLE_NCHW2NHWC).
6. ``chw-ops``: every op between them can run in CHW layout, reads nothing from outside that part and writes
   no model output (``xnn_subgraph_rewrite_for_nchw``'s cluster checks).
7. ``zeros``: more than 2/3 of the 1x1 convolutions' weights are zero (``num_zeroes * 3 <= num_params * 2``
   disables it).

On top of these the CPU must allow it: on x86 with AVX XNNPACK never takes the path (see docs/explain.md).
"""
from __future__ import annotations

from typing import Any, Dict, List, Optional, Set, Tuple

from . import chw
from .graph import Graph, Op
from .weights import UNPACKING, is_static, zero_count

QUANTIZED = ("int8", "uint8", "int16", "int4")
RULES = (("float", "float model"), ("stored-sparse", "weights stored sparse (DENSIFY)"),
         ("stem", "starts with a 3x3 stride-2 conv on 3 channels"), ("stem-padding", "stem pads 1 on each side"),
         ("ends-with-mean", "ends with a spatial MEAN"), ("chw-ops", "every op between runs in CHW layout"),
         ("zeros", "more than 2/3 of 1x1 weights are zero"))
DENSE_STORED = "weights stored dense: convert with EXPERIMENTAL_SPARSITY"


def check(graph: Graph, verdicts: Dict[int, Optional[str]]) -> List[Dict[str, Any]]:
    """Every rule as {"name", "title", "ok", "detail"}; ok is None for a rule an earlier failure left unchecked."""
    found: Dict[str, Tuple[Optional[bool], str]] = {
        "float": _float(graph), "stored-sparse": _stored_sparse(graph, verdicts)}
    stem = next((op for op in graph.ops if op.name in ("CONV_2D", "DEPTHWISE_CONV_2D") and not op.custom), None)
    found["stem"] = _stem(graph, verdicts, stem)
    if found["stem"][0]:
        assert stem is not None
        found["stem-padding"] = _stem_padding(graph, stem)
        part, exits, trouble = _walk(graph, verdicts, stem)
        found["ends-with-mean"], reach = _ends(graph, stem, trouble)
        if found["ends-with-mean"][0]:
            found["chw-ops"] = ((False, f"op {trouble[0].name} (index {trouble[0].index}) cannot run in CHW layout: "
                                        f"{trouble[1]}") if trouble else (True, f"{len(part)} ops in CHW layout"))
            found["zeros"] = _zeros(graph, reach if trouble else part, exits)
    return [{"name": name, "title": title, "ok": found.get(name, (None, ""))[0],
             "detail": found.get(name, (None, "not checked: an earlier rule failed"))[1]} for name, title in RULES]


def first_broken(rules: List[Dict[str, Any]]) -> str:
    """The detail of the first rule that fails (or could not be checked), "" when every rule holds."""
    return next((rule["detail"] for rule in rules if rule["ok"] is False),
                next((rule["detail"] for rule in rules if rule["ok"] is None), ""))


def _reads(graph: Graph) -> List[Tuple[Op, int]]:
    """(op, tensor) for every tensor an op other than DENSIFY/DEQUANTIZE reads or writes."""
    return [(op, t) for op in graph.ops if op.custom or op.name not in UNPACKING
            for t in op.inputs + op.outputs if t >= 0]


def _float(graph: Graph) -> Tuple[bool, str]:
    quantized = [(op, graph.tensors[t]) for op, t in _reads(graph) if graph.tensors[t].dtype in QUANTIZED]
    if not quantized:
        return True, "every value is float"
    values = [t for _, t in quantized if not t.constant]
    if values:
        return False, f"{values[0].dtype} model: the sparse path is float-only"
    op, tensor = quantized[0]
    return False, (f"{tensor.dtype} weights (dynamic-range quantization, e.g. {op.name} index {op.index}): "
                   "the sparse path is float-only")


def sparse_stored(graph: Graph) -> List[Op]:
    """The DENSIFY ops that expand a sparse-stored constant."""
    return [op for op in graph.ops if op.name == "DENSIFY" and not op.custom and op.inputs and op.inputs[0] >= 0
            and graph.tensors[op.inputs[0]].sparsity is not None and graph.tensors[op.inputs[0]].constant]


def _stored_sparse(graph: Graph, verdicts: Dict[int, Optional[str]]) -> Tuple[bool, str]:
    densify = sparse_stored(graph)
    if not densify:
        return False, DENSE_STORED
    taken = [op for op in densify if verdicts.get(op.index) is None]
    if not taken:
        return False, "the sparse-stored weights are read by ops XNNPACK does not take, so it is never told to try"
    return True, f"{len(taken)} weight tensor(s) stored sparse and expanded by XNNPACK"


def _stem(graph: Graph, verdicts: Dict[int, Optional[str]], stem: Optional[Op]) -> Tuple[bool, str]:
    if stem is None:
        return False, "first op is not a 3x3 stride-2 conv on 3 channels: the model has no convolution"
    what = f"first op is not a 3x3 stride-2 conv on 3 channels: it is {chw.describe_conv(graph, stem)}"
    source = graph.tensors[stem.inputs[0]].shape
    weights = graph.tensors[stem.inputs[1]].shape
    shaped = (stem.name == "CONV_2D" and chw.kernel(graph, stem) == (3, 3) and len(source) == 4 and source[3] == 3
              and len(weights) == 4 and weights[3] == 3)
    strided = (stem.options.get("stride_h"), stem.options.get("stride_w")) == (2, 2)
    if not shaped or not strided:
        return False, what
    if (stem.options.get("dilation_h"), stem.options.get("dilation_w")) != (1, 1):
        return False, f"{what}, dilated"
    if verdicts.get(stem.index) is not None:
        return False, f"XNNPACK does not take the first convolution: {verdicts[stem.index]}"
    return True, chw.describe_conv(graph, stem)


def _stem_padding(graph: Graph, stem: Op) -> Tuple[bool, str]:
    producer = graph.producer(stem.inputs[0])
    fused = chw.fused_pad(graph, producer) if producer is not None else None
    pads = chw.total_padding(graph, stem, fused[1] if fused else None)
    if pads is None:
        return False, f"the stem conv uses {chw.SAME_STRIDE_2}"
    via = f" (PAD index {producer.index} fused in)" if fused and producer is not None else ""
    if pads != (1, 1, 1, 1):
        return False, (f"the stem conv pads top {pads[0]}, bottom {pads[1]}, left {pads[2]}, right {pads[3]}{via}; "
                       "XNNPACK's CHW path needs 1 on each side: ZeroPadding2D(1) then padding='valid'")
    return True, f"padding 1 on each side{via}"


def _walk(graph: Graph, verdicts: Dict[int, Optional[str]],
          stem: Op) -> Tuple[List[Op], List[Op], Optional[Tuple[Op, str]]]:
    """Follow the stem's output in execution order: (the CHW ops, the exits, the first op that breaks it)."""
    inside: Set[int] = set(stem.outputs)
    part: List[Op] = [stem]
    exits: List[Op] = []
    folded: Dict[int, chw.Pads] = {}
    for op in graph.ops[stem.index + 1:]:
        if not any(t in inside for t in op.inputs):
            continue
        if verdicts.get(op.index) is not None:
            return part, exits, (op, f"XNNPACK does not take it ({verdicts[op.index]})")
        outside = [t for t in op.inputs if t >= 0 and t not in inside and not is_static(graph, t)]
        if chw.is_exit(graph, op):
            exits.append(op)
            continue
        fusion = chw.fused_pad(graph, op)
        if fusion is not None:
            folded[fusion[0].index] = fusion[1]
            inside.update(op.outputs)
            continue
        why = chw.problem(graph, op, folded.get(op.index))
        if why is None and outside:
            why = f"it also reads tensor {outside[0]}, which comes from outside the CHW part"
        if why is not None:
            return part, exits, (op, why)
        part.append(op)
        inside.update(op.outputs)
    written = [t for t in inside if t in graph.outputs]
    if written:
        op = graph.producer(written[0]) or stem
        return part, exits, (op, "its output is a model output; the CHW part must end in a MEAN over height and width")
    return part, exits, None


def _ends(graph: Graph, stem: Op, trouble: Optional[Tuple[Op, str]]) -> Tuple[Tuple[bool, str], List[Op]]:
    """Whether a spatial MEAN follows the stem at all, and the ops from the stem up to the first such MEAN."""
    reach: Set[int] = set(stem.outputs)
    ops: List[Op] = [stem]
    for op in graph.ops[stem.index + 1:]:
        if any(t in reach for t in op.inputs):
            if chw.is_exit(graph, op):
                return (True, f"{op.name} (index {op.index})"), ops
            reach.update(op.outputs)
            ops.append(op)
    where = f": after the convolutions comes {trouble[0].name} (index {trouble[0].index})" if trouble else ""
    return (False, ("does not end with a spatial MEAN (global average pooling)" + where
                    + "; XNNPACK's CHW part must end in a MEAN over height and width (GlobalAveragePooling2D)")), ops


def one_by_one(graph: Graph, ops: List[Op]) -> Tuple[int, int, bool]:
    """(zeros, weights, all readable) over the 1x1 CONV_2D ops among ``ops``."""
    zeros = total = 0
    readable = True
    for op in ops:
        if op.name == "CONV_2D" and not op.custom and len(op.inputs) > 1 and chw.kernel(graph, op) == (1, 1):
            counted = zero_count(graph, op.inputs[1])
            if counted is None:
                readable = False
                continue
            zeros, total = zeros + counted[0], total + counted[1]
    return zeros, total, readable


def _zeros(graph: Graph, part: List[Op], exits: List[Op]) -> Tuple[Optional[bool], str]:
    zeros, total, readable = one_by_one(graph, part)
    if not readable:
        return None, "cannot count the zeros: some 1x1 weights are not stored in the file"
    if total == 0:
        return False, "no 1x1 convolution in the CHW part: nothing for the sparse kernels to do"
    share = zeros / total
    heads = [op for exit_op in exits for op in graph.consumers(exit_op.outputs[0]) if op.name == "FULLY_CONNECTED"]
    note = ""
    if heads:
        fc = [zero_count(graph, op.inputs[1]) for op in heads if len(op.inputs) > 1 and op.inputs[1] >= 0]
        fz, ft = sum(c[0] for c in fc if c), sum(c[1] for c in fc if c)
        together = (zeros + fz) / (total + ft) if total + ft else share
        enough = (zeros + fz) * 3 > (total + ft) * 2
        note = (f"; XNNPACK builds from 2025-01 on also count the FULLY_CONNECTED weights after the MEAN: "
                f"{int(together * 100)}% zero with them" + ("" if enough else ", too few for those builds: prune that "
                                                                               "layer too"))
    if zeros * 3 <= total * 2:
        return False, f"only {int(share * 100)}% of 1x1 weights are zero, needs more than 2/3 (~67%)" + note
    return True, f"{int(share * 100)}% of 1x1 weights are zero ({zeros} of {total})" + note
