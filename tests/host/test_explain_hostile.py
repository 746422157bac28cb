"""The check reads untrusted files: anything malformed is one ModelError (one ``Error:`` line from the command),
never a traceback, and names from the file never reach the terminal as escape codes or markup.
"""
from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any, Callable

import pytest

from edgeprune.errors import ModelError
from edgeprune.explain import explain_bytes, explain_file

from .test_explain_graphs import graph, rewrite

HOSTILE = "\x1b]0;owned\x07\x1b[31mEVIL[/]\x1b[2J[bold red]x[/bold red]\u202e:ok:\\"


def outcome(blob: bytes) -> str:
    """"ok" or "error" for a blob the check may refuse; any other exception fails the test."""
    try:
        explain_bytes(blob, "fuzzed")
    except ModelError as exc:
        assert "\n" not in str(exc)
        return "error"
    return "ok"


def test_truncated_files_are_one_error() -> None:
    blob = graph("eligible")
    results = [outcome(blob[:cut]) for cut in range(0, len(blob), max(len(blob) // 120, 1))]
    assert results.count("error") == len(results), results


@pytest.mark.parametrize("seed", range(3))
def test_random_bytes_are_one_error(seed: int) -> None:
    rng = random.Random(seed)
    noise = bytearray(rng.randbytes(4096))
    assert outcome(bytes(noise)) == "error"
    noise[4:8] = b"TFL3"  # the identifier right, the rest noise
    assert outcome(bytes(noise)) == "error"


def test_flipped_bytes_never_escape_as_other_exceptions() -> None:
    blob = graph("eligible")
    rng = random.Random(16)
    seen = set()
    for _ in range(400):
        damaged = bytearray(blob)
        for _ in range(rng.randint(1, 4)):
            damaged[rng.randrange(len(damaged))] = rng.randrange(256)
        seen.add(outcome(bytes(damaged)))
    assert "error" in seen  # the flips reached the structure, not only the weights


def _sparse_tensor(parsed: Any) -> Any:
    return next(t for t in parsed.subgraphs[0].tensors if t.sparsity is not None)


def _csr(sparsity: Any) -> Any:
    return next(d for d in sparsity.dimMetadata if d.format == 1)  # the compressed (SPARSE_CSR) dimension


def _set(target: Callable[[Any], Any], field: str, value: Callable[[Any], Any]) -> Callable[[Any], None]:
    return lambda s: setattr(target(s), field, value(getattr(target(s), field)))


@pytest.mark.parametrize("damage, words", [
    (_set(lambda s: _csr(s).arraySegments, "values", lambda v: [0, 5, 3] + list(v[3:])),
     "inconsistent segments or indices"),
    (_set(lambda s: _csr(s).arrayIndices, "values", lambda v: [255] * len(v)), "inconsistent segments"),
    (_set(lambda s: _csr(s).arrayIndices, "values", lambda v: list(v[:-1])), "inconsistent segments"),
    (_set(lambda s: s, "traversalOrder", lambda v: [0, 0] + list(v[2:])), "traversal order"),
    (_set(lambda s: s.dimMetadata[0], "denseSize", lambda v: 7), "dense dimension 0 has size 7"),
])
def test_lying_sparsity_parameters_are_refused(damage: Callable[[Any], None], words: str, tmp_path: Path) -> None:
    blob = rewrite(graph("eligible"), lambda parsed: damage(_sparse_tensor(parsed).sparsity))
    with pytest.raises(ModelError, match=words):
        explain_bytes(blob, "lying")
    path = tmp_path / "lying.tflite"  # read from a file: mapped, and still one ModelError
    path.write_bytes(blob)
    with pytest.raises(ModelError, match=words):
        explain_file(path)


def hostile_file(tmp_path: Path) -> Path:
    from support.tflite_zoo import zoo_dir

    def rename(parsed: Any) -> None:
        parsed.operatorCodes[[c.customCode for c in parsed.operatorCodes].index(b"Erfc")].customCode = \
            HOSTILE.encode() + b"A" * 5000

    path = tmp_path / "hostile.tflite"
    path.write_bytes(rewrite((zoo_dir() / "custom_op.tflite").read_bytes(), rename))
    return path


def test_hostile_names_are_escaped_in_the_terminal(tmp_path: Path, cli: Any) -> None:
    proc = cli("explain", str(hostile_file(tmp_path)))
    assert proc.returncode == 0, proc.stderr
    assert "\x1b" not in proc.stdout and "\u202e" not in proc.stdout and "\x07" not in proc.stdout
    line = next(line for line in proc.stdout.splitlines() if "falls back" in line)
    assert "EVIL[/][bold red]x[/bold red]:ok:" in line  # shown literally: not markup, not an emoji
    assert len(line) < 600 and "chars)" in line  # the 5000-character name is cut and says so


def test_hostile_names_stay_data_in_json(tmp_path: Path, cli: Any) -> None:
    proc = cli("explain", "--json", str(hostile_file(tmp_path)))
    assert proc.returncode == 0 and "\x1b" not in proc.stdout
    (document,) = json.loads(proc.stdout)
    assert document["fallback"][0]["op"].startswith(HOSTILE)  # kept as the file says, capped at 256
    assert len(document["fallback"][0]["op"]) == 256


@pytest.mark.parametrize("content", [b"", b"not a model", None])
def test_the_command_turns_bad_files_into_one_error_line(tmp_path: Path, cli: Any, assert_one_line_error: Any,
                                                         content: Any) -> None:
    path = tmp_path / "bad.tflite"
    if content is None:
        path.write_bytes(graph("eligible")[:2000])
    elif content:
        path.write_bytes(content)
    else:
        path.write_bytes(b"")
    line = assert_one_line_error(cli("explain", str(path)))
    assert "bad.tflite" in line


def test_a_missing_file_and_a_good_one(tmp_path: Path, cli: Any) -> None:
    good = tmp_path / "good.tflite"
    good.write_bytes(graph("dense_stored"))
    proc = cli("explain", str(tmp_path / "missing.tflite"), str(good))
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    assert proc.stderr.strip().startswith("Error: cannot read") and "missing.tflite" in proc.stderr
    assert "weights stored dense" in proc.stdout  # the good file is still explained
