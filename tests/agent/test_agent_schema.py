"""The schema itself: valid draft 2020-12, and strict where it matters."""

from __future__ import annotations

import copy
import json

import jsonschema
import pytest

from support.agent_harness import SCHEMA_PATH, run_agent, validate


@pytest.fixture(scope="module")
def ok_doc(host_env, variants_dir):
    res = run_agent(host_env.python, ["run", variants_dir / "float32.tflite", "--eval",
                                      variants_dir / "eval.npz", "--runs", "5", "--samples"])
    assert res.returncode == 0, res.describe()
    return res.doc


def test_schema_is_valid_2020_12():
    schema = json.loads(SCHEMA_PATH.read_text())
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    jsonschema.Draft202012Validator.check_schema(schema)


@pytest.mark.parametrize("mutate", [
    lambda d: d["timing"].__setitem__("p50_us", -1.0),
    lambda d: d["timing"].__setitem__("p50_us", None),
    lambda d: d["timing"]["samples_us"].append("12.5"),
    lambda d: d["memory"].__setitem__("rss_peak_kib", -5),
    lambda d: d.__setitem__("status", "error"),  # error without an error object
    lambda d: d.pop("accuracy"),
    lambda d: d["accuracy"].__setitem__("predictions_digest", "xyz"),
    lambda d: d.__setitem__("surprise", 1),
    lambda d: d.__setitem__("schema_version", 2),
], ids=["negative", "null-latency", "string-sample", "negative-rss", "error-without-error",
        "missing-section", "bad-digest", "unknown-key", "schema-version"])
def test_schema_rejects_broken_documents(ok_doc, mutate):
    validate(ok_doc)
    broken = copy.deepcopy(ok_doc)
    mutate(broken)
    with pytest.raises(AssertionError, match="schema violations"):
        validate(broken)
