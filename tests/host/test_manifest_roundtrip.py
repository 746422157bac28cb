"""The typed manifest: ``Manifest.from_dict(doc).to_dict() == doc``, for a real run and for the optional parts.

A real digits run's manifest comes back key for key (and in the same key order, so the file text is the same);
hand-made and generated documents cover what that run does not have: failed variants with their ``error``, a
user's model, optional keys left out, keys a newer producer might add.
"""
from __future__ import annotations

import copy
import json
import re
from typing import Any, Dict

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from edgeprune.errors import ManifestError
from edgeprune.optimize import variants
from edgeprune.results import manifest as manifest_io
from edgeprune.results.manifest import Manifest, Tensor, VariantEntry


def _file_text(document: Dict[str, Any]) -> str:
    return json.dumps(document, indent=2, allow_nan=False) + "\n"


@pytest.mark.slow
def test_digits_run_manifest_round_trips(digits_run):
    folder, manifest = digits_run
    typed = Manifest.from_dict(manifest)
    assert typed.to_dict() == manifest
    assert _file_text(typed.to_dict()) == (folder / manifest_io.FILENAME).read_text()  # same keys, same order
    loaded = manifest_io.load(folder)
    assert loaded == typed and loaded.to_dict() == manifest
    assert all(not entry.extra for entry in typed.variants) and not typed.extra  # every key has its field
    assert [entry.name for entry in typed.variants] == list(variants.defaults())  # the run asked for no opt-in row
    assert typed.failed_variants() == []
    for name in ("baseline-int8", "pruned-int8"):
        int8 = typed.variant(name)
        assert isinstance(int8.input, Tensor) and int8.input.dtype == "int8" and int8.input.scale > 0
    assert typed.pruning.schedule.recovery_steps == manifest["pruning"]["schedule"]["recovery_steps"]
    assert typed.dataset.eval_sha256 == manifest["dataset"]["eval_sha256"]


def _tensor(dtype: str = "float32") -> Dict[str, Any]:
    return {"dtype": dtype, "shape": [1, 8, 8, 1], "scale": 0.0, "zero_point": 0}


def _ok(name: str) -> Dict[str, Any]:
    return {"name": name, "status": "ok", "description": variants.get(name).description, "file": f"{name}.tflite",
            "sha256": "a" * 64, "size_bytes": 1000, "gzip_bytes": 900, "sparsity": 0.5, "accuracy": 0.9,
            "predictions_digest": "0123456789abcdef", "input": _tensor(), "output": _tensor()}


def _failed(name: str, error: str = "pruned-int8: conversion failed: float16 input") -> Dict[str, Any]:
    return {"name": name, "status": "error", "description": variants.get(name).description, "error": error}


def hand_made() -> Dict[str, Any]:
    """A user's model whose int8 variant failed to convert, as edgeprune writes it."""
    return {
        "schema_version": 1,
        "producer": {"name": "edgeprune", "version": "0.1.0"},
        "created": "2024-05-01T12:00:00+00:00",
        "config": {"out": "runs/x", "model": "/models/mine.keras", "data": "/data/mine.npz", "seed": 0,
                   "variants": list(variants.names()), "train": {"epochs": 30}, "prune": {"epochs": 2}},
        "versions": {key: "1" for key in ("python", "tensorflow", "tf_keras", "tensorflow_model_optimization",
                                          "ai_edge_litert", "numpy")},
        "dataset": {"name": "mine", "train_samples": 400, "test_samples": 150, "input_shape": [8, 8, 1],
                    "num_classes": 10, "eval_file": "eval.npz", "eval_sha256": "b" * 64},
        "baseline": {"source": "/models/mine.keras", "params": 4810, "keras_accuracy": 0.9},
        "pruning": {
            "schedule": {"initial_sparsity": 0.5, "final_sparsity": 0.8, "begin_step": 0, "end_step": 12,
                         "frequency": 2, "steps_per_epoch": 13, "total_steps": 26, "pruning_steps": 6,
                         "recovery_steps": 14},
            "sparsity": 0.8,
            "layers": [{"layer": "hidden", "weights": 4096, "zeros": 3277, "sparsity": 3277 / 4096}],
            "notes": ["layer 'norm' (LayerNormalization) is not prunable by tfmot; left unpruned"],
        },
        "variants": [_failed(name) if name == "pruned-int8" else _ok(name) for name in variants.names()],
        "predictions_file": "predictions.npz",
        "timings": {"total": 12.5},
    }


def test_hand_made_manifest_with_a_failed_variant_round_trips():
    document = hand_made()
    manifest_io.validate(document)
    typed = Manifest.from_dict(copy.deepcopy(document))
    assert typed.to_dict() == document
    assert _file_text(typed.to_dict()) == _file_text(document)
    failed = typed.variant("pruned-int8")
    assert failed.status == "error" and not failed.ok and failed.error and failed.file is None
    assert "file" not in failed.to_dict() and "input" not in failed.to_dict()
    assert typed.failed_variants() == ["pruned-int8"]
    assert [entry.name for entry in typed.ok_variants()] == [n for n in variants.names() if n != "pruned-int8"]
    assert typed.baseline.source == "/models/mine.keras"


def test_to_dict_does_not_share_lists_with_the_source():
    document = hand_made()
    typed = Manifest.from_dict(document)
    typed.to_dict()["variants"].clear()
    typed.to_dict()["pruning"]["notes"].append("changed")
    document["config"]["variants"].clear()
    assert typed.to_dict() == hand_made()


def test_built_in_code_like_the_pipeline_writes_no_empty_keys():
    """An entry built with only the fields of its status writes only those keys (no nulls)."""
    entry = VariantEntry(name="pruned-int8", status="error", description="d", error="why")
    assert entry.to_dict() == {"name": "pruned-int8", "status": "error", "description": "d", "error": "why"}


def test_save_and_load(tmp_path):
    typed = Manifest.from_dict(hand_made())
    path = manifest_io.save(typed, tmp_path)
    assert path.read_text() == _file_text(hand_made())
    assert manifest_io.load(tmp_path) == typed
    assert manifest_io.read(tmp_path) == hand_made()  # the dict API reads the same file


@pytest.mark.parametrize(
    "change, words",
    [
        (lambda d: d.update(schema_version=2), "schema version"),
        (lambda d: d["variants"][0].update(name="pruned-int9"), "pruned-int9"),
        (lambda d: d["variants"][0].update(name="Not A Name"), "variants/0/name"),
        (lambda d: d["variants"][1].pop("sha256"), "sha256"),
        (lambda d: d["variants"][variants.names().index("pruned-int8")].pop("error"), "error"),
    ],
    ids=["version", "unknown-variant", "bad-name", "ok-without-sha256", "error-without-reason"],
)
def test_from_dict_validates_first(change, words):
    document = hand_made()
    change(document)
    with pytest.raises(ManifestError, match=words):
        Manifest.from_dict(document)


def test_variant_names_follow_the_table_not_a_schema_list():
    """The schema has a name pattern; the table says which names exist. Every row fits the pattern, and a name
    that fits it but has no row is refused on read."""
    pattern = manifest_io.load_schema()["properties"]["variants"]["items"]["properties"]["name"]["pattern"]
    assert pattern == variants.NAME_PATTERN
    assert all(re.match(pattern, name) for name in variants.names())
    document = hand_made()
    document["variants"][0]["name"] = "pruned-int4"
    with pytest.raises(ManifestError, match="pruned-int4"):
        manifest_io.validate(document)


# --- Generated documents: optional keys present or absent, unknown keys at any level -----------------------------

_json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-10, 10) | st.text(max_size=5),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4), inner, max_size=3),
    max_leaves=6,
)
_extra_keys = st.dictionaries(st.text(min_size=1, max_size=8).map(lambda key: "x-" + key), _json_values, max_size=2)

#: Where optional keys may be missing, and where unknown keys may be added.
OPTIONAL = [(), ("predictions_file",), ("timings",), ("baseline", "keras_accuracy"),
            ("pruning", "schedule", "steps_per_epoch"), ("pruning", "schedule", "pruning_steps")]
OBJECTS = [(), ("producer",), ("dataset",), ("baseline",), ("pruning",), ("pruning", "schedule"),
           ("pruning", "layers", 0), ("variants", 0), ("variants", 1, "input"), ("variants", 2)]


def _at(document: Dict[str, Any], path: tuple) -> Any:
    for key in path:
        document = document[key]
    return document


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    statuses=st.lists(st.sampled_from(["ok", "error"]), min_size=len(variants.names()),
                      max_size=len(variants.names())),
    dropped=st.sets(st.sampled_from(OPTIONAL[1:])),
    extras=st.dictionaries(st.sampled_from(OBJECTS), _extra_keys, max_size=4),
    error=st.text(min_size=1, max_size=40),
)
def test_generated_manifests_round_trip(statuses, dropped, extras, error):
    document = hand_made()
    document["variants"] = [_ok(name) if status == "ok" else _failed(name, error)
                            for name, status in zip(variants.names(), statuses)]
    for path in dropped:
        del _at(document, path[:-1])[path[-1]]
    for path, keys in extras.items():
        if path and path[0] == "variants" and len(path) == 3 and document["variants"][path[1]]["status"] != "ok":
            continue
        _at(document, path).update(keys)
    manifest_io.validate(document)
    typed = Manifest.from_dict(copy.deepcopy(document))
    assert typed.to_dict() == document
    assert Manifest.from_dict(typed.to_dict()) == typed
