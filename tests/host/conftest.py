"""Fixtures for the host pipeline tests: a CLI runner, a small digits .npz and small user models."""
from __future__ import annotations

import os
import subprocess
import sys
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Dict

import numpy as np
import pytest

#: A small slice of digits: enough for a user-model run to prune and convert in a few seconds.
SMALL_TRAIN = 400
SMALL_TEST = 150


@dataclass
class Cli:
    """Runs ``python -m edgeprune ...`` in a subprocess, in a scratch working directory."""

    cwd: Path

    def __call__(self, *args: str, timeout: float = 600) -> subprocess.CompletedProcess:
        env = dict(os.environ)
        env.pop("TF_USE_LEGACY_KERAS", None)  # the package must set it itself
        return subprocess.run(
            [sys.executable, "-m", "edgeprune", *args],
            capture_output=True,
            text=True,
            timeout=timeout,
            cwd=str(self.cwd),
            env=env,
        )


@pytest.fixture
def cli(tmp_path: Path) -> Cli:
    return Cli(tmp_path)


def nonempty_lines(text: str) -> list:
    return [line for line in text.splitlines() if line.strip()]


@pytest.fixture
def assert_one_line_error() -> Callable[[subprocess.CompletedProcess], str]:
    """Check the CLI's failure contract and return the error line: non-zero exit, stderr is exactly one
    non-empty line starting with ``Error:``, no traceback anywhere."""

    def check(proc: subprocess.CompletedProcess) -> str:
        lines = nonempty_lines(proc.stderr)
        assert proc.returncode != 0, f"expected a non-zero exit; stderr:\n{proc.stderr}"
        assert "Traceback" not in proc.stderr + proc.stdout, proc.stderr
        assert len(lines) == 1 and lines[0].startswith("Error: "), f"stderr is not one Error: line:\n{proc.stderr}"
        return lines[0]

    return check


@pytest.fixture(scope="session")
def small_digits_npz(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A user's data file: a slice of scikit-learn digits, NHWC float32 in [0, 1], int64 labels."""
    from edgeprune.optimize.data import load_digits_dataset

    data = load_digits_dataset(seed=0)
    path = tmp_path_factory.mktemp("data") / "digits-small.npz"
    np.savez(
        path,
        x_train=data.x_train[:SMALL_TRAIN],
        y_train=data.y_train[:SMALL_TRAIN],
        x_test=data.x_test[:SMALL_TEST],
        y_test=data.y_test[:SMALL_TEST],
    )
    return path


def _build_small_model(input_dtype: str = "float32"):
    """A user's small Keras 2 model for 8x8x1 digits (Dense only, so it trains in a second)."""
    import tf_keras

    layers = tf_keras.layers
    inputs = layers.Input((8, 8, 1), dtype=input_dtype)
    hidden = layers.Flatten()(inputs)
    hidden = layers.Dense(64, activation="relu", name="hidden")(hidden)
    outputs = layers.Dense(10, name="logits")(hidden)
    return tf_keras.Model(inputs, outputs, name=f"user_digits_{input_dtype}")


def _train_small_model(model, npz: Path, epochs: int = 2):
    import tf_keras

    tf_keras.utils.set_random_seed(0)
    with np.load(npz) as data:
        model.compile(
            optimizer=tf_keras.optimizers.Adam(1e-2),
            loss=tf_keras.losses.SparseCategoricalCrossentropy(from_logits=True),
            metrics=["accuracy"],
        )
        model.fit(data["x_train"], data["y_train"], epochs=epochs, batch_size=32, verbose=0)
    return model


@pytest.fixture(scope="session")
def float16_input_model(tmp_path_factory: pytest.TempPathFactory, small_digits_npz: Path) -> Path:
    """A model whose input layer is float16: it converts to every float variant, but full-integer calibration
    feeds float32 samples to a float16 input, so the converter fails for pruned-int8 only."""
    model = _train_small_model(_build_small_model("float16"), small_digits_npz)
    path = tmp_path_factory.mktemp("float16-model") / "float16_input.keras"
    model.save(str(path))
    return path


@pytest.fixture(scope="session")
def user_models(tmp_path_factory: pytest.TempPathFactory, small_digits_npz: Path) -> Dict[str, Path]:
    """One trained tf_keras model saved three ways: .keras, .h5 and a SavedModel directory."""
    folder = tmp_path_factory.mktemp("user-models")
    model = _train_small_model(_build_small_model(), small_digits_npz)
    paths = {"keras": folder / "model.keras", "h5": folder / "model.h5", "savedmodel": folder / "saved_model_dir"}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # tf_keras calls .h5 "legacy"; users still have them
        for path in paths.values():
            model.save(str(path))
    assert (paths["savedmodel"] / "saved_model.pb").is_file(), "tf_keras did not write a SavedModel"
    return paths
