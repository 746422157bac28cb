"""The pruning schedule and the configuration: pure Python, no TensorFlow, fast."""
from __future__ import annotations

import json
import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edgeprune.optimize.config import VARIANTS, OptimizeConfig, PruneConfig, TrainConfig, parse_block_size, parse_variants
from edgeprune.errors import ConfigError, PruningError
from edgeprune.optimize.prune import derive_schedule

DIGITS_TRAIN = 1347  # scikit-learn digits, 75 % training split


def tfmot_pruning_turns(begin: int, end: int, frequency: int, total: int) -> list:
    """The training steps on which tfmot's PolynomialDecay prunes.

    UpdatePruningStep starts the step counter at 0 and each batch increments it before the mask update, so
    batches see steps 1..total; a step prunes when begin <= step <= end and (step - begin) % frequency == 0.
    """
    return [s for s in range(1, total + 1) if begin <= s <= end and (s - begin) % frequency == 0]


def test_default_schedule_on_digits_fires_and_leaves_recovery():
    config = PruneConfig()
    schedule = derive_schedule(DIGITS_TRAIN, config)
    assert schedule.steps_per_epoch == math.ceil(DIGITS_TRAIN / config.batch_size) == 43
    assert schedule.total_steps == 43 * config.epochs
    assert schedule.pruning_steps >= 1
    assert (schedule.end_step - schedule.begin_step) % schedule.frequency == 0
    assert schedule.begin_step < schedule.end_step <= schedule.total_steps
    assert schedule.recovery_steps > 0
    assert schedule.recovery_steps == schedule.total_steps - schedule.end_step
    turns = tfmot_pruning_turns(schedule.begin_step, schedule.end_step, schedule.frequency, schedule.total_steps)
    assert len(turns) == schedule.pruning_steps
    assert turns[-1] == schedule.end_step  # the final sparsity is actually applied
    assert (schedule.initial_sparsity, schedule.final_sparsity) == (config.initial_sparsity, config.final_sparsity)
    assert schedule.to_dict()["recovery_steps"] == schedule.recovery_steps


def test_classic_guide_schedule_is_refused():
    """frequency=100 with a 2-epoch fine-tune of 1347/32 -> 86 steps: tfmot would silently prune nothing."""
    config = PruneConfig(epochs=2, frequency=100)
    assert math.ceil(DIGITS_TRAIN / config.batch_size) * config.epochs < 100
    with pytest.raises(PruningError, match="frequency|every 100 steps"):
        derive_schedule(DIGITS_TRAIN, config)
    # Even letting pruning run over the whole fine-tune cannot reach a single pruning turn.
    with pytest.raises(PruningError):
        derive_schedule(DIGITS_TRAIN, PruneConfig(epochs=2, frequency=100, end_fraction=1.0))


def test_frequency_that_just_fits_is_accepted():
    # 4 epochs x 43 = 172 steps; end fraction 0.6 -> 103 steps of pruning window >= 100.
    schedule = derive_schedule(DIGITS_TRAIN, PruneConfig(epochs=4, frequency=100))
    assert schedule.frequency == 100 and schedule.end_step == 100 and schedule.pruning_steps == 1


def test_begin_step_beyond_the_fine_tune_is_refused():
    with pytest.raises(PruningError, match="begin"):
        derive_schedule(DIGITS_TRAIN, PruneConfig(epochs=1, begin_step=1000))


def test_end_fraction_one_leaves_no_recovery():
    schedule = derive_schedule(DIGITS_TRAIN, PruneConfig(end_fraction=1.0))
    assert schedule.recovery_steps == 0
    assert schedule.end_step == schedule.total_steps


def test_smaller_end_fraction_leaves_more_recovery():
    early = derive_schedule(DIGITS_TRAIN, PruneConfig(end_fraction=0.3))
    late = derive_schedule(DIGITS_TRAIN, PruneConfig(end_fraction=0.9))
    assert early.recovery_steps > late.recovery_steps > 0


@settings(max_examples=300, deadline=None)
@given(
    num_train=st.integers(1, 5000),
    batch_size=st.integers(1, 128),
    epochs=st.integers(1, 20),
    end_fraction=st.floats(0.05, 1.0),
    begin_step=st.integers(0, 50),
    frequency=st.one_of(st.none(), st.integers(1, 200)),
)
def test_any_accepted_schedule_prunes_on_its_end_step(num_train, batch_size, epochs, end_fraction, begin_step,
                                                      frequency):
    """Whatever the sizes: either PruningError, or a schedule on which tfmot really prunes, up to end_step."""
    config = PruneConfig(epochs=epochs, batch_size=batch_size, end_fraction=end_fraction, begin_step=begin_step,
                         frequency=frequency)
    try:
        schedule = derive_schedule(num_train, config)
    except PruningError:
        total = math.ceil(num_train / batch_size) * epochs
        window = max(1, int(total * end_fraction)) - begin_step
        assert window < 1 or (frequency or 1) > window  # refused only when it truly cannot prune
        return
    assert schedule.total_steps == math.ceil(num_train / batch_size) * epochs
    assert schedule.end_step <= schedule.total_steps
    assert schedule.recovery_steps >= 0
    if frequency is not None:
        assert schedule.frequency == frequency
    else:
        assert 1 <= schedule.frequency <= 100
    turns = tfmot_pruning_turns(schedule.begin_step, schedule.end_step, schedule.frequency, schedule.total_steps)
    assert schedule.pruning_steps == len(turns) >= 1
    assert turns[-1] == schedule.end_step
    if end_fraction == 1.0:
        assert schedule.recovery_steps < schedule.frequency  # only the rounding down to a pruning turn


# --- Configuration --------------------------------------------------------------------------------------------

@pytest.mark.parametrize(
    "kwargs",
    [
        {"final_sparsity": 1.5},
        {"final_sparsity": 1.0},
        {"final_sparsity": 0.0},
        {"initial_sparsity": -0.1},
        {"initial_sparsity": 0.9, "final_sparsity": 0.8},
        {"epochs": 0},
        {"batch_size": 0},
        {"learning_rate": 0.0},
        {"frequency": 0},
        {"begin_step": -1},
        {"end_fraction": 0.0},
        {"end_fraction": 1.01},
        {"block_size": (0, 1)},
    ],
    ids=lambda kwargs: ",".join(f"{k}={v}" for k, v in kwargs.items()),
)
def test_invalid_prune_config_raises_config_error(kwargs):
    with pytest.raises(ConfigError):
        PruneConfig(**kwargs)


@pytest.mark.parametrize("kwargs", [{"epochs": 0}, {"batch_size": 0}, {"learning_rate": -1.0}])
def test_invalid_train_config_raises_config_error(kwargs):
    with pytest.raises(ConfigError):
        TrainConfig(**kwargs)


def test_invalid_optimize_config_raises_config_error():
    with pytest.raises(ConfigError, match="--data"):
        OptimizeConfig(out="x", model="model.keras")
    with pytest.raises(ConfigError):
        OptimizeConfig(out="x", test_fraction=1.0)
    with pytest.raises(ConfigError):
        OptimizeConfig(out="x", variants=("pruned-int9",))


def test_parse_helpers():
    assert parse_block_size("4x1") == (4, 1)
    assert parse_block_size("1X1") == (1, 1)
    for bad in ("4", "4x", "ax1", "0x1"):
        with pytest.raises(ConfigError):
            parse_block_size(bad)
    assert parse_variants("pruned-int8, baseline-float32") == ("baseline-float32", "pruned-int8")
    with pytest.raises(ConfigError, match="pruned-int9"):
        parse_variants("pruned-int9")
    with pytest.raises(ConfigError):
        parse_variants(" , ")


def test_baseline_is_always_built():
    assert OptimizeConfig(out="x", variants=("pruned-int8",)).variants == ("baseline-float32", "pruned-int8")


@pytest.mark.parametrize(
    "config",
    [
        OptimizeConfig(),
        OptimizeConfig(
            out="runs/x",
            model="m.keras",
            data="d.npz",
            seed=7,
            test_fraction=0.3,
            representative_samples=50,
            variants=("pruned-float16", "pruned-int8"),
            train=TrainConfig(epochs=3, batch_size=16, learning_rate=0.01),
            prune=PruneConfig(initial_sparsity=0.2, final_sparsity=0.9, epochs=4, batch_size=16, learning_rate=1e-4,
                              frequency=5, begin_step=3, end_fraction=0.75, block_size=(1, 1)),
        ),
    ],
    ids=["default", "custom"],
)
def test_config_round_trip(config):
    data = config.to_dict()
    again = OptimizeConfig.from_dict(data)
    assert again == config
    assert again.to_dict() == data
    # Through JSON too, as it is stored in the manifest (tuples come back as lists).
    from_json = OptimizeConfig.from_dict(json.loads(json.dumps(data)))
    assert from_json == config
    assert isinstance(from_json.prune, PruneConfig) and isinstance(from_json.train, TrainConfig)
    assert isinstance(from_json.prune.block_size, tuple) and isinstance(from_json.variants, tuple)


def test_default_variants_are_the_seven():
    assert OptimizeConfig().variants == VARIANTS
    assert VARIANTS == ("baseline-float32", "baseline-dynamic", "baseline-int8", "pruned-float32", "pruned-dynamic",
                        "pruned-int8", "pruned-float16")
