"""What sparsity bought on each device, joined with the why-not-faster check's reason when it bought nothing.

A pruned variant's speed-up over the baseline mixes what its zeros did with what else differs. Sparsity's own
effect is the pruned variant against the same model without the zeros' effect, with the same converter settings
(optimize records which one as the entry's ``sparsity_control``, ``optimize.variants.sparsity_control``):
  - ``pruned-<tag>-float32`` (stored sparse) against ``pruned-<tag>-dense-float32`` when that control was built:
    the same zeros, only the storage differs, so the ratio is XNNPACK's sparse path and nothing else;
  - otherwise a pruned row against the baseline row with its quantization (``pruned-int8`` against
    ``baseline-int8``, ``pruned-pqat-int8`` too): the zeros plus what the fine-tune changed;
  - for imported files, a file with zeros in its 1x1 weights or stored sparse against the reference file.
Each pair is judged exactly as every other speed-up (``verdict.speedup_verdict``: paired by round within one plan,
against the device's A/A band). A gain is "sparsity bought X%" (p50 lower by X%, with its interval); anything else
is "no measurable gain (noise ±y%)" followed by the reason the check gave for the variant's file (``explain`` in
its manifest entry), or, when the check found the path open, what is known about the device (x86 CPUs with AVX
never take XNNPACK's sparse path; docs/explain.md).
"""
from __future__ import annotations

import json
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

from . import stats
from .verdict import speedup_verdict
from ..devices.cells import CONFIG_MARK, is_aa, split_cell
from ..text import clean

Key = Tuple[str, str]

#: An imported file whose 1x1 weights are at least this share zero counts as a sparse variant.
IMPORTED_ZEROS = 0.5
#: Machines whose XNNPACK never takes the sparse path when the CPU has AVX (XNNPACK's xnn_is_chw_compatible_config).
_X86 = ("x86_64", "amd64", "i686", "i386")


def entries(variants: Sequence[Mapping[str, Any]]) -> Dict[str, Dict[str, Any]]:
    """Each stored variant's manifest entry (where ``explain`` and ``sparsity_control`` are), by name."""
    found = {}
    for variant in variants:
        try:
            entry = json.loads(variant.get("manifest_json") or "{}")
        except ValueError:
            continue
        if isinstance(entry, dict):
            found[str(variant["name"])] = entry
    return found


def counterpart(name: str, present: Sequence[str], reference: str, imported: bool,
                stored: Mapping[str, Mapping[str, Any]]) -> Optional[str]:
    """The variant ``name``'s sparsity is judged against, among ``present`` (None: it is not a sparse variant or has
    no counterpart): the ``sparsity_control`` optimize recorded (it knows its variants table), or for an imported
    file with zeros, the reference file."""
    entry = stored.get(name) or {}
    if imported:
        check = entry.get("explain") if isinstance(entry.get("explain"), dict) else {}
        zeros = check.get("one_by_one_zero_fraction")
        sparse = check.get("stored_sparse") or (isinstance(zeros, (int, float)) and zeros >= IMPORTED_ZEROS)
        return reference if sparse and name != reference and reference in present else None
    control = entry.get("sparsity_control")
    return control if isinstance(control, str) and control in present else None


def _reason(explained: Optional[Mapping[str, Any]], machine: Optional[str]) -> str:
    if not explained:
        return "no check recorded for this file"
    if not explained.get("sparse_eligible"):
        return f"XNNPACK's sparse path cannot apply: {explained.get('sparse_reason') or 'unknown'}"
    if machine in _X86:
        return ("the file can take XNNPACK's sparse path, but this device is x86-64, where XNNPACK never takes it "
                "on CPUs with AVX (docs/explain.md)")
    return "the file can take XNNPACK's sparse path, but this device's runtime did not run faster with it"


def _bought(verdict: stats.Verdict) -> str:
    ratio = verdict.ratio
    assert ratio is not None
    mid = ratio.mid if ratio.mid is not None else (ratio.low + ratio.high) / 2
    return (f"sparsity bought {(1 - 1 / mid) * 100:.0f}% of p50 ({(1 - 1 / ratio.low) * 100:.0f}-"
            f"{(1 - 1 / ratio.high) * 100:.0f}%, {stats.ratio_text(mid, ratio.low, ratio.high, 'faster')})")


def device_lines(device: str, cells: Sequence[str], results: Mapping[Key, Mapping[str, Any]],
                 band: Optional[stats.Interval], why: str, reference: str, imported: bool,
                 stored: Mapping[str, Mapping[str, Any]]) -> List[str]:
    """One line per sparse variant (per configuration, in a matrix bench) measured on ``device``."""
    ok = {cell for cell in cells if not is_aa(cell)
          and (results.get((device, cell)) or {}).get("status") == "ok"}
    names = sorted({split_cell(cell)[0] for cell in ok}, key=list(dict.fromkeys(split_cell(c)[0] for c in cells)).index)
    lines = []
    for name in names:
        other = counterpart(name, names, reference, imported, stored)
        if other is None:
            continue
        for cell in [c for c in cells if c in ok and split_cell(c)[0] == name]:
            config = split_cell(cell)[1]
            base = f"{other}{CONFIG_MARK}{config}" if config else other
            if base not in ok:
                continue
            result = results[(device, cell)]
            verdict = speedup_verdict(results[(device, base)], result, band, why)
            head = f"Sparsity ({clean(cell)} vs {clean(base)}): "
            if verdict.kind == stats.FASTER:
                lines.append(head + _bought(verdict) + ".")
                continue
            noise = stats.noise_fraction(band)
            said = f"noise {stats.percent(noise)}" if noise is not None else (why or "no noise floor")
            what = ("slower: " + verdict.phrase if verdict.kind == stats.SLOWER
                    else f"no measurable gain ({said})")
            check = (stored.get(name) or {}).get("explain")
            reason = _reason(check if isinstance(check, dict) else None, result.get("machine"))
            lines.append(head + f"{what}: {clean(reason)}.")
    return lines
