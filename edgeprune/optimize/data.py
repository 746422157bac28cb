"""Where the arrays come from: scikit-learn's digits (offline, the default) or a user's .npz.

The user's file holds ``x_train, y_train, x_test, y_test``: x as float arrays shaped [N, *input_shape] in the
scale the model expects, y as integer class labels [N]. The eval set written for the device agent is
``eval.npz`` with ``x`` (float32) and ``y`` (int64), the contract the agent reads.
"""
from __future__ import annotations

import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Tuple

import numpy as np

from ..errors import DataError

REQUIRED_KEYS = ("x_train", "y_train", "x_test", "y_test")


@dataclass
class Dataset:
    """Train/test arrays plus where they came from (for the manifest)."""

    name: str
    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray

    @property
    def input_shape(self) -> Tuple[int, ...]:
        return tuple(int(d) for d in self.x_train.shape[1:])

    @property
    def num_classes(self) -> int:
        return int(max(self.y_train.max(), self.y_test.max())) + 1

    def describe(self) -> dict:
        return {
            "name": self.name,
            "train_samples": int(len(self.x_train)),
            "test_samples": int(len(self.x_test)),
            "input_shape": list(self.input_shape),
            "num_classes": self.num_classes,
        }


def load_digits_dataset(seed: int = 0, test_fraction: float = 0.25) -> Dataset:
    """8x8 digits scaled to [0, 1], NHWC, stratified split with a fixed seed (ships with scikit-learn)."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    digits = load_digits()
    x = (digits.images / 16.0).astype(np.float32)[..., np.newaxis]
    y = digits.target.astype(np.int64)
    x_train, x_test, y_train, y_test = train_test_split(
        x, y, test_size=test_fraction, stratify=y, random_state=seed
    )
    return Dataset("digits", x_train, y_train, x_test, y_test)


#: The side of the RGB images the built-in mobilenet is trained on (the 8x8 digits upscaled).
RGB_SIDE = 64


def load_digits_rgb(seed: int = 0, test_fraction: float = 0.25, side: int = RGB_SIDE) -> Dataset:
    """The digits upscaled (nearest, by an integer factor) to side x side and repeated over 3 channels: the
    3-channel input a MobileNet-like stem (and XNNPACK's sparse path) needs, at a size whose latency shows on a
    Pi. The split is the 8x8 set's, so both built-ins see the same samples."""
    small = load_digits_dataset(seed, test_fraction)
    factor = side // 8

    def grow(x: np.ndarray) -> np.ndarray:
        big = np.repeat(np.repeat(x, factor, axis=1), factor, axis=2)
        return np.ascontiguousarray(np.repeat(big, 3, axis=3), dtype=np.float32)

    return Dataset(f"digits-rgb{side}", grow(small.x_train), small.y_train, grow(small.x_test), small.y_test)


def load_npz_dataset(path: str) -> Dataset:
    """Load and validate a user's .npz; every problem becomes one DataError line."""
    file = Path(path)
    if not file.is_file():
        raise DataError(f"data file not found: {path}")
    try:
        with np.load(file, allow_pickle=False) as npz:
            missing = [key for key in REQUIRED_KEYS if key not in npz.files]
            if missing:
                raise DataError(
                    f"{path}: missing array(s) {', '.join(missing)}; expected {', '.join(REQUIRED_KEYS)} "
                    f"(found {', '.join(npz.files) or 'none'})"
                )
            arrays = {key: npz[key] for key in REQUIRED_KEYS}
    except DataError:
        raise
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as exc:
        raise DataError(f"{path}: not a readable .npz file ({exc})") from exc
    return _validate(Path(path).stem, arrays)


def _validate(name: str, arrays: dict) -> Dataset:
    for split in ("train", "test"):
        x, y = arrays[f"x_{split}"], arrays[f"y_{split}"]
        if x.ndim < 2:
            raise DataError(f"x_{split} must be [N, *input_shape], got shape {x.shape}")
        if not np.issubdtype(x.dtype, np.number):
            raise DataError(f"x_{split} must be numeric, got {x.dtype}")
        if y.ndim != 1 or not np.issubdtype(y.dtype, np.integer):
            raise DataError(f"y_{split} must be 1-D integer class labels, got {y.dtype} shape {y.shape}")
        if len(x) != len(y):
            raise DataError(f"x_{split} has {len(x)} samples but y_{split} has {len(y)}")
        if len(x) == 0:
            raise DataError(f"x_{split} is empty")
        if y.min() < 0:
            raise DataError(f"y_{split} has negative labels")
        if not np.all(np.isfinite(x)):
            raise DataError(f"x_{split} contains NaN or infinite values")
    if arrays["x_train"].shape[1:] != arrays["x_test"].shape[1:]:
        raise DataError(
            f"x_train samples are {arrays['x_train'].shape[1:]} but x_test samples are {arrays['x_test'].shape[1:]}"
        )
    _check_classes(arrays["y_train"], arrays["y_test"])
    return Dataset(
        name,
        arrays["x_train"].astype(np.float32),
        arrays["y_train"].astype(np.int64),
        arrays["x_test"].astype(np.float32),
        arrays["y_test"].astype(np.int64),
    )


def _check_classes(y_train: np.ndarray, y_test: np.ndarray) -> None:
    """At least two classes to learn, and no test label the training set never shows.

    With one class there is nothing to learn: labels all 0 give a one-unit output that pruning fails on deep in
    TensorFlow (a traceback), other labels a run that reports a meaningless 100% accuracy. A test label unseen in
    training can never be predicted, so the accuracy and every comparison built on it would mislead. Labels are
    already known to be non-negative integers here.
    """
    classes = np.unique(y_train)
    if len(classes) < 2:
        raise DataError(f"y_train has a single class ({int(classes[0])}): a classifier needs labels of at least "
                        f"2 classes to train, prune and calibrate")
    unseen = np.setdiff1d(np.unique(y_test), classes)
    if unseen.size:
        shown = ", ".join(str(int(label)) for label in unseen[:10]) + (" ..." if unseen.size > 10 else "")
        raise DataError(f"y_test has label(s) {shown} that y_train never has; every test label must be one of the "
                        f"{len(classes)} classes in y_train")


def write_eval_npz(dataset: Dataset, path: Path) -> None:
    """The test set in the format the device agent reads."""
    np.savez(path, x=dataset.x_test.astype(np.float32), y=dataset.y_test.astype(np.int64))
