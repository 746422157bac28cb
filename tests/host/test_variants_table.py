"""The variants are one table, and the optimize options one description.

Every row is complete; a row added for a test's duration is parsed, converted from the model its source names,
measured and written to a valid manifest without touching any other module; ``--variants`` lists the table; and
``edgeprune optimize`` has the flags and defaults it always had, derived from the config fields.
"""
from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
from click.testing import CliRunner

from edgeprune.cli.commands import main
from edgeprune.errors import ConfigError
from edgeprune.optimize import variants
from edgeprune.optimize.config import (VARIANTS, OptimizeConfig, PruneConfig, TrainConfig, cli_options,
                                       config_from_options, parse_variants)
from edgeprune.optimize.variants import BASELINE, ConverterSettings, Variant

#: Two rows a user might add: float16 weights of the baseline, and a second name for pruned float16.
EXTRA_ROWS = (
    Variant("baseline-float16", "baseline model, float16 weights", "baseline",
            ConverterSettings(optimizations=("DEFAULT",), supported_types=("float16",))),
    Variant("pruned-half", "pruned, float16 weights (another name)", "pruned",
            variants.get("pruned-float16").converter),
)


@pytest.fixture
def extra_rows(monkeypatch):
    for row in EXTRA_ROWS:
        monkeypatch.setitem(variants.REGISTRY, row.name, row)
    return EXTRA_ROWS


def test_every_row_is_complete():
    assert variants.TABLE and list(variants.REGISTRY.values()) == list(variants.TABLE)
    assert len({row.name for row in variants.TABLE}) == len(variants.TABLE)
    for row in variants.TABLE:
        assert row.description.strip(), row
        assert row.source in variants.SOURCES, row
        assert isinstance(row.converter, ConverterSettings), row
        assert row.file == f"{row.name}.tflite"
    assert variants.TABLE[0].name == BASELINE and variants.get(BASELINE).source == "baseline"
    assert variants.names() == tuple(row.name for row in variants.TABLE)
    assert VARIANTS == variants.defaults() == tuple(row.name for row in variants.TABLE if row.default)


def test_the_controls_are_rows_with_their_pruned_twins_settings():
    """issue 12: each control differs from the pruned row it is compared with in its source model only."""
    for control, twin, source in (("baseline-dynamic", "pruned-dynamic", "baseline"),
                                  ("baseline-int8", "pruned-int8", "baseline"),
                                  ("finetuned-float32", "pruned-float32", "finetuned")):
        row = variants.get(control)
        assert (row.source, row.converter) == (source, variants.get(twin).converter), control
    assert {"baseline-dynamic", "baseline-int8"} <= set(VARIANTS)
    assert not variants.get("finetuned-float32").default and "finetuned-float32" not in VARIANTS
    assert OptimizeConfig(out="x").variants == VARIANTS
    assert parse_variants("finetuned-float32,pruned-int8") == ("finetuned-float32", "pruned-int8")
    assert OptimizeConfig(out="x", variants=("finetuned-float32",)).variants == (BASELINE, "finetuned-float32")
    assert "fine-tuned" in variants.get("finetuned-float32").description


def test_converter_settings_name_real_tensorflow_attributes():
    from edgeprune.optimize import _tf

    tf, _ = _tf.load()
    for row in variants.TABLE:
        settings = row.converter
        for name in settings.optimizations:
            assert hasattr(tf.lite.Optimize, name), (row.name, name)
        for name in settings.supported_ops:
            assert hasattr(tf.lite.OpsSet, name), (row.name, name)
        for name in settings.supported_types + tuple(filter(None, (settings.input_type, settings.output_type))):
            assert isinstance(getattr(tf, name), tf.dtypes.DType), (row.name, name)
        if settings.input_type == "int8":
            assert settings.representative_dataset, f"{row.name}: full integer needs calibration samples"


def test_a_bad_row_is_refused():
    with pytest.raises(ConfigError, match="source"):
        Variant("pruned-x", "x", "quantized")
    with pytest.raises(ConfigError, match="lower-case"):
        Variant("Pruned_X", "x", "pruned")
    with pytest.raises(ConfigError, match="description"):
        Variant("pruned-x", "", "pruned")


def test_an_added_row_is_a_variant(extra_rows):
    assert parse_variants("pruned-half,baseline-float16") == ("baseline-float16", "pruned-half")
    config = OptimizeConfig(out="x", variants=("pruned-half",))
    assert config.variants == (BASELINE, "pruned-half")
    assert "pruned-half" in variants.help_text()


def test_an_added_row_is_gone_with_its_fixture():
    with pytest.raises(ConfigError, match="unknown variant 'pruned-half'"):
        parse_variants("pruned-half")


@pytest.mark.slow
def test_an_added_row_is_built_measured_and_recorded(extra_rows, user_models, small_digits_npz, tmp_path):
    """The whole pipeline with two new rows: the baseline-sourced one is converted from the unpruned model, the
    pruned one from the pruned model, and both are measured and recorded in a valid manifest."""
    from edgeprune.optimize.pipeline import optimize
    from edgeprune.results import manifest as manifest_io

    config = OptimizeConfig(out=str(tmp_path / "run"), model=str(user_models["keras"]), data=str(small_digits_npz),
                            variants=("pruned-float32", "pruned-float16", "baseline-float16", "pruned-half"),
                            prune=PruneConfig(epochs=2))
    result = optimize(config)
    typed = manifest_io.load(result.folder)
    assert [v.name for v in typed.variants] == [BASELINE, "pruned-float32", "pruned-float16", "baseline-float16",
                                                "pruned-half"]
    assert typed.failed_variants() == []
    half, base16, float16 = (typed.variant(name) for name in ("pruned-half", "baseline-float16", "pruned-float16"))
    assert half.description == EXTRA_ROWS[1].description and (result.folder / "pruned-half.tflite").is_file()
    # The same settings on the same model as pruned-float16; the baseline row is made from the unpruned model.
    assert (half.size_bytes, half.sparsity, half.accuracy) == (float16.size_bytes, float16.sparsity, float16.accuracy)
    assert half.sparsity >= 0.75 and base16.sparsity < 0.01
    assert base16.size_bytes < 0.7 * typed.variant(BASELINE).size_bytes  # float16 weights
    with np.load(result.folder / typed.predictions_file) as predictions:
        assert {"pruned_half", "baseline_float16"} <= set(predictions.files)
    assert typed.to_dict() == result.manifest


# --- The command line --------------------------------------------------------------------------------------------

#: ``edgeprune optimize``'s flags and defaults before they were derived from the config fields (the controls
#: baseline-dynamic and baseline-int8 joined the default variants with issue 12).
FLAGS = {
    ("--model",): None, ("--data",): None, ("--out",): None,
    ("--variants",): "baseline-float32,baseline-dynamic,baseline-int8,pruned-float32,pruned-dynamic,pruned-int8,"
                     "pruned-float16",
    ("--train-epochs",): 30, ("--prune-epochs", "--epochs"): 10, ("--batch-size",): 32,
    ("--initial-sparsity",): 0.5, ("--final-sparsity",): 0.8, ("--frequency",): None, ("--end-fraction",): 0.6,
    ("--block-size",): "4x1", ("--seed",): 0,
    ("--custom-objects",): None, ("--unsafe-deserialization",): False, ("--max-accuracy-drop",): 5.0,
    ("--builtin",): "cnn", ("--structure",): "block",
}


def _optimize_flags(command_name: str) -> dict:
    command = main.commands[command_name]
    return {tuple(p.opts): p.default for p in command.params if p.name in {o.dest for o in cli_options()}}


@pytest.mark.parametrize("command", ["optimize", "run"])
def test_optimize_flags_and_defaults_are_unchanged(command):
    flags = _optimize_flags(command)
    assert {key: (None if value == "" else value) for key, value in flags.items()} == FLAGS  # --out: see _optimize_config


def test_help_lists_the_flags_and_the_table():
    result = CliRunner().invoke(main, ["optimize", "--help"], terminal_width=400, max_content_width=400)
    assert result.exit_code == 0, result.output
    text = " ".join(result.output.split())  # help wraps long lines at spaces
    for flags, default in FLAGS.items():
        assert ", ".join(flags) in text
        if default is not None and default is not False:  # an on/off flag shows no default
            assert f"[default: {default}]" in text
    for row in variants.TABLE:
        assert f"{row.name}: {row.description}" in text
    assert f"finetuned-float32: {variants.get('finetuned-float32').description} (opt-in)" in text


def test_default_options_give_the_default_config():
    defaults = {option.dest: option.default for option in cli_options()}
    assert config_from_options({**defaults, "out": "x"}) == OptimizeConfig(out="x")


def test_options_set_their_fields():
    values = {option.dest: option.default for option in cli_options()}
    values.update(out="o", model="m.keras", data="d.npz", seed=3, variants="pruned-int8", train_epochs=4,
                  prune_epochs=5, batch_size=16, initial_sparsity=0.3, final_sparsity=0.9, frequency=7,
                  end_fraction=0.5, block_size="1x1")
    assert config_from_options(values) == OptimizeConfig(
        out="o", model="m.keras", data="d.npz", seed=3, variants=(BASELINE, "pruned-int8"),
        train=TrainConfig(epochs=4, batch_size=16),
        prune=PruneConfig(initial_sparsity=0.3, final_sparsity=0.9, epochs=5, batch_size=16, frequency=7,
                          end_fraction=0.5, block_size=(1, 1)),
    )


def test_the_first_bad_option_is_reported():
    values = {option.dest: option.default for option in cli_options()}
    with pytest.raises(ConfigError, match="--train-epochs"):
        config_from_options({**values, "out": "o", "train_epochs": 0, "block_size": "4by1"})
    with pytest.raises(ConfigError, match="pruned-int9"):
        config_from_options({**values, "out": "o", "variants": "pruned-int9", "train_epochs": 0})


def test_a_new_field_with_a_flag_is_a_new_option(monkeypatch):
    """The options are read from the config fields: one more flagged field is one more option."""
    from dataclasses import fields

    from edgeprune.optimize import config as config_mod

    field = next(f for f in fields(PruneConfig) if f.name == "begin_step")
    monkeypatch.setattr(field, "metadata", config_mod.flag("--begin-step", help="First pruning step."))
    option = next(o for o in cli_options() if o.dest == "begin_step")
    assert option.type is int and option.default == 0 and option.targets == (("prune", "begin_step"),)
    values = {o.dest: o.default for o in cli_options()}
    assert config_from_options({**values, "out": "o", "begin_step": 3}).prune == replace(PruneConfig(), begin_step=3)
