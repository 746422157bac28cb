"""The "why not faster" check (issue 16) on graphs built to break one sparse-path rule each, its API and command.

Each graph of ``test_explain_graphs.GRAPHS`` is a tiny MobileNet-like model changed in one way; the check must
name the rule that change breaks, as the first broken rule, with every rule before it holding.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Dict, List

import pytest
from click.testing import CliRunner

from edgeprune.cli import main
from edgeprune.errors import ManifestError
from edgeprune.explain import CHECK_VERSION, Explanation, explain_bytes, explain_file

from .test_explain_graphs import graph, model, one_by_one_zeros, rewrite

#: graph -> (the first rule it breaks, words its reason must contain); None: eligible.
BREAKS = {
    "dense_stored": ("stored-sparse", "weights stored dense: convert with EXPERIMENTAL_SPARSITY"),
    "stem_1ch": ("stem", "first op is not a 3x3 stride-2 conv on 3 channels: it is CONV_2D 3x3 stride 2 on 1 channel"),
    "stem_5x5": ("stem", "first op is not a 3x3 stride-2 conv on 3 channels: it is CONV_2D 5x5 stride 2 on 3 channels"),
    "stem_same": ("stem-padding", "SAME padding with stride 2"),
    "stem_mnv2": ("stem-padding", "SAME padding with stride 2"),
    "stem_asym": ("stem-padding", "pads top 1, bottom 0, left 1, right 0"),
    "maxpool_head": ("ends-with-mean", "does not end with a spatial MEAN (global average pooling): after the "
                                       "convolutions comes MAX_POOL_2D"),
    "flatten_head": ("ends-with-mean", "does not end with a spatial MEAN (global average pooling): after the "
                                       "convolutions comes RESHAPE"),
    "mid_conv3x3": ("chw-ops", "cannot run in CHW layout: a 3x3 stride-1 convolution"),
    "zeros40": ("zeros", "only 40% of 1x1 weights are zero, needs more than 2/3"),
    "int8": ("float", "int8 model: the sparse path is float-only"),
    "dynamic_range": ("float", "int8 weights (dynamic-range quantization"),
    "float16": ("stored-sparse", "weights stored dense"),
}


def rule(explanation: Explanation, name: str) -> Dict[str, Any]:
    return next(r for r in explanation.rules if r["name"] == name)


@pytest.mark.parametrize("name", sorted(BREAKS))
def test_each_graph_breaks_its_rule_first(name: str) -> None:
    broken, words = BREAKS[name]
    explanation = explain_bytes(graph(name), name)
    assert not explanation.sparse_eligible
    assert words in explanation.sparse_reason, explanation.sparse_reason
    names = [r["name"] for r in explanation.rules]
    assert rule(explanation, broken)["ok"] is False
    assert all(r["ok"] is True for r in explanation.rules[:names.index(broken)]), explanation.rules
    assert explanation.summary().endswith(explanation.sparse_reason)


def test_the_eligible_graph_passes_every_rule() -> None:
    explanation = explain_bytes(graph("eligible"), "eligible.tflite")
    assert explanation.sparse_eligible and explanation.sparse_reason == ""
    assert [r["ok"] for r in explanation.rules] == [True] * len(explanation.rules)
    assert explanation.float_model and explanation.stored_sparse and explanation.fallback == []
    assert explanation.taken == explanation.ops and explanation.xnnpack_ops["DENSIFY"] >= 2
    assert "sparse path: yes (90% of 1x1 weights zero)" in explanation.summary()


def test_zeros_are_counted_exactly_from_sparse_and_dense_storage() -> None:
    """DENSIFY'd weights (dim_metadata decoded) and dense ones give the Keras kernels' exact zero count."""
    for name in ("eligible", "zeros40"):
        zeros, total = one_by_one_zeros(model(name))
        for stored in (name, "dense_stored") if name == "eligible" else (name,):
            fraction = explain_bytes(graph(stored), stored).one_by_one_zero_fraction
            assert fraction == pytest.approx(zeros / total, abs=1e-12), stored


def test_a_dense_head_is_eligible_with_a_note_for_newer_xnnpack() -> None:
    explanation = explain_bytes(graph("dense_head"), "dense_head")
    assert explanation.sparse_eligible
    assert "also count the FULLY_CONNECTED weights after the MEAN" in rule(explanation, "zeros")["detail"]
    assert "prune that layer too" in rule(explanation, "zeros")["detail"]
    assert "prune that layer too" not in rule(explain_bytes(graph("eligible"), "e"), "zeros")["detail"]


def test_a_model_with_buffers_after_the_flatbuffer_reads_the_same(tmp_path: Path) -> None:
    """Models over 2 GB keep buffers outside the flatbuffer (Buffer.offset/size): the same bytes, the same check."""
    blob = graph("eligible")
    moved: List[bytes] = []

    def move(parsed: Any) -> None:
        for buffer in parsed.buffers:
            if buffer.data is not None and len(buffer.data):
                moved.append(bytes(bytearray(buffer.data)))
                buffer.data, buffer.offset, buffer.size = None, 1, len(moved[-1])  # placeholders, fixed below

    flat = rewrite(blob, move)
    tail, offsets = bytearray(), []
    base = (len(flat) + 15) // 16 * 16
    for chunk in moved:
        offsets.append(base + len(tail))
        tail += chunk + b"\0" * (-len(chunk) % 16)
    index = iter(range(len(moved)))

    def place(parsed: Any) -> None:
        for buffer in parsed.buffers:
            if buffer.offset == 1:
                i = next(index)
                buffer.offset, buffer.size = offsets[i], len(moved[i])

    placed = rewrite(flat, place)
    assert len(placed) <= base, "the rewritten flatbuffer grew past the data"
    outside = placed + b"\0" * (base - len(placed)) + bytes(tail)
    assert moved and len(outside) > len(placed)
    original, relocated = explain_bytes(blob, "in"), explain_bytes(outside, "out")
    assert relocated.one_by_one_zero_fraction == original.one_by_one_zero_fraction
    assert relocated.rules == original.rules and relocated.sparse_eligible


def test_explanation_round_trips_and_refuses_other_versions() -> None:
    explanation = explain_bytes(graph("int8_softmax"), "int8_softmax")
    document = json.loads(json.dumps(explanation.to_dict()))
    assert document["check_version"] == CHECK_VERSION == 1
    assert Explanation.from_dict(document) == explanation
    with pytest.raises(ManifestError, match="check_version 2"):
        Explanation.from_dict({**document, "check_version": 2})
    with pytest.raises(ManifestError, match="lacks rules"):
        Explanation.from_dict({k: v for k, v in document.items() if k != "rules"})
    assert explanation.fallback == [{"op": "SOFTMAX", "count": 1,
                                     "why": "int8 values: XNNPACK runs SOFTMAX on float only"}]


def test_explain_file_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / "dense.tflite"
    path.write_bytes(graph("dense_stored"))
    explanation = explain_file(path)
    assert explanation.label == "dense.tflite"
    assert explanation.to_dict() == {**explain_bytes(graph("dense_stored"), "dense.tflite").to_dict()}


def test_cli_explains_files_and_prints_json(tmp_path: Path) -> None:
    paths = []
    for name in ("eligible", "zeros40"):
        paths.append(tmp_path / f"{name}.tflite")
        paths[-1].write_bytes(graph(name))
    result = CliRunner().invoke(main, ["explain", *map(str, paths)])
    assert result.exit_code == 0, result.output
    assert "eligible.tflite" in result.output and "sparse path: yes" in result.output
    assert "only 40% of 1x1 weights are zero" in result.output
    result = CliRunner().invoke(main, ["explain", "--json", *map(str, paths)])
    assert result.exit_code == 0
    documents = json.loads(result.output)
    assert [d["label"] for d in documents] == ["eligible.tflite", "zeros40.tflite"]
    assert [d["sparse_eligible"] for d in documents] == [True, False]


def test_cli_needs_no_tensorflow_and_is_fast(tmp_path: Path) -> None:
    """The command is a flatbuffer read: TensorFlow must not even be imported, and it answers in seconds."""
    path = tmp_path / "eligible.tflite"
    path.write_bytes(graph("eligible"))
    probe = ("import sys\nfrom edgeprune.cli import main\n"
             "try:\n    main(['explain', sys.argv[1]])\nexcept SystemExit as exc:\n    code = exc.code\n"
             "bad = [m for m in ('tensorflow', 'tf_keras', 'ai_edge_litert') if m in sys.modules]\n"
             "print('IMPORTED', bad)\nsys.exit(code)\n")
    started = time.perf_counter()
    proc = subprocess.run([sys.executable, "-c", probe, str(path)], capture_output=True, text=True, timeout=120,
                          env={**os.environ, "COLUMNS": "200"})
    elapsed = time.perf_counter() - started
    assert proc.returncode == 0, proc.stderr
    assert "IMPORTED []" in proc.stdout and "sparse path: yes" in proc.stdout
    assert elapsed < 10, elapsed


def test_option_tables_match_the_litert_schema() -> None:
    """The builtin-options union members the reader expects per op are the schema's (ai-edge-litert's copy)."""
    from ai_edge_litert import schema_py_generated as schema

    from edgeprune.explain.graph import _OPTIONS

    members = {"CONV_2D": "Conv2DOptions", "DEPTHWISE_CONV_2D": "DepthwiseConv2DOptions",
               "AVERAGE_POOL_2D": "Pool2DOptions", "MAX_POOL_2D": "Pool2DOptions", "L2_POOL_2D": "Pool2DOptions",
               "FULLY_CONNECTED": "FullyConnectedOptions", "SOFTMAX": "SoftmaxOptions",
               "CONCATENATION": "ConcatenationOptions", "ADD": "AddOptions", "MUL": "MulOptions",
               "SUB": "SubOptions", "DIV": "DivOptions", "LEAKY_RELU": "LeakyReluOptions"}
    for op, (union, _) in _OPTIONS.items():
        assert union == getattr(schema.BuiltinOptions, members.get(op, "ReducerOptions")), op
