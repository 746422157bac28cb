"""The pruning structures ``--structure`` chooses from: one table, looked up by name.

Where the zeros go decides what they can buy. Unstructured zeros and 4x1 blocks in dense kernels make the file
smaller after gzip but leave latency where it was: TFLite's kernels (and XNNPACK's default NHWC path) multiply the
zeros like any other weight. ``2:4`` (two of every four consecutive weights zero, tfmot's ``sparsity_m_by_n``) is
the pattern sparse tensor cores accelerate; a CPU has no such kernel, so on a Pi it buys size, not speed.
``xnnpack-sparse`` is the one structure a CPU can run faster: tfmot's ``PruneForLatencyOnXNNPack`` prunes only the
1x1 convolutions of a subgraph XNNPACK can run in CHW layout, and the float variants are converted with
``EXPERIMENTAL_SPARSITY`` so the weights are stored sparse, which is what tells XNNPACK to try its sparse path.

Adding a structure is a row here: ``prune`` reads the policy, block and m-by-n settings, ``convert`` the storage,
``variants`` the tag that names its variants (``pruned-<tag>-float32``; the default ``block`` keeps the plain
names every earlier run folder has).
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Dict, Optional, Tuple

from ..errors import ConfigError

DEFAULT = "block"


@dataclass(frozen=True)
class Structure:
    """One row: how a structure prunes, stores and names its variants."""

    name: str            # the --structure value
    tag: str             # inserted in the pruned variants' names; "" keeps the plain names
    description: str
    #: Whether --block-size shapes its zeros (in 2-D kernels); the others prune weight by weight (1x1).
    uses_block: bool = False
    #: tfmot's sparsity_m_by_n: (zeros, group) along the input channels; the sparsity is then fixed at zeros/group.
    m_by_n: Optional[Tuple[int, int]] = None
    #: Prune only what tfmot's PruneForLatencyOnXNNPack allows (1x1 Conv2D in a CHW-runnable subgraph).
    xnnpack_policy: bool = False
    #: Float variants converted with tf.lite.Optimize.EXPERIMENTAL_SPARSITY (weights stored sparse + DENSIFY).
    sparse_storage: bool = False
    #: What the user should know before expecting speed from it (a note in the manifest and the terminal).
    note: str = ""

    @property
    def fixed_sparsity(self) -> Optional[float]:
        """The sparsity the pattern itself fixes (2:4 is 50%), overriding --final-sparsity; None when it does not."""
        return self.m_by_n[0] / self.m_by_n[1] if self.m_by_n else None


TABLE: Tuple[Structure, ...] = (
    Structure("unstructured", "unstructured", "any weight may be zeroed (1x1 blocks)",
              note="unstructured zeros make the file smaller after gzip; the CPU kernels still multiply them, so "
                   "expect the dense model's latency"),
    Structure(DEFAULT, "", "zeros in blocks of --block-size (4x1 by default) in 2-D kernels, single weights elsewhere",
              uses_block=True,
              note="block zeros make the file smaller after gzip; the CPU kernels still multiply them, so expect the "
                   "dense model's latency"),
    Structure("2:4", "2by4", "two of every four consecutive weights zero (tfmot's sparsity_m_by_n=(2, 4)): 50% "
                             "sparsity by construction", m_by_n=(2, 4),
              note="2:4 sparsity is what sparse tensor cores (GPUs) accelerate; a CPU has no 2:4 kernel, so on a Pi "
                   "it buys size, not speed; its sparsity is 50% whatever --final-sparsity says"),
    Structure("xnnpack-sparse", "xnnpack-sparse", "tfmot's PruneForLatencyOnXNNPack: only 1x1 Conv2D kernels of a "
                                                  "subgraph XNNPACK can run in CHW layout, float variants stored "
                                                  "sparse (EXPERIMENTAL_SPARSITY)", xnnpack_policy=True,
              sparse_storage=True,
              note="XNNPACK's sparse path runs float models only, when about 2/3 or more of the 1x1 weights are "
                   "zero; run `edgeprune explain` on the .tflite to see whether it applies"),
)

REGISTRY: Dict[str, Structure] = {row.name: row for row in TABLE}
#: The tags that may appear in a pruned variant's name (``pruned-<tag>-...``), longest first for matching.
TAGS: Tuple[str, ...] = tuple(sorted((row.tag for row in TABLE if row.tag), key=len, reverse=True))


def get(name: str) -> Structure:
    try:
        return REGISTRY[name]
    except KeyError:
        raise ConfigError(f"unknown pruning structure {name!r}; choose from {', '.join(REGISTRY)}") from None


def parse(text: str) -> str:
    """The --structure value, validated (``2x4``/``2by4`` accepted for ``2:4``)."""
    name = text.strip().lower()
    name = {"2x4": "2:4", "2by4": "2:4", "xnnpack": "xnnpack-sparse"}.get(name, name)
    return get(name).name


def help_text() -> str:
    return "; ".join(f"{row.name}: {row.description}" for row in TABLE)


def tagged(name: str, structure: str) -> str:
    """A variant table row's name as built under ``structure``: ``pruned-float32`` -> ``pruned-2by4-float32``.

    Only rows whose name starts with ``pruned-`` carry the tag: baselines and controls are not pruned."""
    tag = get(structure).tag
    if not tag or not name.startswith("pruned-"):
        return name
    return f"pruned-{tag}-{name[len('pruned-'):]}"


def untagged(name: str) -> Tuple[str, Optional[str]]:
    """``pruned-2by4-float32`` -> (``pruned-float32``, ``2:4``); a plain name -> (name, None)."""
    for tag in TAGS:
        match = re.match(rf"^pruned-{re.escape(tag)}-(.+)$", name)
        if match:
            return f"pruned-{match.group(1)}", next(row.name for row in TABLE if row.tag == tag)
    return name, None
