"""Class labels a model cannot learn from are refused when the data is loaded, as one ``Error:`` line.

A training set with one class used to reach TensorFlow and end in a traceback (labels all 0) or in a "100%
accurate" run (labels all 3); a test label never seen in training was measured as if it could be predicted.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from edgeprune.optimize.data import load_npz_dataset
from edgeprune.errors import DataError


def _npz(folder: Path, name: str, y_train: np.ndarray, y_test: np.ndarray) -> Path:
    """Random 8x8x1 samples with the given labels: the checks are about labels only."""
    rng = np.random.default_rng(0)
    path = folder / name
    np.savez(path, x_train=rng.random((len(y_train), 8, 8, 1), dtype=np.float32), y_train=y_train,
             x_test=rng.random((len(y_test), 8, 8, 1), dtype=np.float32), y_test=y_test)
    return path


@pytest.mark.parametrize("label", [0, 3])
def test_one_class_in_y_train_is_one_error_line(cli, tmp_path, assert_one_line_error, label):
    data = _npz(tmp_path, "one_class.npz", np.full(60, label, dtype=np.int64), np.full(20, label, dtype=np.int64))
    line = assert_one_line_error(cli("optimize", "--quiet", "--data", str(data), "--out", str(tmp_path / "out")))
    assert f"y_train has a single class ({label})" in line and "at least 2 classes" in line
    assert not (tmp_path / "out" / "eval.npz").exists()


def test_test_labels_unseen_in_training_are_one_error_line(cli, tmp_path, assert_one_line_error):
    data = _npz(tmp_path, "unseen.npz", np.arange(60) % 3, np.arange(20) % 5)
    line = assert_one_line_error(cli("optimize", "--quiet", "--data", str(data), "--out", str(tmp_path / "out")))
    assert "y_test has label(s) 3, 4 that y_train never has" in line and "3 classes in y_train" in line


def test_the_loader_accepts_a_test_set_with_fewer_classes(tmp_path):
    """The check is "seen in training", not "the same classes": a test slice may lack some classes, and two
    classes are enough (unsigned labels too). Checked together with a refusal, so the old loader fails here."""
    data = load_npz_dataset(str(_npz(tmp_path, "ok.npz", np.arange(40, dtype=np.uint8) % 2,
                                     np.zeros(10, dtype=np.uint8))))
    assert data.num_classes == 2 and data.y_test.dtype == np.int64
    with pytest.raises(DataError, match=r"y_train has a single class \(1\)"):
        load_npz_dataset(str(_npz(tmp_path, "one.npz", np.ones(40, dtype=np.int64), np.ones(10, dtype=np.int64))))
