"""Run the device agent the way the host will: as a subprocess, reading the
one JSON document it prints.  Nothing here imports device_agent itself.

Usable on any folder of variants (``run_folder``), e.g. a real
``edgeprune optimize`` run folder: every ``*.tflite`` in it is run against
the folder's ``eval.npz``.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

import numpy as np

from support.paths import REPO_ROOT

AGENT_DIR = REPO_ROOT / "device_agent"
SCHEMA_PATH = REPO_ROOT / "schemas" / "agent-result.schema.json"

# Variants built by model_factory.py (stems of the .tflite files).
VARIANTS = ("float32", "dynamic", "int8", "float16")


@dataclass
class AgentRun:
    argv: List[str]
    returncode: int
    stdout: str
    stderr: str
    doc: Dict[str, Any]

    def describe(self) -> str:
        return "argv: %s\nexit: %d\nstdout: %s\nstderr (tail): %s" % (
            " ".join(self.argv), self.returncode, self.stdout[:3000], self.stderr[-3000:])


def agent_env() -> Dict[str, str]:
    env = dict(os.environ)
    env.pop("PYTHONPATH", None)
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    return env


def run_agent(python: Path, args: Sequence[str], cwd: Path = REPO_ROOT,
              python_flags: Sequence[str] = (), timeout: float = 180) -> AgentRun:
    """Run ``python -m device_agent ARGS`` in ``cwd`` and parse its stdout.

    Fails the test unless stdout is exactly one JSON document and nothing else
    (the host parses it verbatim).
    """
    argv = [str(python), *python_flags, "-m", "device_agent", *[str(a) for a in args]]
    proc = subprocess.run(argv, cwd=str(cwd), capture_output=True, text=True,
                          env=agent_env(), timeout=timeout)
    partial = AgentRun(argv, proc.returncode, proc.stdout, proc.stderr, {})
    assert proc.stdout.endswith("\n") and proc.stdout.count("\n") == 1, (
        "stdout must be one JSON line\n" + partial.describe())
    try:
        doc = json.loads(proc.stdout, parse_constant=_reject_constant)
    except ValueError as exc:
        raise AssertionError("stdout is not one JSON document: %s\n%s"
                             % (exc, partial.describe()))
    assert isinstance(doc, dict), partial.describe()
    return AgentRun(argv, proc.returncode, proc.stdout, proc.stderr, doc)


def _reject_constant(name: str) -> Any:
    raise ValueError("non-standard JSON constant %s in agent output" % name)


def run_folder(python: Path, folder: Path, extra_args: Sequence[str] = (),
               eval_name: str = "eval.npz") -> Dict[str, AgentRun]:
    """Run every ``*.tflite`` of a run folder; keyed by variant name (stem)."""
    results: Dict[str, AgentRun] = {}
    for model in sorted(Path(folder).glob("*.tflite")):
        results[model.stem] = run_agent(
            python, ["run", model, "--eval", Path(folder) / eval_name, *extra_args])
    return results


_VALIDATOR = None


def validate(doc: Dict[str, Any]) -> None:
    """Fail unless ``doc`` matches schemas/agent-result.schema.json."""
    global _VALIDATOR
    import jsonschema

    if _VALIDATOR is None:
        schema = json.loads(SCHEMA_PATH.read_text())
        jsonschema.Draft202012Validator.check_schema(schema)
        _VALIDATOR = jsonschema.Draft202012Validator(schema)
    errors = sorted(_VALIDATOR.iter_errors(doc), key=lambda e: list(e.path))
    assert not errors, "schema violations:\n" + "\n".join(
        "%s: %s" % ("/".join(map(str, e.path)), e.message) for e in errors[:20])


def predictions_digest(preds: Sequence[int]) -> str:
    """The host's digest, written out here independently of the agent."""
    return hashlib.sha256(np.asarray(preds, dtype="<i4").tobytes()).hexdigest()[:16]


def reference_predictions(model: Path, eval_npz: Path,
                          max_eval: Optional[int] = None) -> List[int]:
    """Predictions of the host's own ai_edge_litert interpreter, batch 1,
    inputs quantized with the model's scale/zero-point (round half to even)."""
    from ai_edge_litert.interpreter import Interpreter

    with np.load(eval_npz) as data:
        x = data["x"]
    if max_eval is not None:
        x = x[:max_eval]
    interpreter = Interpreter(model_path=str(model))
    interpreter.allocate_tensors()
    inp = interpreter.get_input_details()[0]
    out = interpreter.get_output_details()[0]
    if np.issubdtype(inp["dtype"], np.integer):
        scale, zero = inp["quantization"]
        info = np.iinfo(inp["dtype"])
        x = np.clip(np.round(x / np.float32(scale) + np.float32(zero)), info.min, info.max)
        x = x.astype(inp["dtype"])
    preds: List[int] = []
    for i in range(x.shape[0]):
        interpreter.set_tensor(inp["index"], x[i:i + 1])
        interpreter.invoke()
        scores = interpreter.get_tensor(out["index"]).astype(np.float32)
        if np.issubdtype(out["dtype"], np.integer):
            scale, zero = out["quantization"]
            scores = (scores - zero) * scale
        preds.append(int(np.argmax(scores.reshape(-1))))
    return preds


def imported_modules(stderr: str) -> List[str]:
    """Module names from ``python -X importtime`` output on stderr."""
    names = []
    for line in stderr.splitlines():
        if line.startswith("import time:") and "|" in line:
            names.append(line.rsplit("|", 1)[1].strip())
    return names
