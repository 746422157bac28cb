"""The sweep's grid: final sparsity x structure x block size x quantization, as points with stable keys.

A **point** is one row of the Pareto table: one pruned variant (``s0.8-block-4x1-int8``). Points that differ only
in their quantization are variants of one pruned model, so they share one optimize **run** (``s0.8-block-4x1``):
the pruning fine-tune is paid once per run, and its quantized variants are measured in one plan on each device
(so their speed-ups share one A/A band). The grid collapses what a structure ignores: ``--block-size`` shapes only
the ``block`` structure's zeros, and ``2:4`` fixes its sparsity at 50% whatever ``--final-sparsity`` says, so
neither multiplies points that would be the same model.

Keys are made from the values alone (never from positions in the grid), so a point keeps its key when the grid
around it changes, and a resumed sweep finds its points again.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

from ..errors import ConfigError
from ..optimize import structures
from ..optimize import variants as variant_table
from ..optimize.config import format_block_size, parse_block_size

#: The prefix of the variant table rows a point can be (``pruned-int8`` is quantization ``int8``).
PRUNED = "pruned-"
#: The sources of the rows that are pruned models (issue 16 adds ``pqat``, the prune-preserving QAT model).
PRUNED_SOURCES = ("pruned", "pqat")


def quantizations() -> Tuple[str, ...]:
    """Every ``--quant`` value: the pruned rows of the variants table without their ``pruned-`` prefix."""
    return tuple(row.name[len(PRUNED):] for row in variant_table.REGISTRY.values()
                 if row.source in PRUNED_SOURCES and row.name.startswith(PRUNED))


def variant_row(quant: str) -> str:
    """The variants table row a quantization is built from (``int8`` -> ``pruned-int8``)."""
    return PRUNED + quant


def _split(text: str, flag: str) -> List[str]:
    values = list(dict.fromkeys(part.strip() for part in str(text).split(",") if part.strip()))
    if not values:
        raise ConfigError(f"{flag} needs at least one value")
    return values


def _sparsity(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise ConfigError(f"--final-sparsity takes numbers such as 0.5,0.8, got {text!r}") from None
    if not 0.0 < value < 1.0:
        raise ConfigError(f"--final-sparsity values must be in (0, 1), got {text}")
    return value


def _quant(text: str) -> str:
    name = text.lower()
    if name not in quantizations():
        raise ConfigError(f"unknown --quant {text!r}; choose from {', '.join(quantizations())}")
    return name


def _parsed(text: str, flag: str, parse: Callable[[str], Any]) -> Tuple[Any, ...]:
    return tuple(dict.fromkeys(parse(value) for value in _split(text, flag)))


@dataclass(frozen=True)
class Point:
    """One grid point: a pruned variant of one optimize run."""

    key: str
    run: str  # the key of the optimize run that builds it
    final_sparsity: float
    structure: str
    block_size: Optional[str]  # "4x1" under the block structure; None where the structure ignores it
    quant: str

    @property
    def row(self) -> str:
        """The variants table row it is (the built name carries the structure's tag: read it from the manifest)."""
        return variant_row(self.quant)


@dataclass(frozen=True)
class Run:
    """One optimize run: the pruning settings its points share, and their quantizations."""

    key: str
    final_sparsity: float
    structure: str
    block_size: Optional[str]
    quants: Tuple[str, ...]

    def prune_settings(self) -> Dict[str, Any]:
        """The PruneConfig fields this run sets (the block only where the structure uses one)."""
        settings: Dict[str, Any] = {"final_sparsity": self.final_sparsity, "structure": self.structure}
        if self.block_size is not None:
            settings["block_size"] = parse_block_size(self.block_size)
        return settings


def _number(value: float) -> str:
    return f"{value:g}"


def _structure_key(name: str) -> str:
    """The structure as a key part: its variant tag (``2by4``) or, for the untagged default, its name."""
    return structures.get(name).tag or name


def run_key(sparsity: float, structure: str, block: Optional[str]) -> str:
    return "-".join([f"s{_number(sparsity)}", _structure_key(structure)] + ([block] if block else []))


@dataclass(frozen=True)
class Grid:
    """The four dimensions as given (validated, duplicates dropped, in the order given)."""

    final_sparsity: Tuple[float, ...]
    structure: Tuple[str, ...]
    block_size: Tuple[str, ...]
    quant: Tuple[str, ...]

    def runs(self) -> List[Run]:
        """Every optimize run, in grid order; a structure's fixed sparsity and unused block collapse duplicates."""
        found: Dict[str, Run] = {}
        for structure in self.structure:
            row = structures.get(structure)
            blocks: Sequence[Optional[str]] = self.block_size if row.uses_block else (None,)
            sparsities = (row.fixed_sparsity,) if row.fixed_sparsity is not None else self.final_sparsity
            for sparsity in sparsities:
                for block in blocks:
                    key = run_key(sparsity, structure, block)
                    found.setdefault(key, Run(key, sparsity, structure, block, self.quant))
        return list(found.values())

    def points(self) -> List[Point]:
        return [Point(f"{run.key}-{quant}", run.key, run.final_sparsity, run.structure, run.block_size, quant)
                for run in self.runs() for quant in run.quants]

    def to_dict(self) -> Dict[str, Any]:
        return {key: list(value) for key, value in asdict(self).items()}

    @classmethod
    def from_dict(cls, data: Dict[str, Any]) -> "Grid":
        return parse_grid(",".join(map(str, data["final_sparsity"])), ",".join(data["structure"]),
                          ",".join(data["block_size"]), ",".join(data["quant"]))


def parse_grid(final_sparsity: str, structure: str, block_size: str, quant: str) -> Grid:
    """The grid from the command line's comma-separated values; ConfigError (exit 2) on the first bad one."""
    return Grid(
        final_sparsity=_parsed(final_sparsity, "--final-sparsity", _sparsity),
        structure=_parsed(structure, "--structure", structures.parse),
        block_size=_parsed(block_size, "--block-size", lambda text: format_block_size(parse_block_size(text))),
        quant=_parsed(quant, "--quant", _quant),
    )
