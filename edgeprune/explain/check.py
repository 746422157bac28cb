"""The "why not faster" check of one .tflite file: what XNNPACK takes, and whether its sparse path can apply.

A flatbuffer read and a few tables, no interpreter and no TensorFlow: it runs on any host in milliseconds, on
files that are still untrusted (every read is bounds-checked by ``graph``). The result is a plain
``Explanation`` that ``to_dict``/``from_dict`` carry through JSON (``check_version`` 1), for the manifest of
``optimize``, imported files in ``bench`` and the ``explain`` command.
"""
from __future__ import annotations

import mmap
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple, Union

from ..errors import ManifestError, ModelError
from ..text import clean
from . import sparse
from .graph import Graph, read_graphs
from .xnnpack import delegated

CHECK_VERSION = 1


@dataclass
class Explanation:
    """Per file: the ops XNNPACK takes and leaves, and the sparse-path rules with the first one broken."""

    label: str
    ops: int                                          # operators in all subgraphs
    xnnpack_ops: Dict[str, int]                       # op name -> how many the delegate takes
    fallback: List[Dict[str, Any]]                    # {"op", "count", "why"}: left to the CPU kernels
    float_model: bool
    stored_sparse: bool                               # some weights stored sparse (DENSIFY)
    one_by_one_zero_fraction: Optional[float]         # zeros in all 1x1 CONV_2D weights; None: none or unreadable
    sparse_eligible: bool
    sparse_reason: str                                # the first rule broken; "" when eligible
    rules: List[Dict[str, Any]] = field(default_factory=list)  # {"name", "title", "ok", "detail"}

    @property
    def taken(self) -> int:
        return sum(self.xnnpack_ops.values())

    def summary(self) -> str:
        """One line of plain text (names from the file made safe), e.g. for a table cell or a log."""
        path = ("yes" + (f" ({self.one_by_one_zero_fraction:.0%} of 1x1 weights zero)"
                         if self.one_by_one_zero_fraction is not None else "")
                if self.sparse_eligible else f"no — {self.sparse_reason}")
        return clean(f"XNNPACK takes {self.taken} of {self.ops} ops; sparse path: {path}", 600)

    def to_dict(self) -> Dict[str, Any]:
        return {"check_version": CHECK_VERSION, **asdict(self)}

    @classmethod
    def from_dict(cls, data: Dict[str, Any]) -> "Explanation":
        """The inverse of ``to_dict``; ``ManifestError`` for another check_version or missing fields."""
        if not isinstance(data, dict) or data.get("check_version") != CHECK_VERSION:
            version = data.get("check_version") if isinstance(data, dict) else None
            raise ManifestError(f"an explanation with check_version {version!r}; this edgeprune reads "
                                f"{CHECK_VERSION}")
        names = [f.name for f in fields(cls)]
        missing = [name for name in names if name not in data]
        if missing:
            raise ManifestError(f"an explanation lacks {', '.join(missing)}")
        return cls(**{name: data[name] for name in names})


def explain_file(path: Union[str, Path]) -> Explanation:
    """Check the .tflite at ``path``; ``ModelError`` (one line) when it cannot be read or is not a sound model."""
    label = Path(path).name
    try:
        with open(path, "rb") as fh:
            try:
                data: Any = mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ)
            except (ValueError, OSError):  # empty, or cannot be mapped: read it
                data = fh.read()
    except OSError as exc:
        raise ModelError(f"cannot read {path}: {exc.strerror or exc}") from None
    try:
        return explain_bytes(data, label)
    finally:
        if isinstance(data, mmap.mmap):
            try:
                data.close()
            except BufferError:  # numpy views of it live on in an error's traceback: the last reference closes it
                pass


def explain_bytes(data: Any, label: str) -> Explanation:
    """Check a .tflite held in memory (bytes, bytearray or mmap); ``label`` names it in messages."""
    graphs = read_graphs(data, label)
    if not graphs:
        raise ModelError(f"{label} has no subgraph")
    try:
        counted = _delegation(graphs)
        main = graphs[0]
        rules = sparse.check(main, counted[2])
        zeros, total, readable = sparse.one_by_one(main, main.ops)
    except (IndexError, KeyError, ValueError, ZeroDivisionError) as exc:  # indices the agent's reader let through
        raise ModelError(f"{label} is not a model this check can read: {type(exc).__name__}: {exc}") from None
    taken, left = counted[0], counted[1]
    reason = sparse.first_broken(rules)
    return Explanation(
        label=label, ops=sum(len(g.ops) for g in graphs),
        xnnpack_ops=dict(sorted(taken.items(), key=lambda kv: (-kv[1], kv[0]))),
        fallback=[{"op": name, "count": count, "why": why}
                  for (name, why), count in sorted(left.items(), key=lambda kv: (-kv[1], kv[0]))],
        float_model=bool(rules[0]["ok"]), stored_sparse=bool(sparse.sparse_stored(main)),
        one_by_one_zero_fraction=(zeros / total) if total and readable else None,
        sparse_eligible=not reason, sparse_reason=reason, rules=rules)


def _delegation(graphs: List[Graph]) -> Tuple[Dict[str, int], Dict[Tuple[str, str], int], Dict[int, Optional[str]]]:
    """(op name -> taken, (op name, why) -> left, the first subgraph's verdicts), over every subgraph."""
    taken: Dict[str, int] = {}
    left: Dict[Tuple[str, str], int] = {}
    first: Dict[int, Optional[str]] = {}
    for graph in graphs:
        verdicts = delegated(graph)
        first = verdicts if graph.index == 0 else first
        for op in graph.ops:
            why = verdicts.get(op.index)
            if why is None:
                taken[op.name] = taken.get(op.name, 0) + 1
            else:
                left[(op.name, why)] = left.get((op.name, why), 0) + 1
    return taken, left, first

