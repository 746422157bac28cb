"""The command line as a user meets it: fast help, and one ``Error:`` line (no traceback) for each bad input.

Error cases run with ``--quiet`` so stderr holds only what is printed besides the progress display; each must
be exactly one line.
"""
from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

#: Generous enough for a loaded CI machine; the measured figure is ~0.1 s.
HELP_SECONDS = 3.0


def test_cli_module_does_not_import_tensorflow():
    code = "import edgeprune.cli.commands, sys; print('tensorflow' in sys.modules, 'tf_keras' in sys.modules)"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["False", "False"]


@pytest.mark.parametrize("args", [["--help"], ["optimize", "--help"]], ids=["help", "optimize-help"])
def test_help_is_fast(cli, args):
    started = time.perf_counter()
    proc = cli(*args, timeout=60)
    elapsed = time.perf_counter() - started
    print(f"python -m edgeprune {' '.join(args)}: {elapsed:.2f} s")
    assert proc.returncode == 0, proc.stderr
    assert "Usage:" in proc.stdout
    if args == ["--help"]:
        assert "optimize" in proc.stdout
    else:
        assert "--prune-epochs" in proc.stdout and "--frequency" in proc.stdout
    assert elapsed < HELP_SECONDS


def test_version(cli):
    import edgeprune

    proc = cli("--version", timeout=60)
    assert proc.returncode == 0
    assert edgeprune.__version__ in proc.stdout


# --- Bad inputs -------------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def bad_inputs(tmp_path_factory, small_digits_npz) -> dict:
    folder = tmp_path_factory.mktemp("bad-inputs")
    with np.load(small_digits_npz) as npz:
        arrays = {key: npz[key] for key in npz.files}
    files = {
        "garbage.h5": b"this is not an HDF5 file\n" * 20,
        "garbage.keras": b"this is not a Keras zip archive\n" * 20,
    }
    for name, content in files.items():
        (folder / name).write_bytes(content)
    np.savez(folder / "wrong-keys.npz", x=arrays["x_train"], y=arrays["y_train"])
    np.savez(folder / "length-mismatch.npz", **{**arrays, "y_train": arrays["y_train"][:-5]})
    # Flattened samples: valid data, but not what an 8x8x1 model takes.
    np.savez(folder / "flat.npz", **{k: (v.reshape(len(v), -1) if k.startswith("x") else v) for k, v in arrays.items()})
    (folder / "file.txt").write_text("a regular file, not a folder\n")
    return {"folder": folder, "good_data": small_digits_npz}


def _out(tmp_path: Path) -> str:
    return str(tmp_path / "out")


def test_missing_model_file(cli, bad_inputs, tmp_path, assert_one_line_error):
    line = assert_one_line_error(
        cli("optimize", "--quiet", "--model", str(tmp_path / "nope.keras"), "--data", str(bad_inputs["good_data"]),
            "--out", _out(tmp_path))
    )
    assert "not found" in line and "nope.keras" in line


@pytest.mark.parametrize("name", ["garbage.h5", "garbage.keras"])
def test_unreadable_model_file(cli, bad_inputs, tmp_path, assert_one_line_error, name):
    model = bad_inputs["folder"] / name
    line = assert_one_line_error(
        cli("optimize", "--quiet", "--model", str(model), "--data", str(bad_inputs["good_data"]), "--out",
            _out(tmp_path))
    )
    assert name in line and "cannot load" in line


def test_directory_that_is_not_a_savedmodel(cli, bad_inputs, tmp_path, assert_one_line_error):
    empty = tmp_path / "not-a-savedmodel"
    empty.mkdir()
    line = assert_one_line_error(
        cli("optimize", "--quiet", "--model", str(empty), "--data", str(bad_inputs["good_data"]), "--out",
            _out(tmp_path))
    )
    assert "SavedModel" in line


def test_data_with_wrong_keys(cli, bad_inputs, user_models, tmp_path, assert_one_line_error):
    line = assert_one_line_error(
        cli("optimize", "--quiet", "--model", str(user_models["keras"]), "--data",
            str(bad_inputs["folder"] / "wrong-keys.npz"), "--out", _out(tmp_path))
    )
    assert "x_train" in line and "missing" in line


def test_data_with_mismatched_lengths(cli, bad_inputs, user_models, tmp_path, assert_one_line_error):
    line = assert_one_line_error(
        cli("optimize", "--quiet", "--model", str(user_models["keras"]), "--data",
            str(bad_inputs["folder"] / "length-mismatch.npz"), "--out", _out(tmp_path))
    )
    assert "x_train" in line and "y_train" in line


def test_missing_data_file(cli, tmp_path, assert_one_line_error, user_models):
    line = assert_one_line_error(
        cli("optimize", "--quiet", "--model", str(user_models["keras"]), "--data", str(tmp_path / "none.npz"),
            "--out", _out(tmp_path))
    )
    assert "none.npz" in line


def test_not_an_npz(cli, bad_inputs, tmp_path, assert_one_line_error, user_models):
    line = assert_one_line_error(
        cli("optimize", "--quiet", "--model", str(user_models["keras"]), "--data",
            str(bad_inputs["folder"] / "garbage.h5"), "--out", _out(tmp_path))
    )
    assert "npz" in line


def test_model_input_does_not_match_data(cli, bad_inputs, user_models, tmp_path, assert_one_line_error):
    line = assert_one_line_error(
        cli("optimize", "--quiet", "--model", str(user_models["keras"]), "--data",
            str(bad_inputs["folder"] / "flat.npz"), "--out", _out(tmp_path))
    )
    assert "model input" in line and "(64,)" in line
    assert not list((tmp_path / "out").glob("*.tflite"))


def test_unwritable_out(cli, bad_inputs, assert_one_line_error):
    # Root ignores permission bits, so make the folder impossible instead: a path under a regular file.
    out = bad_inputs["folder"] / "file.txt" / "sub"
    line = assert_one_line_error(cli("optimize", "--quiet", "--out", str(out)))
    assert "output folder" in line and "file.txt" in line


def test_unknown_variant(cli, tmp_path, assert_one_line_error):
    line = assert_one_line_error(cli("optimize", "--quiet", "--variants", "pruned-int9", "--out", _out(tmp_path)))
    assert "pruned-int9" in line
    assert not (tmp_path / "out").exists()


def test_model_without_data(cli, user_models, tmp_path, assert_one_line_error):
    line = assert_one_line_error(cli("optimize", "--quiet", "--model", str(user_models["keras"]), "--out",
                                     _out(tmp_path)))
    assert "--data" in line


@pytest.mark.parametrize(
    "args, words",
    [
        (["--final-sparsity", "1.5"], "sparsity"),
        (["--initial-sparsity", "0.9", "--final-sparsity", "0.8"], "initial sparsity"),
        (["--prune-epochs", "0"], "--prune-epochs"),
        (["--block-size", "4by1"], "block size"),
    ],
    ids=["sparsity>1", "initial>final", "epochs0", "block-size"],
)
def test_bad_options(cli, tmp_path, assert_one_line_error, args, words):
    line = assert_one_line_error(cli("optimize", "--quiet", *args, "--out", _out(tmp_path)))
    assert words in line


def test_debug_shows_the_traceback(cli, tmp_path):
    """--debug is the way to see where an error came from; without it the one line is all."""
    proc = cli("--debug", "optimize", "--quiet", "--model", str(tmp_path / "nope.keras"), "--data",
               str(tmp_path / "nope.npz"), "--out", _out(tmp_path))
    assert proc.returncode != 0
    assert "Traceback" in proc.stderr
    assert proc.stderr.strip().splitlines()[-1].startswith("Error: ")


def test_schedule_that_cannot_prune_fails_before_training(cli, tmp_path, assert_one_line_error):
    """The classic guide's frequency=100 on a 1-epoch digits fine-tune (43 steps): refused up front.

    Run without --quiet: the progress display must not have started any stage (no baseline trained or
    converted), and nothing is written but the folder itself.
    """
    out = tmp_path / "out"
    started = time.perf_counter()
    proc = cli("optimize", "--prune-epochs", "1", "--frequency", "100", "--out", str(out))
    elapsed = time.perf_counter() - started
    line = assert_one_line_error(proc)
    assert "frequency" in line and "100" in line
    assert "Training" not in proc.stderr and "Converting" not in proc.stderr
    assert not list(out.glob("*.tflite"))
    assert not (out / "manifest.json").exists()
    assert not (out / "eval.npz").exists()
    print(f"refused in {elapsed:.2f} s")
