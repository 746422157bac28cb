"""The Python API (issue 15): what the command line does, for a notebook that holds its model and arrays.

    import edgeprune
    result = edgeprune.optimize(model, train=(x_train, y_train), test=(x_test, y_test), out="runs/mine",
                                final_sparsity=0.7, prune_epochs=2)
    bench = edgeprune.bench(result.folder, device="local")
    table = edgeprune.compare("runs/edgeprune.db", bench.run_id)

Each call is the command's own code path: ``optimize`` writes the same run folder (in a child process, so a
native crash is an :class:`~edgeprune.errors.EdgepruneError` here, not a dead kernel), ``bench`` stores into the
same SQLite store, ``compare`` returns the report's DataFrame. Wrong arguments raise edgeprune's own exceptions
with one-line messages (``ConfigError`` for options, ``DataError`` for arrays, ``ModelError`` for models).
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Optional, Sequence, Tuple, Union

from .errors import ConfigError, DataError, ModelError

PathLike = Union[str, Path]
#: Where an in-memory model and arrays are written, inside the run folder (the manifest names them).
MODEL_FILE = "input-model.keras"
DATA_FILE = "input-data.npz"


def _arrays(pair: Any, name: str) -> Tuple[Any, Any]:
    import numpy as np

    if not isinstance(pair, (tuple, list)) or len(pair) != 2:
        raise DataError(f"{name} must be a pair (x, y) of arrays, got {type(pair).__name__}")
    try:
        x, y = np.asarray(pair[0]), np.asarray(pair[1])
    except Exception as exc:  # anything numpy cannot turn into an array
        raise DataError(f"{name}: not arrays ({type(exc).__name__}: {exc})") from exc
    if len(x) != len(y):
        raise DataError(f"{name}: x has {len(x)} samples, y has {len(y)}")
    return x, y


def _save_model(model: Any, path: Path) -> str:
    if isinstance(model, (str, Path)):
        return str(model)
    if not hasattr(model, "save") or not hasattr(model, "layers"):
        raise ModelError(f"model must be a Keras model or a path to one, got {type(model).__name__}")
    module = type(model).__module__
    if not module.startswith("tf_keras") and "keras.src" in module:
        raise ModelError("model is a Keras 3 model; edgeprune (through tfmot) needs Keras 2: import edgeprune "
                         "before TensorFlow, and build the model with tf_keras (or tf.keras after that import)")
    try:
        model.save(str(path))
    except Exception as exc:  # a model that cannot be saved cannot go to a child process either
        raise ModelError(f"cannot save the model to pass it on ({type(exc).__name__}: {exc})") from exc
    return str(path)


def optimize(model: Any, train: Optional[Sequence[Any]] = None, test: Optional[Sequence[Any]] = None,
             out: Optional[PathLike] = None, data: Optional[PathLike] = None, **options: Any) -> Any:
    """Prune and convert ``model`` (a tf_keras model in memory, or a .keras/.h5/SavedModel path) and measure
    every variant on the host; returns the :class:`~edgeprune.optimize.pipeline.OptimizeResult` (``folder``,
    ``document``: the manifest as dataclasses, ``notes``).

    The data is ``train``/``test`` as (x, y) arrays, or ``data``: an .npz with x_train, y_train, x_test, y_test.
    ``options`` are the command's options by name (``final_sparsity=0.7``, ``prune_epochs=2``, ``variants=
    "pruned-int8"``, ``custom_objects="mylayers:Gate"``, ...): see ``edgeprune optimize --help``.
    """
    import numpy as np

    from .optimize.child import optimize_in_child
    from .optimize.config import cli_options, config_from_options
    from .optimize.pipeline import Progress, default_out_dir, prepare_output

    known = {option.dest: option.default for option in cli_options()}
    unknown = sorted(set(options) - set(known))
    if unknown:
        raise ConfigError(f"unknown option {unknown[0]!r} (options: {', '.join(sorted(known))})")
    if (train is None) != (test is None):
        raise DataError("give both train=(x, y) and test=(x, y), or data=PATH.npz")
    if train is not None and data is not None:
        raise DataError("give train/test arrays or data=PATH.npz, not both")
    if train is None and data is None:
        raise DataError("a model needs data: train=(x, y) and test=(x, y), or data=PATH.npz")
    folder = Path(out or default_out_dir())
    prepare_output(folder)
    if train is not None:
        (x_train, y_train), (x_test, y_test) = _arrays(train, "train"), _arrays(test, "test")
        data = folder / DATA_FILE
        np.savez(data, x_train=x_train, y_train=y_train, x_test=x_test, y_test=y_test)
    values = dict(known, **options, model=_save_model(model, folder / MODEL_FILE), data=str(data), out=str(folder))
    config = config_from_options(values)
    return optimize_in_child(config, Progress(), folder / "native.log")


def bench(run_or_files: Union[PathLike, Sequence[PathLike]], device: Optional[str] = None,
          fleet: Optional[PathLike] = None, db: PathLike = "runs/edgeprune.db", **options: Any) -> Any:
    """Benchmark a run folder (``optimize``'s ``result.folder``) or .tflite files on ``device`` (a profile name
    or .toml path; default ``local``) or every device of ``fleet``; returns the
    :class:`~edgeprune.devices.fleet.BenchResult` (``run_id``, per-device summaries, ``stored`` counts).

    ``options``: ``eval`` (an .npz for files), ``jobs``, ``accept_new_host_keys``, ``variants`` (a list),
    ``wait`` (False: a device another controller holds gets its cells recorded ``busy`` at once) and
    ``wait_timeout`` (seconds to wait in all for such a device; default 1800).
    """
    from .devices.fleet import Waiting, bench as run_bench
    from .devices.profiles import load_fleet, load_profile
    from .devices.ssh import HostKeyPolicy
    from .results.imported import import_files, is_run_folder

    allowed = {"eval", "jobs", "accept_new_host_keys", "variants", "wait", "wait_timeout"}
    unknown = sorted(set(options) - allowed)
    if unknown:
        raise ConfigError(f"unknown option {unknown[0]!r} (options: {', '.join(sorted(allowed))})")
    if device and fleet:
        raise ConfigError("give device or fleet, not both")
    devices = load_fleet(str(fleet)).devices if fleet else [load_profile(device or "local")]
    items = [run_or_files] if isinstance(run_or_files, (str, Path)) else list(run_or_files)
    if len(items) == 1 and is_run_folder(Path(items[0])) and not options.get("eval"):
        source: Any = Path(items[0])
    else:
        source = import_files([str(i) for i in items], options.get("eval"))
    return run_bench(source, devices, str(db), jobs=int(options.get("jobs", 8)),
                     host_keys=HostKeyPolicy.from_flag(bool(options.get("accept_new_host_keys"))),
                     variants=options.get("variants"),
                     waiting=Waiting(bool(options.get("wait", True)), float(options.get("wait_timeout", 1800.0))))
