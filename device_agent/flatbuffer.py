"""Reading a .tflite file's flatbuffer in plain Python: its ops and its input/output signature.

No flatbuffers package, no TensorFlow, no numpy: the host imports this module too. The reader follows the
TFLite schema (tensorflow/lite/schema/schema.fbs, file identifier ``TFL3``) far enough to name the model's
operator codes (builtin name or custom name, version, how many operators use each) and the tensors of the
first subgraph's inputs and outputs, and it bounds-checks every table, vector and string it touches on the
way, and those a runtime would touch: every tensor, operator and buffer of every subgraph. tflite-runtime
2.14 has no flatbuffer verifier and segfaults on some truncated files; a file this reader refuses never
reaches an interpreter. Any problem is ``AgentError(model-load)`` naming what lies where; nothing else escapes.
"""

from __future__ import annotations

import mmap
import struct
from typing import Any, Dict, List, NamedTuple, Optional, Tuple

from .protocol import MODEL_LOAD, AgentError

FILE_IDENTIFIER = b"TFL3"
SCHEMA_VERSION = 3
#: The builtin code of custom ops (BuiltinOperator.CUSTOM).
CUSTOM = 32
#: At most this many tables and vector elements are read: a hostile file cannot make the reader loop for long.
MAX_ITEMS = 1000000

#: tflite::BuiltinOperator, indexed by code (schema.fbs; tests/agent check it against ai_edge_litert's schema).
BUILTIN_OPS: Tuple[str, ...] = tuple("""
ADD AVERAGE_POOL_2D CONCATENATION CONV_2D DEPTHWISE_CONV_2D DEPTH_TO_SPACE DEQUANTIZE EMBEDDING_LOOKUP FLOOR
FULLY_CONNECTED HASHTABLE_LOOKUP L2_NORMALIZATION L2_POOL_2D LOCAL_RESPONSE_NORMALIZATION LOGISTIC LSH_PROJECTION
LSTM MAX_POOL_2D MUL RELU RELU_N1_TO_1 RELU6 RESHAPE RESIZE_BILINEAR RNN SOFTMAX SPACE_TO_DEPTH SVDF TANH
CONCAT_EMBEDDINGS SKIP_GRAM CALL CUSTOM EMBEDDING_LOOKUP_SPARSE PAD UNIDIRECTIONAL_SEQUENCE_RNN GATHER
BATCH_TO_SPACE_ND SPACE_TO_BATCH_ND TRANSPOSE MEAN SUB DIV SQUEEZE UNIDIRECTIONAL_SEQUENCE_LSTM STRIDED_SLICE
BIDIRECTIONAL_SEQUENCE_RNN EXP TOPK_V2 SPLIT LOG_SOFTMAX DELEGATE BIDIRECTIONAL_SEQUENCE_LSTM CAST PRELU MAXIMUM
ARG_MAX MINIMUM LESS NEG PADV2 GREATER GREATER_EQUAL LESS_EQUAL SELECT SLICE SIN TRANSPOSE_CONV SPARSE_TO_DENSE
TILE EXPAND_DIMS EQUAL NOT_EQUAL LOG SUM SQRT RSQRT SHAPE POW ARG_MIN FAKE_QUANT REDUCE_PROD REDUCE_MAX PACK
LOGICAL_OR ONE_HOT LOGICAL_AND LOGICAL_NOT UNPACK REDUCE_MIN FLOOR_DIV REDUCE_ANY SQUARE ZEROS_LIKE FILL FLOOR_MOD
RANGE RESIZE_NEAREST_NEIGHBOR LEAKY_RELU SQUARED_DIFFERENCE MIRROR_PAD ABS SPLIT_V UNIQUE CEIL REVERSE_V2 ADD_N
GATHER_ND COS WHERE RANK ELU REVERSE_SEQUENCE MATRIX_DIAG QUANTIZE MATRIX_SET_DIAG ROUND HARD_SWISH IF WHILE
NON_MAX_SUPPRESSION_V4 NON_MAX_SUPPRESSION_V5 SCATTER_ND SELECT_V2 DENSIFY SEGMENT_SUM BATCH_MATMUL
PLACEHOLDER_FOR_GREATER_OP_CODES CUMSUM CALL_ONCE BROADCAST_TO RFFT2D CONV_3D IMAG REAL COMPLEX_ABS HASHTABLE
HASHTABLE_FIND HASHTABLE_IMPORT HASHTABLE_SIZE REDUCE_ALL CONV_3D_TRANSPOSE VAR_HANDLE READ_VARIABLE
ASSIGN_VARIABLE BROADCAST_ARGS RANDOM_STANDARD_NORMAL BUCKETIZE RANDOM_UNIFORM MULTINOMIAL GELU
DYNAMIC_UPDATE_SLICE RELU_0_TO_1 UNSORTED_SEGMENT_PROD UNSORTED_SEGMENT_MAX UNSORTED_SEGMENT_SUM ATAN2
UNSORTED_SEGMENT_MIN SIGN BITCAST BITWISE_XOR RIGHT_SHIFT STABLEHLO_LOGISTIC STABLEHLO_ADD STABLEHLO_DIVIDE
STABLEHLO_MULTIPLY STABLEHLO_MAXIMUM STABLEHLO_RESHAPE STABLEHLO_CLAMP STABLEHLO_CONCATENATE
STABLEHLO_BROADCAST_IN_DIM STABLEHLO_CONVOLUTION STABLEHLO_SLICE STABLEHLO_CUSTOM_CALL STABLEHLO_REDUCE
STABLEHLO_ABS STABLEHLO_AND STABLEHLO_COSINE STABLEHLO_EXPONENTIAL STABLEHLO_FLOOR STABLEHLO_LOG STABLEHLO_MINIMUM
STABLEHLO_NEGATE STABLEHLO_OR STABLEHLO_POWER STABLEHLO_REMAINDER STABLEHLO_RSQRT STABLEHLO_SELECT
STABLEHLO_SUBTRACT STABLEHLO_TANH STABLEHLO_SCATTER STABLEHLO_COMPARE STABLEHLO_CONVERT STABLEHLO_DYNAMIC_SLICE
STABLEHLO_DYNAMIC_UPDATE_SLICE STABLEHLO_PAD STABLEHLO_IOTA STABLEHLO_DOT_GENERAL STABLEHLO_REDUCE_WINDOW
STABLEHLO_SORT STABLEHLO_WHILE STABLEHLO_GATHER STABLEHLO_TRANSPOSE DILATE STABLEHLO_RNG_BIT_GENERATOR
REDUCE_WINDOW STABLEHLO_COMPOSITE STABLEHLO_SHIFT_LEFT STABLEHLO_CBRT STABLEHLO_CASE
""".split())

#: tflite::TensorType, indexed by code, in lower case: numpy's dtype name for the numeric types numpy has.
TENSOR_TYPES: Tuple[str, ...] = (
    "float32", "float16", "int32", "uint8", "int64", "string", "bool", "int16", "complex64", "int8", "float64",
    "complex128", "uint64", "resource", "variant", "uint32", "uint16", "int4", "bfloat16", "int2", "uint4",
    "float8_e4m3fn", "float8_e5m2")


class OpCode(NamedTuple):
    """One entry of the model's operator codes."""

    name: str          # the builtin's name (CONV_2D) or the custom op's own name
    version: int
    custom: bool
    builtin_code: int  # CUSTOM (32) for custom ops
    count: int         # operators of any subgraph that use it


class TensorSig(NamedTuple):
    """An input or output of the first subgraph, as the interpreter's get_input_details() describes it."""

    index: int                              # the tensor's index in subgraph 0 (details' "index")
    name: str
    dtype: str                              # TENSOR_TYPES' name (float32, int8, bool, string, ...)
    shape: List[int]
    shape_signature: List[int]              # -1 for a dynamic dimension; the shape when the file has none
    scale: float                            # per-tensor quantization, 0.0 / 0 when none (or per-channel)
    zero_point: int


class ModelInfo(NamedTuple):
    schema_version: int
    description: Optional[str]
    subgraphs: int
    ops: List[OpCode]
    inputs: List[TensorSig]
    outputs: List[TensorSig]

    @property
    def custom_ops(self) -> List[OpCode]:
        return [op for op in self.ops if op.custom]


def tensor_json(sig: TensorSig) -> Dict[str, Any]:
    """The agent's tensor description (device_agent.model.tensor_info's keys)."""
    return {"name": sig.name, "dtype": sig.dtype, "shape": list(sig.shape),
            "shape_signature": list(sig.shape_signature),
            "quantization": {"scale": sig.scale, "zero_point": sig.zero_point}}


def describe(info: ModelInfo) -> Dict[str, Any]:
    """A JSON-ready summary: schema version, subgraphs, ops ({name, version, custom, count}), inputs, outputs."""
    return {"schema_version": info.schema_version, "subgraphs": info.subgraphs,
            "ops": [{"name": op.name, "version": op.version, "custom": op.custom, "count": op.count}
                    for op in info.ops],
            "inputs": [tensor_json(t) for t in info.inputs], "outputs": [tensor_json(t) for t in info.outputs]}


def read_model(path: str) -> ModelInfo:
    """Read and check ``path``; ``AgentError(model-load)`` for anything that is not a sound .tflite file."""
    try:
        with open(path, "rb") as fh:
            try:
                data: Any = mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ)
            except (ValueError, OSError):  # empty, or a file that cannot be mapped: read it
                data = fh.read()
    except OSError as exc:
        raise AgentError(MODEL_LOAD, "cannot read model file: %s" % exc)
    try:
        return parse(data, path)
    finally:
        if isinstance(data, mmap.mmap):
            data.close()


def parse(data: Any, label: str = "the model") -> ModelInfo:
    """Read a .tflite flatbuffer held in ``data`` (bytes, bytearray or mmap)."""
    try:
        return _Reader(data).model()
    except _Bad as exc:
        raise AgentError(MODEL_LOAD, "%s is not a valid .tflite file: %s" % (label, exc),
                         hint="the file is truncated, damaged or not a TFLite model: compare its sha256 with the "
                              "original's and copy it again")


class _Bad(Exception):
    pass


_I8, _U8, _U16, _I32, _U32, _U64 = (struct.Struct(f) for f in ("<b", "<B", "<H", "<i", "<I", "<Q"))


class _Table:
    """A flatbuffer table at ``pos``: its vtable says where each field is (0: absent, the default applies)."""

    def __init__(self, reader: "_Reader", pos: int, what: str) -> None:
        reader.spend(1, what)
        self.r, self.pos, self.what = reader, pos, what
        self.vtable = pos - reader.scalar(_I32, pos, what)
        vt_len = reader.scalar(_U16, self.vtable, what + "'s vtable")
        self.size = reader.scalar(_U16, self.vtable + 2, what + "'s vtable")
        if vt_len < 4 or vt_len % 2 or self.size < 4:
            raise _Bad("%s has a malformed vtable (at byte %d)" % (what, self.vtable))
        reader.need(self.vtable, vt_len, what + "'s vtable")
        reader.need(pos, self.size, what)
        self.fields = vt_len // 2 - 2

    def field(self, slot: int, size: int) -> int:
        if slot >= self.fields:
            return 0
        offset = self.r.scalar(_U16, self.vtable + 4 + 2 * slot, self.what)
        if offset and offset + size > self.size:
            raise _Bad("%s: field %d lies outside its table" % (self.what, slot))
        return self.pos + offset if offset else 0

    def scalar(self, slot: int, fmt: struct.Struct, default: int) -> int:
        at = self.field(slot, fmt.size)
        return self.r.scalar(fmt, at, self.what) if at else default

    def target(self, slot: int, what: str) -> int:
        """Where an offset field (table, vector, string) points; 0 when absent."""
        at = self.field(slot, 4)
        return at + self.r.scalar(_U32, at, what) if at else 0

    def table(self, slot: int, what: str) -> "Optional[_Table]":
        at = self.target(slot, what)
        return _Table(self.r, at, what) if at else None

    def vector(self, slot: int, elem_size: int, what: str) -> Tuple[int, int]:
        """(first element's position, length) of a vector field, bounds-checked; (0, 0) when absent."""
        at = self.target(slot, what)
        if not at:
            return 0, 0
        count = self.r.scalar(_U32, at, what)
        self.r.need(at + 4, count * elem_size, what)
        return at + 4, count

    def ints(self, slot: int, what: str, fmt: str = "i", size: int = 4) -> Optional[List[int]]:
        start, count = self.vector(slot, size, what)
        if not start:
            return None
        self.r.spend(count, what)
        return list(struct.unpack_from("<%d%s" % (count, fmt), self.r.data, start))

    def tables(self, slot: int, what: str) -> "List[_Table]":
        start, count = self.vector(slot, 4, what)
        self.r.spend(count, what)
        return [_Table(self.r, start + 4 * i + self.r.scalar(_U32, start + 4 * i, what), "%s %d" % (what, i))
                for i in range(count)]

    def string(self, slot: int, what: str) -> Optional[str]:
        start, count = self.vector(slot, 1, what)
        if not start:
            return None
        if self.r.scalar(_U8, start + count, what + "'s terminator") != 0:  # C++ readers rely on it
            raise _Bad("%s at byte %d lacks its terminating zero" % (what, start))
        return bytes(self.r.data[start:start + count]).decode("utf-8", "replace")


class _Reader:
    def __init__(self, data: Any) -> None:
        self.data = data
        self.size = len(data)
        self.budget = MAX_ITEMS

    def need(self, pos: int, length: int, what: str) -> None:
        if pos < 0 or length < 0 or pos + length > self.size:
            raise _Bad("%s (%d bytes at byte %d) lies outside the file's %d bytes" % (what, length, pos, self.size))

    def scalar(self, fmt: struct.Struct, pos: int, what: str) -> int:
        self.need(pos, fmt.size, what)
        return fmt.unpack_from(self.data, pos)[0]

    def spend(self, count: int, what: str) -> None:
        self.budget -= count
        if self.budget < 0:
            raise _Bad("%s: more than %d tables and vector elements, more than this reader accepts"
                       % (what, MAX_ITEMS))

    def model(self) -> ModelInfo:
        if self.size < 8:
            raise _Bad("%d bytes are too short for a flatbuffer" % self.size)
        ident = bytes(self.data[4:8])
        if ident != FILE_IDENTIFIER:
            raise _Bad("its file identifier is %r, not %r" % (ident, FILE_IDENTIFIER))
        root = _Table(self, self.scalar(_U32, 0, "the root offset"), "the model")
        version = root.scalar(0, _U32, 0)
        if version != SCHEMA_VERSION:
            raise _Bad("its schema version is %d; TFLite runtimes read version %d" % (version, SCHEMA_VERSION))
        description = root.string(3, "the description")
        codes = [self.opcode(t) for t in root.tables(1, "operator code")]
        buffers = self.buffers(root.tables(4, "buffer"))
        subgraphs = root.tables(2, "subgraph")
        if not subgraphs:
            raise _Bad("it has no subgraph")
        counts = [0] * len(codes)
        first: Tuple[List[TensorSig], List[TensorSig]] = ([], [])
        for index, subgraph in enumerate(subgraphs):
            io = self.subgraph(subgraph, index, codes, counts, max(buffers, 1))
            if index == 0:
                first = io
        for entry in root.tables(6, "metadata"):
            entry.string(0, "a metadata name")
            if entry.scalar(1, _U32, 0) >= max(buffers, 1):
                raise _Bad("metadata names buffer %d of %d" % (entry.scalar(1, _U32, 0), buffers))
        root.vector(5, 4, "metadata_buffer")
        for signature in root.tables(7, "signature def"):
            self.signature(signature, len(subgraphs))
        ops = [OpCode(name, version, custom, code, counts[i]) for i, (name, version, custom, code)
               in enumerate(codes)]
        return ModelInfo(version, description, len(subgraphs), ops, first[0], first[1])

    def opcode(self, table: _Table) -> Tuple[str, int, bool, int]:
        deprecated = table.scalar(0, _I8, 0)
        code = max(deprecated, table.scalar(3, _I32, 0))  # how the runtimes read it (GetBuiltinCode)
        version = table.scalar(2, _I32, 1)
        if code == CUSTOM:
            name = table.string(1, table.what + "'s custom name")
            if not name:
                raise _Bad("%s is a custom op without a name" % table.what)
            return name, version, True, code
        if code < 0:
            raise _Bad("%s has the builtin code %d" % (table.what, code))
        return (BUILTIN_OPS[code] if code < len(BUILTIN_OPS) else "BUILTIN_%d" % code), version, False, code

    def buffers(self, tables: "List[_Table]") -> int:
        for table in tables:
            table.vector(0, 1, table.what + "'s data")
            offset, size = table.scalar(1, _U64, 0), table.scalar(2, _U64, 0)
            if offset > 1 and offset + size > self.size:  # data kept after the flatbuffer (models over 2 GB)
                raise _Bad("%s's data (%d bytes at byte %d) lies outside the file's %d bytes"
                           % (table.what, size, offset, self.size))
        return len(tables)

    def subgraph(self, subgraph: _Table, index: int, codes: List[Tuple[str, int, bool, int]],
                 counts: List[int], buffers: int) -> Tuple[List[TensorSig], List[TensorSig]]:
        where = "subgraph %d" % index
        tensors = subgraph.tables(0, where + " tensor")
        for tensor in tensors:
            self.tensor(tensor, buffers)
        subgraph.string(4, where + "'s name")
        io = []
        for slot, kind in ((1, "input"), (2, "output")):
            positions = subgraph.ints(slot, "%s's %ss" % (where, kind)) or []
            for position in positions:
                if not 0 <= position < len(tensors):
                    raise _Bad("%s names tensor %d as an %s; it has %d tensors" % (where, position, kind,
                                                                                    len(tensors)))
            io.append([self.signature_of(tensors[p], p) for p in positions] if index == 0 else [])
        for op in subgraph.tables(3, where + " operator"):
            code = op.scalar(0, _U32, 0)
            if code >= len(codes):
                raise _Bad("%s uses operator code %d of %d" % (op.what, code, len(codes)))
            counts[code] += 1
            for slot, kind in ((1, "inputs"), (2, "outputs"), (8, "intermediates")):
                for position in op.ints(slot, "%s's %s" % (op.what, kind)) or []:
                    if not -1 <= position < len(tensors):
                        raise _Bad("%s's %s name tensor %d; %s has %d tensors"
                                   % (op.what, kind, position, where, len(tensors)))
            for slot in (4, 12):  # builtin_options, builtin_options_2
                op.table(slot, op.what + "'s options")
            op.vector(5, 1, op.what + "'s custom options")
            op.vector(7, 1, op.what + "'s mutating inputs")
            offset, size = op.scalar(9, _U64, 0), op.scalar(10, _U64, 0)
            if offset > 1 and offset + size > self.size:
                raise _Bad("%s's custom options (%d bytes at byte %d) lie outside the file" % (op.what, size, offset))
        return io[0], io[1]

    def tensor(self, tensor: _Table, buffers: int) -> None:
        tensor.vector(0, 4, tensor.what + "'s shape")
        tensor.vector(7, 4, tensor.what + "'s shape signature")
        tensor.string(3, tensor.what + "'s name")
        if tensor.scalar(2, _U32, 0) >= buffers:
            raise _Bad("%s names buffer %d of %d" % (tensor.what, tensor.scalar(2, _U32, 0), buffers))
        quantization = tensor.table(4, tensor.what + "'s quantization")
        if quantization is not None:
            for slot, size in ((0, 4), (1, 4), (2, 4), (3, 8)):
                quantization.vector(slot, size, quantization.what)
        tensor.table(6, tensor.what + "'s sparsity")

    def signature_of(self, tensor: _Table, index: int) -> TensorSig:
        code = tensor.scalar(1, _I8, 0)
        dtype = TENSOR_TYPES[code] if 0 <= code < len(TENSOR_TYPES) else "type%d" % code
        shape = tensor.ints(0, tensor.what + "'s shape") or []
        signature = tensor.ints(7, tensor.what + "'s shape signature")
        scale, zero_point = 0.0, 0
        quantization = tensor.table(4, tensor.what + "'s quantization")
        if quantization is not None:
            scales = quantization.ints(2, quantization.what, "f") or []
            zero_points = quantization.ints(3, quantization.what, "q", 8) or []
            if len(scales) == 1:  # per-tensor: what get_input_details() reports as "quantization"
                scale = float(scales[0])
                zero_point = int(zero_points[0]) if len(zero_points) == 1 else 0
        return TensorSig(index, tensor.string(3, tensor.what + "'s name") or "", dtype, shape,
                         list(shape) if signature is None else signature, scale, zero_point)

    def signature(self, table: _Table, subgraphs: int) -> None:
        table.string(2, table.what + "'s key")
        if table.scalar(4, _U32, 0) >= subgraphs:
            raise _Bad("%s names subgraph %d of %d" % (table.what, table.scalar(4, _U32, 0), subgraphs))
        for slot in (0, 1):
            for entry in table.tables(slot, table.what + " tensor map"):
                entry.string(0, entry.what + "'s name")
