"""The Python API (issue 15): docs/python-api.md's example, run as written, in one process (an in-memory model
optimized, benched on `local`, the DataFrame read back); and its mistakes, each one of edgeprune's exceptions."""
from __future__ import annotations

import re

import numpy as np
import pytest

import edgeprune
from edgeprune.errors import ConfigError, DataError, ModelError
from support.paths import REPO_ROOT

pytestmark = pytest.mark.slow


def doc_example() -> str:
    text = (REPO_ROOT / "docs" / "python-api.md").read_text()
    blocks = re.findall(r"```python\n(.*?)```", text, re.S)
    assert len(blocks) == 1, "docs/python-api.md should hold one example"
    return blocks[0]


def test_the_documented_example_runs_in_one_process(tmp_path, capsys):
    namespace = {"OUT": str(tmp_path / "run"), "DB": str(tmp_path / "s.db")}
    exec(compile(doc_example(), "docs/python-api.md", "exec"), namespace)  # noqa: S102 - our own docs
    result, run, table = namespace["result"], namespace["run"], namespace["table"]
    assert {v.name: v.status for v in result.document.variants} == {"baseline-float32": "ok", "pruned-int8": "ok"}
    assert (tmp_path / "run" / "manifest.json").is_file() and (tmp_path / "run" / "input-model.keras").is_file()
    assert run.run_id == 1 and run.stored.get("ok") == 3  # baseline, pruned-int8 and the baseline's A/A twin
    ok = table[table["status"] == "ok"]
    assert set(ok["variant"]) == {"baseline-float32", "pruned-int8"} and (ok["p50_us"] > 0).all()
    assert "pruned-int8" in capsys.readouterr().out


def _tiny_model():
    import tf_keras as keras

    return keras.Sequential([keras.layers.Input((8, 8, 1)), keras.layers.Flatten(), keras.layers.Dense(10)])


@pytest.mark.parametrize("call, error, words", [
    (lambda m, d, o: edgeprune.optimize(m, train=d, test=d, out=o, no_such_option=1), ConfigError,
     "unknown option 'no_such_option'"),
    (lambda m, d, o: edgeprune.optimize(m, train=d, out=o), DataError, "give both train=(x, y) and test=(x, y)"),
    (lambda m, d, o: edgeprune.optimize(m, train=(d[0], d[1][:3]), test=d, out=o), DataError,
     "train: x has 20 samples, y has 3"),
    (lambda m, d, o: edgeprune.optimize(object(), train=d, test=d, out=o), ModelError,
     "model must be a Keras model or a path"),
    (lambda m, d, o: edgeprune.optimize(m, train=d, test=d, out=o, final_sparsity=1.5), ConfigError,
     "final sparsity must be in (0, 1)"),
    (lambda m, d, o: edgeprune.bench(o, device="local", fleet="x.toml"), ConfigError, "not both"),
])
def test_mistakes_are_edgeprunes_own_one_line_exceptions(tmp_path, call, error, words):
    data = (np.zeros((20, 8, 8, 1), "float32"), np.zeros(20, "int64"))
    with pytest.raises(error) as caught:
        call(_tiny_model(), data, tmp_path / "out")
    assert words in str(caught.value) and "\n" not in str(caught.value)
