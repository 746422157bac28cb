"""Any .tflite through `plan` (issue 13), in both environments: latency-only plans with generated inputs,
multi-input/-output models, int8/uint8/int/bool/float16 inputs, dynamic dimensions and ``input_shapes``, custom
ops refused by name before anything loads, string inputs refused, hostile flatbuffers refused by the agent's own
reader (device_agent/flatbuffer.py) before an interpreter sees them, and that reader against the interpreters.

The models are tests/support/tflite_zoo.py's (``zoo``) and the agent tests' variants (``variants_dir``).
"""

from __future__ import annotations

import hashlib
import json
import random
import struct
import subprocess
from pathlib import Path
from typing import Any, Dict, List

import numpy as np
import pytest

from support.agent_harness import REPO_ROOT, agent_env, run_agent
from support.tflite_zoo import MODELS

FAST = {"warmup": 1, "runs": 4}
SEED = 5
MEDIAPIPE_MESSAGE = ("custom op `Convolution2DTransposeBias` (MediaPipe): not a LiteRT builtin; register it or use a "
                     "runtime that has it")


def _latency_plan(cells: List[Dict[str, Any]], **top: Any) -> Dict[str, Any]:
    plan = {"plan_version": 1, "seed": SEED, "rounds": {"min": 2, "max": 2, "target_ci": 1.0, "budget_s": 120},
            "cells": [dict(FAST, **c) for c in cells]}
    plan.update(top)
    return plan


def _zoo_cell(zoo: Path, cell_id: str, model: str, **extra: Any) -> Dict[str, Any]:
    return dict({"id": cell_id, "model": str(zoo / (model + ".tflite"))}, **extra)


def _cells(doc: Dict[str, Any]) -> Dict[str, Dict[str, Any]]:
    return {c["id"]: c for c in doc["cells"]}


def _generated_seed(plan_seed: int, model_sha256: str) -> int:
    """docs/agent.md's rule, written out independently of the agent."""
    return int.from_bytes(hashlib.sha256(("%d:%s" % (plan_seed, model_sha256)).encode()).digest()[:4], "little")


def _assert_measured(cell: Dict[str, Any], visits: int = 2) -> None:
    assert cell["status"] == "ok", cell.get("error")
    pooled = cell["timing"]["pooled"]
    assert 0 < pooled["min_us"] <= pooled["p50_us"] <= pooled["p99_us"] <= pooled["max_us"] < 1e6
    assert cell["timing"]["visits"] == visits and cell["timing"]["invokes"] == visits * FAST["runs"]
    assert cell["init_ms"] > 0 and cell["rss_peak_kib"] > 0
    assert cell["model"]["num_inputs"] == len(cell["model"]["inputs"]) == len(cell["inputs"]["tensors"])
    assert cell["model"]["num_outputs"] == len(cell["model"]["outputs"]) >= 1


def _generated(cell: Dict[str, Any]) -> List[Any]:
    """The cell's generated inputs as (name, dtype, shape, values); checks the rest of ``inputs``."""
    inputs = cell["inputs"]
    assert inputs["source"] == "generated" and cell["accuracy"] is None
    assert inputs["seed"] == _generated_seed(SEED, cell["model"]["sha256"]) and inputs["samples"] == 8
    assert [t["shape"] for t in inputs["tensors"]] == [t["shape"] for t in cell["model"]["inputs"]]
    return [(t["name"], t["dtype"], t["shape"], t["values"]) for t in inputs["tensors"]]


def test_a_latency_only_plan_measures_files_from_anywhere(env, zoo, tmp_path, plans):
    names = ("multi_io", "int8_input", "uint8_input", "dynamic", "mixed_dtypes", "custom_op", "mediapipe_op",
             "string_input")
    res = plans.run(env, _latency_plan([_zoo_cell(zoo, name, name) for name in names]), tmp_path)
    doc = res.doc
    assert res.returncode == 0 and doc["status"] == "ok", res.describe()
    assert doc["plan"]["eval"] is None and doc["plan"]["cells"][0]["input_shapes"] == {}
    by_id = _cells(doc)
    measured = ["multi_io", "int8_input", "uint8_input", "dynamic", "mixed_dtypes"]
    for name in measured:
        _assert_measured(by_id[name])
    assert sorted({cell for _, cell in doc["visits"]}) == sorted(measured)

    multi = by_id["multi_io"]
    assert _generated(multi) == [("serving_default_features:0", "float32", [1, 5], "uniform [0, 1)"),
                                 ("serving_default_image:0", "float32", [1, 8, 8, 3], "uniform [0, 1)")]
    assert [t["shape"] for t in multi["model"]["outputs"]] == [[1, 4], [1, 2]]
    assert multi["model"]["input"] == multi["model"]["inputs"][0]
    assert {op["name"] for op in multi["model"]["ops"]} == {"CONV_2D", "RESHAPE", "FULLY_CONNECTED", "CONCATENATION"}
    assert _generated(by_id["int8_input"])[0][1:] == ("int8", [1, 10, 10, 3], "uniform integers [-128, 127]")
    assert by_id["int8_input"]["model"]["input"]["quantization"]["scale"] > 0
    assert _generated(by_id["uint8_input"])[0][1:] == ("uint8", [1, 10, 10, 3], "uniform integers [0, 255]")
    dynamic = by_id["dynamic"]
    assert _generated(dynamic) == [("frames", "float32", [1, 1, 8, 3], "uniform [0, 1)")]  # -1 -> 1
    assert dynamic["model"]["input"]["shape_signature"] == [-1, -1, 8, 3]
    assert _generated(by_id["mixed_dtypes"]) == [
        ("ids", "int32", [1, 6], "uniform integers [0, 64)"), ("ids64", "int64", [1, 6], "uniform integers [0, 64)"),
        ("mask", "bool", [1, 6], "random bool"), ("half", "float16", [1, 6], "uniform [0, 1)")]

    custom = by_id["custom_op"]
    assert custom["status"] == "error" and custom["error"]["kind"] == "unsupported-op", custom
    assert custom["error"]["message"].startswith("custom op `Erfc`: not a LiteRT builtin")
    assert "newer" not in custom["error"]["hint"]
    assert {"name": "Erfc", "version": 1, "custom": True, "count": 1} in custom["model"]["ops"]
    assert "init_ms" not in custom and "timing" not in custom  # refused before anything loaded
    mediapipe = by_id["mediapipe_op"]
    assert mediapipe["error"]["kind"] == "unsupported-op" and mediapipe["error"]["message"] == MEDIAPIPE_MESSAGE
    string = by_id["string_input"]
    assert string["error"]["kind"] == "unsupported-input", string
    assert string["error"]["message"] == "string inputs are not supported: input `words` is a string tensor"


def test_input_shapes_resize_dynamic_and_batch_dimensions(env, zoo, tmp_path, plans):
    cells = [_zoo_cell(zoo, "default", "dynamic"),
             _zoo_cell(zoo, "shaped", "dynamic", input_shapes={"frames": [3, 16, 8, 3]}),
             _zoo_cell(zoo, "batch2", "multi_io", input_shapes={"serving_default_image:0": [2, 8, 8, 3],
                                                                "serving_default_features:0": [2, 5]}),
             _zoo_cell(zoo, "no-such-input", "dynamic", input_shapes={"nope": [1, 2, 8, 3]}),
             _zoo_cell(zoo, "wrong-rank", "dynamic", input_shapes={"frames": [1, 8, 3]}),
             _zoo_cell(zoo, "wrong-channels", "dynamic", input_shapes={"frames": [1, 4, 8, 5]})]
    res = plans.run(env, _latency_plan(cells), tmp_path)
    assert res.returncode == 0, res.describe()
    by_id = _cells(res.doc)
    for cell_id in ("default", "shaped", "batch2"):
        _assert_measured(by_id[cell_id])
    assert by_id["default"]["model"]["input"]["shape"] == [1, 1, 8, 3]
    shaped = by_id["shaped"]
    assert shaped["model"]["input"]["shape"] == [3, 16, 8, 3] and shaped["model"]["output"]["shape"] == [3, 4]
    assert _generated(shaped) == [("frames", "float32", [3, 16, 8, 3], "uniform [0, 1)")]
    assert [t["shape"] for t in by_id["batch2"]["model"]["outputs"]] == [[2, 4], [2, 2]]
    missing = by_id["no-such-input"]["error"]
    assert missing["kind"] == "bad-arguments" and "`nope`" in missing["message"] and "`frames`" in missing["message"]
    rank = by_id["wrong-rank"]["error"]
    assert rank["kind"] == "bad-arguments" and "3 dimensions" in rank["message"], rank
    channels = by_id["wrong-channels"]["error"]
    assert channels["kind"] == "model-load" and "cannot run the model at the input shapes frames [1, 4, 8, 5]" \
        in channels["message"], channels
    assert "shape_signature" in channels["hint"]


@pytest.mark.parametrize("change, words", [
    (lambda p: p["cells"][0].update(input_shapes=[1, 2]), "cells[0].input_shapes must be an object"),
    (lambda p: p["cells"][0].update(input_shapes={"x": [0, 3]}), 'cells[0].input_shapes["x"] must be a list of'),
    (lambda p: p["cells"][0].update(input_shapes={"x": "1,3"}), 'cells[0].input_shapes["x"] must be a list of'),
    (lambda p: p["cells"][0].update(input_shapes={"x": [True]}), 'cells[0].input_shapes["x"] must be a list of'),
    (lambda p: p["cells"][0].update(input_shapes={"x": [1] * 17}), 'cells[0].input_shapes["x"] must be a list of'),
    (lambda p: p.update(max_eval=10), "max_eval needs an eval file"),
    (lambda p: p.update(eval=""), "eval must be a non-empty path"),
])
def test_a_malformed_latency_plan_is_bad_arguments(host_env, zoo, tmp_path, plans, change, words):
    plan = _latency_plan([_zoo_cell(zoo, "a", "dynamic")])
    change(plan)
    res = plans.run(host_env, plan, tmp_path, check_plan=False)
    assert res.returncode == 2 and res.doc["error"]["kind"] == "bad-arguments", res.describe()
    assert words in res.doc["error"]["message"], res.doc["error"]
    with pytest.raises(AssertionError):  # the plan schema refuses it too
        plans.validate(plan, plans.PLAN_SCHEMA)


def _reference(model: Path, arrays: Dict[str, np.ndarray]) -> List[int]:
    """Host ai_edge_litert predictions at batch 1: argmax of the first output."""
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_path=str(model))
    interpreter.allocate_tensors()
    first = interpreter.get_output_details()[0]["index"]
    preds = []
    for i in range(len(next(iter(arrays.values())))):
        for detail in interpreter.get_input_details():
            interpreter.set_tensor(detail["index"], arrays[detail["name"]][i:i + 1])
        interpreter.invoke()
        preds.append(int(np.argmax(interpreter.get_tensor(first).reshape(-1))))
    return preds


def test_a_multi_input_eval_file_has_one_array_per_input_name(env, zoo, tmp_path, plans):
    rng = np.random.default_rng(3)
    arrays = {"serving_default_image:0": rng.random((9, 8, 8, 3), dtype=np.float32),
              "serving_default_features:0": rng.random((9, 5), dtype=np.float32)}
    np.savez(tmp_path / "eval.npz", y=rng.integers(0, 4, 9), **arrays)
    np.savez(tmp_path / "partial.npz", y=np.zeros(9, np.int64), x=arrays["serving_default_image:0"])
    batch2 = {name: [2] + list(a.shape[1:]) for name, a in arrays.items()}
    cells = [_zoo_cell(zoo, "multi", "multi_io"), _zoo_cell(zoo, "multi-b2", "multi_io", input_shapes=batch2)]
    res = plans.run(env, _latency_plan(cells, eval=str(tmp_path / "eval.npz")), tmp_path)
    assert res.returncode == 0 and res.doc["status"] == "ok", res.describe()
    expected = _reference(zoo / "multi_io.tflite", arrays)
    for cell_id, batch, feeds in (("multi", 1, 9), ("multi-b2", 2, 4)):
        cell = _cells(res.doc)[cell_id]
        _assert_measured(cell)
        assert cell["inputs"] == {"source": "eval", "seed": None, "samples": feeds, "tensors": [
            {"name": "serving_default_features:0", "dtype": "float32", "shape": [batch, 5],
             "values": "eval 'serving_default_features:0'"},
            {"name": "serving_default_image:0", "dtype": "float32", "shape": [batch, 8, 8, 3],
             "values": "eval 'serving_default_image:0'"}]}
        accuracy = cell["accuracy"]
        assert accuracy["num_samples"] == 9 and accuracy["batch_used"] == batch  # the last chunk padded
        assert accuracy["predictions"] == expected
    partial = plans.run(env, _latency_plan(cells[:1], eval=str(tmp_path / "partial.npz")), tmp_path)
    error = partial.doc["cells"][0]["error"]
    assert partial.returncode == 5 and error["kind"] == "data-mismatch", partial.describe()
    assert "no array for the inputs `serving_default_features:0`, `serving_default_image:0`" in error["message"]


def test_a_cell_whose_invoke_fails_leaves_the_rounds(env, zoo, tmp_path, plans):
    """small_vocab's GATHER refuses generated ids beyond its 10 rows: that cell says so, the others measure."""
    cells = [_zoo_cell(zoo, "a", "int8_input"), _zoo_cell(zoo, "vocab", "small_vocab"),
             _zoo_cell(zoo, "b", "multi_io")]
    res = plans.run(env, _latency_plan(cells, rounds={"min": 3, "max": 3, "target_ci": 1.0}), tmp_path)
    assert res.returncode == 0 and res.doc["status"] == "ok", res.describe()
    by_id = _cells(res.doc)
    vocab = by_id["vocab"]
    assert vocab["error"]["kind"] == "unsupported-input" and "invoke failed" in vocab["error"]["message"], vocab
    assert "eval file" in vocab["error"]["hint"] and "timing" not in vocab
    visits = res.doc["visits"]
    assert {cell for _, cell in visits} == {"a", "b"} and res.doc["rounds_done"] == 3
    for cell_id in ("a", "b"):
        _assert_measured(by_id[cell_id], visits=3)
        places = [(r["round"], r["position"]) for r in by_id[cell_id]["rounds"]]
        assert places == [(r, [c for rr, c in visits if rr == r].index(cell_id)) for r in range(3)]


LOAD_ERRORS = r"""
import json, sys
from device_agent import opcheck, runtime
rt = runtime.select_runtime("auto")
out = {}
for path in sys.argv[1:]:
    try:
        interpreter = rt.Interpreter(model_path=path)
        interpreter.allocate_tensors()
        out[path] = None
    except Exception as exc:
        error = opcheck.load_error(rt.name, rt.version, str(exc))
        out[path] = [error.kind, error.message, error.hint]
print(json.dumps(out))
"""


def test_a_runtimes_refusal_names_the_op_and_the_right_next_step(env, zoo, variants_dir):
    """What a runtime says when it cannot load a model, as the agent words it (opcheck.load_error, the one place):
    a custom op (what a delegate's cell meets) is unsupported-op by name; only an op version gets "newer"."""
    paths = [zoo / "custom_op.tflite", zoo / "mediapipe_op.tflite", variants_dir / "dynamic.tflite"]
    proc = subprocess.run([str(env.python), "-c", LOAD_ERRORS, *map(str, paths)], cwd=str(REPO_ROOT),
                          capture_output=True, text=True, env=agent_env(), timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    said = json.loads(proc.stdout.strip().splitlines()[-1])
    kind, message, hint = said[str(paths[0])]
    assert kind == "unsupported-op" and message.startswith("custom op `Erfc`: not a LiteRT builtin")
    assert "Encountered unresolved custom op: Erfc" in message and "newer" not in hint  # the runtime's words too
    kind, message, hint = said[str(paths[1])]
    assert kind == "unsupported-op" and message.startswith(MEDIAPIPE_MESSAGE) and "MediaPipe" in hint
    if env.name == "pi":  # TF 2.21's FULLY_CONNECTED version 12 is newer than tflite-runtime 2.14
        kind, message, hint = said[str(paths[2])]
        assert kind == "model-load" and "version '12'" in message
        assert hint.startswith("the model uses FULLY_CONNECTED version 12, newer than tflite_runtime 2.14.0 has")
        assert "install a newer runtime" in hint
    else:
        assert said[str(paths[2])] is None


def test_run_reports_a_custom_op_as_model_load(env, zoo, tmp_path):
    """`run` keeps its documents' kinds (schema_version 1): the custom op is named, the kind is model-load."""
    np.savez(tmp_path / "eval.npz", x=np.zeros((2, 1, 8), np.float32), y=np.zeros(2, np.int64))
    res = run_agent(env.python, ["run", zoo / "mediapipe_op.tflite", "--eval", tmp_path / "eval.npz"])
    assert res.returncode == 4 and res.doc["error"]["kind"] == "model-load", res.describe()
    assert res.doc["error"]["message"].startswith(MEDIAPIPE_MESSAGE)


def _field_position(blob: bytes, slot: int) -> int:
    """Where the root table's field ``slot`` is (flatbuffer arithmetic, independent of the agent's reader)."""
    root = struct.unpack_from("<I", blob, 0)[0]
    vtable = root - struct.unpack_from("<i", blob, root)[0]
    return root + struct.unpack_from("<H", blob, vtable + 4 + 2 * slot)[0]


def _patched(blob: bytes, position: int, fmt: str, value: int) -> bytes:
    data = bytearray(blob)
    struct.pack_into(fmt, data, position, value)
    return bytes(data)


def _hostile_files(good: bytes) -> Dict[str, bytes]:
    rng = random.Random(13)
    return {
        "truncated-third": good[:len(good) // 3],
        "truncated-half": good[:len(good) // 2],
        "truncated-tail": good[:-64],
        "garbage": b"\x1c\x00\x00\x00TFL3" + bytes(rng.randrange(256) for _ in range(4000)),
        "huge-root": _patched(good, 0, "<I", 0xFFFFFFF0),
        "huge-subgraphs": _patched(good, _field_position(good, 2), "<I", 0x7FFFFFF0),  # Model.subgraphs
        "huge-vtable": _patched(good, struct.unpack_from("<I", good, 0)[0], "<i", -0x7FFFFFFF),
        "wrong-identifier": good[:4] + b"TFL2" + good[8:],
    }


def test_hostile_flatbuffers_are_refused_before_any_interpreter(env, variants_dir, zoo, tmp_path, plans):
    """Each one is the agent's reader's model-load error (not a crash the pre-flight child took), and the
    other cells of the plan measure; tflite-runtime 2.14 segfaults on some truncated files."""
    hostile = _hostile_files((variants_dir / "float32.tflite").read_bytes())
    cells = [_zoo_cell(zoo, "good", "int8_input")]
    for name, blob in hostile.items():
        (tmp_path / (name + ".tflite")).write_bytes(blob)
        cells.append({"id": name, "model": str(tmp_path / (name + ".tflite"))})
    res = plans.run(env, _latency_plan(cells), tmp_path)
    assert res.returncode == 0 and res.doc["status"] == "ok", res.describe()
    by_id = _cells(res.doc)
    _assert_measured(by_id["good"])
    for name in hostile:
        error = by_id[name]["error"]
        assert error["kind"] == "model-load", (name, error)
        assert "is not a valid .tflite file" in error["message"] and "crashed" not in error["message"], (name, error)
        assert "copy it again" in error["hint"]
    assert "lies outside the file" in by_id["truncated-third"]["error"]["message"]
    assert "not b'TFL3'" in by_id["wrong-identifier"]["error"]["message"]


def test_the_reader_raises_only_model_load_on_any_damage(variants_dir, zoo):
    """Every truncation and a few thousand random byte edits: a model-load error or a reading, nothing else."""
    from device_agent import flatbuffer
    from device_agent.protocol import AgentError

    rng = random.Random(7)
    for path in [variants_dir / "int8.tflite", zoo / "multi_io.tflite", zoo / "custom_op.tflite"]:
        good = path.read_bytes()
        damaged = [good[:n] for n in range(0, len(good), 7)]
        for _ in range(1500):
            data = bytearray(good)
            for _ in range(rng.randint(1, 4)):
                at = rng.randrange(len(data) - 4)
                struct.pack_into("<I", data, at, rng.choice((0xFFFFFFFF, 0x7FFFFFFF, len(data), rng.getrandbits(32))))
            damaged.append(bytes(data))
        refused = 0
        for blob in damaged:
            try:
                flatbuffer.parse(blob)
            except AgentError as exc:
                assert exc.kind == "model-load"
                refused += 1
        assert refused > len(damaged) // 2


READ_BOTH = r"""
import json, sys
import numpy as np
from device_agent import flatbuffer, runtime
rt = runtime.select_runtime("auto")
STRINGS = {"bytes": "string", "bytes_": "string", "object": "string", "str": "string"}
out = {}
for path in sys.argv[1:]:
    info = flatbuffer.describe(flatbuffer.read_model(path))
    try:
        it = rt.Interpreter(model_path=path,
                            experimental_op_resolver_type=rt.OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES)
    except Exception as exc:
        out[path] = {"reader": info, "interpreter": None}
        continue
    def tensors(details):
        return [{"name": d["name"], "dtype": STRINGS.get(np.dtype(d["dtype"]).name, np.dtype(d["dtype"]).name),
                 "shape": [int(v) for v in d["shape"]], "shape_signature": [int(v) for v in d["shape_signature"]],
                 "quantization": {"scale": float(d["quantization"][0]), "zero_point": int(d["quantization"][1])}}
                for d in details]
    out[path] = {"reader": info, "interpreter": {
        "ops": sorted({op["op_name"] for op in it._get_ops_details()}),
        "inputs": tensors(it.get_input_details()), "outputs": tensors(it.get_output_details())}}
print(json.dumps(out))
"""


def test_the_readers_ops_and_signature_are_the_interpreters(env, zoo, variants_dir):
    paths = [zoo / (name + ".tflite") for name in MODELS] + sorted(variants_dir.glob("*.tflite"))
    proc = subprocess.run([str(env.python), "-c", READ_BOTH, *map(str, paths)], cwd=str(REPO_ROOT),
                          capture_output=True, text=True, env=agent_env(), timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    found = json.loads(proc.stdout.strip().splitlines()[-1])
    compared = 0
    for path in paths:
        reader, interpreter = found[str(path)]["reader"], found[str(path)]["interpreter"]
        if interpreter is None:  # only TF 2.21's FULLY_CONNECTED v12 on tflite-runtime 2.14
            assert env.name == "pi" and path.name == "dynamic.tflite" and path.parent == variants_dir
            continue
        assert sorted({op["name"] for op in reader["ops"]}) == interpreter["ops"], path.name
        assert reader["inputs"] == interpreter["inputs"] and reader["outputs"] == interpreter["outputs"], path.name
        compared += 1
    assert compared >= len(paths) - 1
    custom = found[str(zoo / "custom_op.tflite")]["reader"]["ops"]
    assert [op for op in custom if op["custom"]] == [{"name": "Erfc", "version": 1, "custom": True, "count": 1}]
    fc = [op for op in found[str(variants_dir / "dynamic.tflite")]["reader"]["ops"] if op["name"] == "FULLY_CONNECTED"]
    assert fc == [{"name": "FULLY_CONNECTED", "version": 12, "custom": False, "count": 2}]


def test_the_builtin_op_names_are_litert_schemas():
    from ai_edge_litert import schema_py_generated as schema

    from device_agent import flatbuffer

    codes = {value: name for name, value in vars(schema.BuiltinOperator).items() if not name.startswith("_")}
    assert flatbuffer.BUILTIN_OPS == tuple(codes[i] for i in range(len(codes))), \
        "regenerate flatbuffer.BUILTIN_OPS from ai_edge_litert.schema_py_generated.BuiltinOperator"
    types = {value: name.lower() for name, value in vars(schema.TensorType).items() if not name.startswith("_")}
    assert flatbuffer.TENSOR_TYPES == tuple(types[i] for i in range(len(types)))


def test_the_host_can_import_the_reader_without_numpy(host_env):
    """The host reads files it imports with the same module (issue 13): stdlib only."""
    code = ("import sys; from device_agent import flatbuffer, opcheck; "
            "assert 'numpy' not in sys.modules, 'numpy imported'; print(len(flatbuffer.BUILTIN_OPS))")
    proc = subprocess.run([str(host_env.python), "-c", code], cwd=str(REPO_ROOT), capture_output=True, text=True,
                          env=agent_env(), timeout=60)
    assert proc.returncode == 0 and int(proc.stdout) > 200, proc.stderr
