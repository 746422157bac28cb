"""Zeros in a weight tensor as the kernel sees it, whether the file stores it dense or compressed.

XNNPACK decides on its sparse path by counting the zeros of the 1x1 convolutions' weights after the delegate
has expanded them (a DENSIFY of a sparse-stored constant, maybe a DEQUANTIZE of float16 after it). The check
counts the same zeros without expanding: a dense constant is counted directly; a compressed one stores only
some positions (tflite::SparsityParameters: a traversal order, blocks, and per dimension either a dense size or
CSR segments and indices), every other position is zero, so zeros = all positions - stored values that are not
zero. The metadata is walked once to prove it describes exactly as many values as are stored: a file that
lies about it is refused, not miscounted.
"""
from __future__ import annotations

import math
from typing import Optional, Tuple

from ..errors import ModelError
from .graph import Graph, Sparsity, Tensor

#: Ops through which a stored constant reaches a kernel as a weight (the delegate unpacks both in advance).
UNPACKING = ("DENSIFY", "DEQUANTIZE")


def stored_constant(graph: Graph, tensor: int) -> Optional[Tensor]:
    """The constant behind ``tensor``: itself, or the input of the DENSIFY/DEQUANTIZE chain producing it."""
    current = graph.tensors[tensor]
    for _ in range(len(graph.ops) + 1):
        if current.constant:
            return current
        op = graph.producer(current.index)
        if op is None or op.custom or op.name not in UNPACKING or not op.inputs or op.inputs[0] < 0:
            return None
        current = graph.tensors[op.inputs[0]]
    return None


def is_static(graph: Graph, tensor: int) -> bool:
    """A constant, or made from one by DENSIFY/DEQUANTIZE (the delegate's "quasi-static" tensors)."""
    return tensor >= 0 and stored_constant(graph, tensor) is not None


def zero_count(graph: Graph, tensor: int) -> Optional[Tuple[int, int]]:
    """(zeros, values) of weight ``tensor`` once expanded; None when its bytes are not in the file or unread."""
    dense = graph.tensors[tensor]
    constant = stored_constant(graph, tensor)
    if constant is None or constant.external or constant.dtype not in ("float32", "float16", "int8"):
        return None
    if any(d < 0 for d in dense.shape):
        return None
    total = math.prod(dense.shape)
    values = graph.array(constant)
    nonzero = int((values != 0).sum())
    if constant.sparsity is not None:
        described = stored_values(graph, constant.sparsity, constant.shape)
        if described != values.size:
            raise ModelError(f"tensor {constant.index}'s sparsity parameters describe {described} values; its "
                             f"buffer holds {values.size}")
    elif values.size != total:
        raise ModelError(f"tensor {constant.index} has {values.size} values; its shape "
                         f"{list(dense.shape)} needs {total}")
    return max(total - nonzero, 0), total


def stored_values(graph: Graph, sparsity: Sparsity, shape: Tuple[int, ...]) -> int:
    """How many values the compressed layout stores, walking its dimensions in traversal order."""
    rank, levels = len(shape), len(sparsity.traversal_order)
    if (len(sparsity.dims) != levels or levels < rank or len(sparsity.block_map) != levels - rank
            or sorted(sparsity.traversal_order) != list(range(levels))
            or any(not 0 <= d < rank for d in sparsity.block_map)):
        raise ModelError("a sparse tensor's traversal order, block map and dimensions do not agree")
    blocks = {dim: sparsity.dims[sparsity.traversal_order.index(rank + i)].dense_size
              for i, dim in enumerate(sparsity.block_map)}
    count = 1
    for level, meta in enumerate(sparsity.dims):
        dim = sparsity.traversal_order[level]
        if dim < rank:
            size = shape[dim] // blocks[dim] if blocks.get(dim) else shape[dim]
        else:
            size = meta.dense_size
        if not meta.sparse:
            if meta.dense_size <= 0 or meta.dense_size != size:
                raise ModelError(f"a sparse tensor's dense dimension {level} has size {meta.dense_size}, not {size}")
            count *= size
            continue
        if meta.segments is None or meta.indices is None:
            raise ModelError(f"a sparse tensor's compressed dimension {level} lacks its segments or indices")
        segments, indices = graph.index_vector(meta.segments), graph.index_vector(meta.indices)
        if (segments.size != count + 1 or int(segments[0]) != 0 or (segments[1:] < segments[:-1]).any()
                or int(segments[-1]) != indices.size
                or (indices.size and (int(indices.max()) >= size or int(indices.min()) < 0))):
            raise ModelError(f"a sparse tensor's compressed dimension {level} has inconsistent segments or indices")
        count = int(indices.size)
    return count
