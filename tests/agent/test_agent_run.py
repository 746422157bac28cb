"""`run` on real .tflite variants in both environments."""

from __future__ import annotations

import hashlib
import re
import socket
from importlib import metadata
from pathlib import Path

import numpy as np
import pytest

from support.agent_harness import REPO_ROOT, VARIANTS, imported_modules, predictions_digest, run_agent, validate

FAST = ["--warmup", "3", "--runs", "30"]


def _expected_to_load(env_name: str, variant: str) -> bool:
    # TF 2.21's dynamic-range FULLY_CONNECTED is op version 12, which
    # tflite-runtime 2.14 does not have.
    return not (env_name == "pi" and variant == "dynamic")


@pytest.mark.parametrize("variant", VARIANTS)
def test_run_variant(env, variant, variants_dir, reference, labels):
    model = variants_dir / (variant + ".tflite")
    res = run_agent(env.python, ["run", model, "--eval", variants_dir / "eval.npz", *FAST])
    doc = res.doc
    validate(doc)
    assert doc["command"] == "run"
    assert doc["runtime"]["module"] == env.runtime, res.describe()
    assert doc["runtime"]["version"] == env.runtime_version
    assert doc["model"]["sha256"] == hashlib.sha256(model.read_bytes()).hexdigest()
    assert doc["model"]["size_bytes"] == model.stat().st_size

    if not _expected_to_load(env.name, variant):
        assert res.returncode == 4, res.describe()
        assert doc["status"] == "error"
        assert doc["error"]["kind"] == "model-load"
        assert "FULLY_CONNECTED" in doc["error"]["message"], doc["error"]
        assert "timing" not in doc and "accuracy" not in doc
        assert doc["device_after"]["loadavg"] is not None
        return

    assert res.returncode == 0 and doc["status"] == "ok", res.describe()
    assert "error" not in doc

    acc = doc["accuracy"]
    ref = reference[variant]
    ref_acc = float(np.mean(np.asarray(ref) == labels))
    assert acc["num_samples"] == len(labels)
    assert abs(acc["accuracy"] - ref_acc) <= 0.001, (acc["accuracy"], ref_acc)
    assert acc["correct"] == int(np.sum(np.asarray(acc["predictions"]) == labels))
    assert acc["predictions_digest"] == predictions_digest(acc["predictions"])
    assert acc["accuracy"] > 0.6, "test model should be far above chance (0.2)"
    if env.name == "host":  # same runtime as the oracle: identical predictions
        assert acc["predictions"] == ref
        assert acc["predictions_digest"] == predictions_digest(ref)

    t = doc["timing"]
    assert t["runs"] == 30 and t["warmup"] == 3
    assert 0 < t["min_us"] <= t["p50_us"] <= t["p90_us"] <= t["p99_us"] <= t["max_us"]
    assert t["min_us"] <= t["mean_us"] <= t["max_us"]
    assert t["init_ms"] > 0
    assert t["total_s"] * 1e6 >= t["mean_us"] * t["runs"]
    assert "samples_us" not in t

    m = doc["memory"]
    assert 0 < m["rss_before_load_kib"] <= m["rss_after_load_kib"] <= m["rss_peak_kib"]

    inp, out = doc["model"]["input"], doc["model"]["output"]
    assert inp["shape"] == [1, 12, 12, 3] and out["shape"] == [1, 5]
    if variant == "int8":
        assert inp["dtype"] == "int8" and out["dtype"] == "int8"
        assert inp["quantization"]["scale"] > 0
    else:
        assert inp["dtype"] == "float32" and out["dtype"] == "float32"


def test_device_facts(env, variants_dir):
    res = run_agent(env.python, ["run", variants_dir / "float32.tflite", "--eval",
                                 variants_dir / "eval.npz", *FAST])
    dev = res.doc["device"]
    assert dev["hostname"] == socket.gethostname()
    import os
    assert dev["cpu"]["cores"] == os.cpu_count()
    assert dev["cpu"]["model"]  # /proc/cpuinfo has one here
    assert dev["machine"]
    assert dev["python"]["version"].startswith("3.9." if env.name == "pi" else "3.11.")
    expected_numpy = _numpy_version(env)
    assert dev["numpy"] == expected_numpy
    pretty = _os_pretty_name()
    if pretty:
        assert dev["os"]["pretty_name"] == pretty
    assert len(dev["loadavg"]) == 3 and len(res.doc["device_after"]["loadavg"]) == 3
    if Path("/sys/class/thermal/thermal_zone0/temp").exists():
        assert dev["temperature"] is not None
    else:
        assert dev["temperature"] is None


def _numpy_version(env) -> str:
    import subprocess
    return subprocess.run([str(env.python), "-c", "import numpy; print(numpy.__version__)"],
                          capture_output=True, text=True, check=True).stdout.strip()


def _os_pretty_name():
    try:
        for line in Path("/etc/os-release").read_text().splitlines():
            if line.startswith("PRETTY_NAME="):
                return line.split("=", 1)[1].strip('"')
    except OSError:
        return None
    return None


def test_samples_and_statistics(env, variants_dir):
    res = run_agent(env.python, ["run", variants_dir / "int8.tflite", "--eval",
                                 variants_dir / "eval.npz", "--warmup", "2", "--runs", "57",
                                 "--samples"])
    assert res.returncode == 0, res.describe()
    validate(res.doc)
    t = res.doc["timing"]
    samples = np.asarray(t["samples_us"])
    assert samples.shape == (57,)
    assert t["min_us"] == pytest.approx(samples.min())
    assert t["max_us"] == pytest.approx(samples.max())
    assert t["mean_us"] == pytest.approx(samples.mean())
    assert t["std_us"] == pytest.approx(samples.std(ddof=1))
    for q in (50, 90, 99):
        assert t["p%d_us" % q] == pytest.approx(np.percentile(samples, q))


def test_min_seconds_extends_runs(env, variants_dir):
    res = run_agent(env.python, ["run", variants_dir / "float32.tflite", "--eval",
                                 variants_dir / "eval.npz", "--warmup", "0", "--runs", "5",
                                 "--min-seconds", "0.3"])
    assert res.returncode == 0, res.describe()
    t = res.doc["timing"]
    assert t["total_s"] >= 0.3
    assert t["runs"] > 5 and t["runs_requested"] == 5 and t["capped"] is False


def test_xnnpack_control(env, variants_dir):
    args = ["run", variants_dir / "float32.tflite", "--eval", variants_dir / "eval.npz",
            *FAST]
    default = run_agent(env.python, args).doc["runtime"]
    assert default["xnnpack"] is True  # float models get XNNPACK by default
    assert default["xnnpack_disable_honoured"] is None
    off = run_agent(env.python, args + ["--no-xnnpack"])
    validate(off.doc)
    rt = off.doc["runtime"]
    assert rt["xnnpack_disable_requested"] is True
    assert rt["xnnpack_disable_honoured"] is True
    assert rt["xnnpack"] is False
    assert off.doc["status"] == "ok"


def test_max_eval_and_threads(env, variants_dir, reference, labels):
    res = run_agent(env.python, ["run", variants_dir / "int8.tflite", "--eval",
                                 variants_dir / "eval.npz", "--max-eval", "17",
                                 "--threads", "2", *FAST])
    assert res.returncode == 0, res.describe()
    acc = res.doc["accuracy"]
    assert acc["num_samples"] == 17 and len(acc["predictions"]) == 17
    assert res.doc["runtime"]["threads"] == 2
    if env.name == "host":
        assert acc["predictions"] == reference["int8"][:17]


@pytest.mark.parametrize("variant", ["float32", "int8"])
def test_batched_accuracy(host_env, variant, variants_dir, reference, labels):
    res = run_agent(host_env.python, ["run", variants_dir / (variant + ".tflite"), "--eval",
                                      variants_dir / "eval.npz", "--batch", "16", *FAST])
    assert res.returncode == 0, res.describe()
    validate(res.doc)
    acc = res.doc["accuracy"]
    assert acc["batch_used"] == 16 and acc["num_samples"] == len(labels)  # 200 = 12*16 + 8
    ref_acc = float(np.mean(np.asarray(reference[variant]) == labels))
    assert abs(acc["accuracy"] - ref_acc) <= 0.001


def test_tensorflow_runtime_on_host(host_env, variants_dir, reference, labels):
    res = run_agent(host_env.python, ["run", variants_dir / "int8.tflite", "--eval",
                                      variants_dir / "eval.npz", "--runtime", "tensorflow",
                                      *FAST])
    assert res.returncode == 0, res.describe()
    validate(res.doc)
    assert res.doc["runtime"]["module"] == "tensorflow"
    assert res.doc["runtime"]["version"] == metadata.version("tensorflow")
    ref_acc = float(np.mean(np.asarray(reference["int8"]) == labels))
    assert abs(res.doc["accuracy"]["accuracy"] - ref_acc) <= 0.001


def test_tensorflow_never_imported_unless_chosen(host_env, variants_dir):
    """The host venv has TensorFlow; neither run (auto) nor probe may import it."""
    for args in (["run", variants_dir / "float32.tflite", "--eval",
                  variants_dir / "eval.npz", *FAST], ["probe"]):
        res = run_agent(host_env.python, args, python_flags=["-X", "importtime"])
        assert res.returncode == 0, res.describe()
        modules = imported_modules(res.stderr)
        assert "numpy" in modules  # the importtime capture works
        leaked = [m for m in modules if re.match(r"(tensorflow|keras|tf_keras)(\.|$)", m)]
        assert not leaked, leaked[:10]


def test_peak_rss_is_the_agents_own_not_a_large_parents(host_env, variants_dir):
    """ru_maxrss survives exec: an agent started by a 600 MB parent must still report its own peak."""
    import json
    import subprocess
    import sys

    parent = (
        "import subprocess, sys\n"
        "ballast = bytearray(600 * 1024 * 1024)\n"
        "for i in range(0, len(ballast), 4096): ballast[i] = 1\n"
        "out = subprocess.run(sys.argv[1:], capture_output=True, cwd=%r).stdout\n"
        "sys.stdout.write(out.decode())\n" % str(REPO_ROOT)
    )
    argv = [sys.executable, "-c", parent, str(host_env.python), "-m", "device_agent", "run",
            str(variants_dir / "float32.tflite"), "--eval", str(variants_dir / "eval.npz"), "--runs", "5"]
    doc = json.loads(subprocess.run(argv, capture_output=True, text=True, timeout=120).stdout)
    assert doc["status"] == "ok"
    assert 0 < doc["memory"]["rss_peak_kib"] < 400 * 1024
