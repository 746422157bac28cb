"""Raw output tensors of TFLite models on an eval set, with tflite_runtime (Python 3.9+, numpy 1.x).

Run by the lab tests under two Pythons (the emulated aarch64 Pi and the x86 Pi-like venv) to compare what the
same runtime computes on both architectures, beyond the predicted labels the agent reports:

    cd REPO_ROOT && python -m tests.support.raw_outputs OUT.npz EVAL.npz NAME=MODEL.tflite ...

Run as a module from the repository root (``RAW_OUTPUTS`` and ``REPO_ROOT`` in support.paths), so ``device_agent``
is found on sys.path as the agent itself finds it; support/__init__.py imports nothing, as those Pythons have only
numpy and tflite-runtime.

OUT.npz holds, per model NAME, the raw output tensor for every eval sample (batch 1, one thread, the input
prepared exactly as the device agent does), or ``NAME.error`` with the load error.
"""
import sys

import numpy as np
from tflite_runtime.interpreter import Interpreter

from device_agent.evaldata import prepare_inputs


def outputs(model, x):
    interpreter = Interpreter(model_path=model, num_threads=1)
    interpreter.allocate_tensors()
    in_detail = interpreter.get_input_details()[0]
    out_index = interpreter.get_output_details()[0]["index"]
    prepared = prepare_inputs(x, in_detail)
    rows = []
    for i in range(prepared.shape[0]):
        interpreter.set_tensor(in_detail["index"], prepared[i:i + 1])
        interpreter.invoke()
        rows.append(interpreter.get_tensor(out_index).reshape(-1).copy())
    return np.stack(rows)


def main(argv):
    out, eval_path, models = argv[0], argv[1], argv[2:]
    with np.load(eval_path, allow_pickle=False) as data:
        x = data["x"]
    arrays = {}
    for spec in models:
        name, path = spec.split("=", 1)
        try:
            arrays[name] = outputs(path, x)
        except Exception as exc:  # a model this runtime cannot load is a result too
            arrays[name + ".error"] = np.array(str(exc))
    np.savez(out, **arrays)


if __name__ == "__main__":
    main(sys.argv[1:])
