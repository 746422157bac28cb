"""A .tflite file read deep enough to judge XNNPACK: operators with their options, tensors, buffers.

The device agent's reader (``device_agent.flatbuffer``) checks the whole file and names its op codes; it stops
there because the agent needs nothing more. The "why not faster" check needs what each operator does (strides,
padding, kernel sizes, fused activations, reduced axes), what each tensor is (shape, type, quantization,
sparsity parameters, whether it is a constant) and the constants' bytes (zeros in 1x1 kernels, MEAN's axes,
PAD's paddings). This module reads those with the agent's own bounds-checked ``_Reader``/``_Table`` (one
reader, one set of checks for hostile files): the file is first validated whole by the agent's ``parse``,
then re-walked here. Anything malformed is one ``ModelError``; nothing else escapes.
"""
from __future__ import annotations

import struct
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Tuple

from device_agent import flatbuffer as fb
from device_agent.flatbuffer import _Bad, _Reader, _Table  # the agent's bounds-checked primitives, reused
from device_agent.protocol import AgentError

from ..errors import ModelError

#: Names longer than this are cut when read: a hostile file cannot make the check carry megabytes of names.
MAX_NAME = 256
_I8, _I32, _F32 = struct.Struct("<b"), struct.Struct("<i"), struct.Struct("<f")
_CONV = (("padding", 0, "b", 0), ("stride_w", 1, "i", 0), ("stride_h", 2, "i", 0),
         ("activation", 3, "b", 0), ("dilation_w", 4, "i", 1), ("dilation_h", 5, "i", 1))
_DEPTHWISE = (("padding", 0, "b", 0), ("stride_w", 1, "i", 0), ("stride_h", 2, "i", 0),
              ("depth_multiplier", 3, "i", 0), ("activation", 4, "b", 0), ("dilation_w", 5, "i", 1),
              ("dilation_h", 6, "i", 1))
_POOL = (("padding", 0, "b", 0), ("stride_w", 1, "i", 0), ("stride_h", 2, "i", 0), ("filter_w", 3, "i", 0),
         ("filter_h", 4, "i", 0), ("activation", 5, "b", 0))
_ACTIVATION = (("activation", 0, "b", 0),)
#: Per operator: its tflite::BuiltinOptions union member and the fields read (name, slot, format, default).
_OPTIONS: Dict[str, Tuple[int, Tuple[Tuple[str, int, str, Any], ...]]] = {
    "CONV_2D": (1, _CONV), "DEPTHWISE_CONV_2D": (2, _DEPTHWISE),
    "AVERAGE_POOL_2D": (5, _POOL), "MAX_POOL_2D": (5, _POOL), "L2_POOL_2D": (5, _POOL),
    "FULLY_CONNECTED": (8, (("activation", 0, "b", 0), ("weights_format", 1, "b", 0),
                            ("keep_num_dims", 2, "b", 0))),
    "SOFTMAX": (9, (("beta", 0, "f", 0.0),)),
    "CONCATENATION": (10, (("axis", 0, "i", 0), ("activation", 1, "b", 0))),
    "ADD": (11, _ACTIVATION), "MUL": (21, _ACTIVATION), "SUB": (28, _ACTIVATION), "DIV": (29, _ACTIVATION),
    "LEAKY_RELU": (75, (("alpha", 0, "f", 0.0),)),
    **{name: (27, (("keep_dims", 0, "b", 0),)) for name in
       ("MEAN", "SUM", "REDUCE_MAX", "REDUCE_MIN", "REDUCE_PROD", "REDUCE_ANY")},
}
_FORMATS = {"b": _I8, "i": _I32, "f": _F32}
#: tflite::SparseIndexVector members: Int32Vector, Uint16Vector, Uint8Vector (numpy dtype, element size).
INDEX_TYPES = {1: ("<i4", 4), 2: ("<u2", 2), 3: ("u1", 1)}
#: numpy dtypes of the tensor types whose constants the check reads.
NUMPY_TYPES = {"float32": "<f4", "float16": "<f2", "int8": "i1", "uint8": "u1", "int32": "<i4", "int64": "<i8"}


@dataclass(frozen=True)
class DimMeta:
    """One tflite::DimensionMetadata: a dense dimension, or a compressed (CSR) one with its index vectors."""

    sparse: bool
    dense_size: int
    segments: Optional[Tuple[int, int, int]]  # (first byte, count, index type) of array_segments
    indices: Optional[Tuple[int, int, int]]   # (first byte, count, index type) of array_indices


@dataclass(frozen=True)
class Sparsity:
    """A tensor's tflite::SparsityParameters: its values are stored compressed and a DENSIFY op expands them."""

    traversal_order: Tuple[int, ...]
    block_map: Tuple[int, ...]
    dims: Tuple[DimMeta, ...]


@dataclass(frozen=True)
class Tensor:
    """What XNNPACK's checks ask of a tensor."""

    index: int
    name: str
    dtype: str
    shape: Tuple[int, ...]
    buffer: int
    data: Optional[Tuple[int, int]]  # (first byte, length) of its constant bytes; None: not a constant
    scales: int                      # quantization scales (0: not quantized, 1: per tensor, more: per channel)
    quantized_dimension: int
    sparsity: Optional[Sparsity]
    external: bool                   # its bytes live in an external buffer file (not read)

    @property
    def constant(self) -> bool:
        return self.data is not None or self.external


@dataclass(frozen=True)
class Op:
    """One operator: what it is, its tensors, and the builtin options this check reads (defaults when absent)."""

    index: int
    name: str
    custom: bool
    version: int
    inputs: Tuple[int, ...]
    outputs: Tuple[int, ...]
    options: Dict[str, Any] = field(default_factory=dict)


@dataclass
class Graph:
    """One subgraph with the file's bytes, so constants can be read when a rule needs them."""

    index: int
    tensors: List[Tensor]
    ops: List[Op]
    inputs: Tuple[int, ...]
    outputs: Tuple[int, ...]
    raw: Any = field(repr=False)

    def __post_init__(self) -> None:
        self._made: Dict[int, Op] = {}
        self._used: Dict[int, List[Op]] = {}
        for op in self.ops:
            for t in op.outputs:
                self._made.setdefault(t, op)
            for t in dict.fromkeys(op.inputs):
                if t >= 0:
                    self._used.setdefault(t, []).append(op)

    def producer(self, tensor: int) -> Optional[Op]:
        """The op that writes ``tensor``, None for inputs and constants."""
        return self._made.get(tensor)

    def consumers(self, tensor: int) -> List[Op]:
        """The ops that read ``tensor``, in execution order."""
        return self._used.get(tensor, [])

    def array(self, tensor: Tensor, dtype: Optional[str] = None) -> Any:
        """A constant tensor's stored values as a flat numpy array (``ModelError`` if its bytes do not fit)."""
        import numpy as np

        kind = dtype or NUMPY_TYPES.get(tensor.dtype)
        if tensor.data is None or kind is None:
            raise ModelError(f"tensor {tensor.index} is not a constant this check can read")
        start, length = tensor.data
        size = np.dtype(kind).itemsize
        if length % size:
            raise ModelError(f"tensor {tensor.index}'s buffer has {length} bytes, not whole {tensor.dtype} values")
        return np.frombuffer(self.raw, dtype=kind, count=length // size, offset=start)

    def index_vector(self, where: Tuple[int, int, int]) -> Any:
        """A sparse dimension's array_segments or array_indices as a numpy array."""
        import numpy as np

        start, count, kind = where
        return np.frombuffer(self.raw, dtype=INDEX_TYPES[kind][0], count=count, offset=start)


def read_graphs(data: Any, label: str) -> List[Graph]:
    """Every subgraph of the .tflite in ``data``; ``ModelError`` naming what is wrong for anything malformed."""
    try:
        fb.parse(data, label)  # the agent's whole-file check first: every table, vector and index in range
        return _Deep(data).graphs()
    except AgentError as exc:
        raise ModelError(str(exc)) from None
    except _Bad as exc:
        raise ModelError(f"{label} is not a valid .tflite file: {exc}") from None


class _Deep(_Reader):
    """The agent's reader, walked again for operators' options, tensors' details and buffers' bytes."""

    def graphs(self) -> List[Graph]:
        root = _Table(self, self.scalar(struct.Struct("<I"), 0, "the root offset"), "the model")
        codes = [self.opcode(t) for t in root.tables(1, "operator code")]
        buffers = [self.buffer(t) for t in root.tables(4, "buffer")]
        return [self.subgraph(table, i, codes, buffers) for i, table in enumerate(root.tables(2, "subgraph"))]

    def buffer(self, table: _Table) -> Optional[Tuple[int, int]]:
        start, count = table.vector(0, 1, table.what + "'s data")
        offset, size = table.scalar(1, struct.Struct("<Q"), 0), table.scalar(2, struct.Struct("<Q"), 0)
        if offset > 1:  # kept after the flatbuffer (models over 2 GB); the agent checked it lies in the file
            return (offset, size) if size else None
        return (start, count) if count else None

    def subgraph(self, table: _Table, index: int, codes: List[Tuple[str, int, bool, int]],
                 buffers: List[Optional[Tuple[int, int]]]) -> Graph:
        where = f"subgraph {index}"
        tensors = [self.tensor(t, i, buffers) for i, t in enumerate(table.tables(0, where + " tensor"))]
        ops = [self.operator(t, i, codes) for i, t in enumerate(table.tables(3, where + " operator"))]
        inputs = tuple(table.ints(1, where + "'s inputs") or ())
        outputs = tuple(table.ints(2, where + "'s outputs") or ())
        return Graph(index, tensors, ops, inputs, outputs, self.data)

    def tensor(self, table: _Table, index: int, buffers: List[Optional[Tuple[int, int]]]) -> Tensor:
        code = table.scalar(1, _I8, 0)
        dtype = fb.TENSOR_TYPES[code] if 0 <= code < len(fb.TENSOR_TYPES) else f"type{code}"
        shape = tuple(table.ints(0, table.what + "'s shape") or ())
        buffer = table.scalar(2, struct.Struct("<I"), 0)
        name = (table.string(3, table.what + "'s name") or "")[:MAX_NAME]
        scales, dimension = 0, 0
        quantization = table.table(4, table.what + "'s quantization")
        if quantization is not None:
            scales = quantization.vector(2, 4, quantization.what)[1]
            dimension = quantization.scalar(6, _I32, 0)
        sparsity = table.table(6, table.what + "'s sparsity")
        external = table.scalar(10, struct.Struct("<I"), 0) != 0
        data = buffers[buffer] if 0 < buffer < len(buffers) else None
        return Tensor(index, name, dtype, shape, buffer, data, scales, dimension,
                      self.sparsity(sparsity) if sparsity is not None else None, external)

    def sparsity(self, table: _Table) -> Sparsity:
        order = tuple(table.ints(0, table.what + "'s traversal order") or ())
        block_map = tuple(table.ints(1, table.what + "'s block map") or ())
        dims = []
        for meta in table.tables(2, table.what + "'s dimension"):
            vectors = []
            for type_slot, slot in ((2, 3), (4, 5)):
                kind = meta.scalar(type_slot, struct.Struct("<B"), 0)
                vector = meta.table(slot, meta.what + "'s index vector")
                if vector is None or kind == 0:
                    vectors.append(None)
                    continue
                if kind not in INDEX_TYPES:
                    raise _Bad(f"{meta.what} has the index vector type {kind}")
                start, count = vector.vector(0, INDEX_TYPES[kind][1], vector.what)
                vectors.append((start, count, kind))
            dims.append(DimMeta(meta.scalar(0, _I8, 0) == 1, meta.scalar(1, _I32, 0), vectors[0], vectors[1]))
        return Sparsity(order, block_map, tuple(dims))

    def operator(self, table: _Table, index: int, codes: List[Tuple[str, int, bool, int]]) -> Op:
        name, version, custom, _ = codes[table.scalar(0, struct.Struct("<I"), 0)]  # in range: the agent checked
        inputs = tuple(table.ints(1, table.what + "'s inputs") or ())
        outputs = tuple(table.ints(2, table.what + "'s outputs") or ())
        options: Dict[str, Any] = {}
        if not custom and name in _OPTIONS:
            union, fields = _OPTIONS[name]
            given = table.table(4, table.what + "'s options")
            # like the runtimes: options of another union member count as absent (defaults apply)
            present = given is not None and table.scalar(3, struct.Struct("<B"), 0) == union
            for key, slot, fmt, default in fields:
                options[key] = given.scalar(slot, _FORMATS[fmt], default) if present and given else default
        return Op(index, name[:MAX_NAME], custom, version, inputs, outputs, options)
