"""The check's XNNPACK table against the real delegate: ai-edge-litert's interpreter applies XNNPACK by default,
and the ops it leaves outside DELEGATE nodes (read as device_agent.opprofile reads them) must be the check's
``fallback``, the ops inside its ``xnnpack_ops``, on the purpose-built graphs and on the imported-file zoo.
"""
from __future__ import annotations

from typing import Dict, Tuple

import pytest

from device_agent.opprofile import delegation
from edgeprune.explain import explain_bytes

from .test_explain_graphs import GRAPHS, graph


def real_delegate(blob: bytes) -> Tuple[Dict[str, int], Dict[str, int]]:
    """(ops inside XNNPACK partitions, ops left to the CPU kernels) as the interpreter shows them."""
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_content=blob)
    interpreter.allocate_tensors()
    seen = delegation(interpreter)
    assert seen is not None, "the interpreter has no _get_ops_details"
    return seen["delegated"], seen["fallback"] if seen["applied"] else seen["cpu"]


def checked(blob: bytes, label: str) -> Tuple[Dict[str, int], Dict[str, int]]:
    explanation = explain_bytes(blob, label)
    left: Dict[str, int] = {}
    for item in explanation.fallback:
        left[item["op"]] = left.get(item["op"], 0) + item["count"]
    return explanation.xnnpack_ops, left


@pytest.mark.parametrize("name", sorted(GRAPHS))
def test_the_check_matches_the_delegate_on_built_graphs(name: str) -> None:
    assert checked(graph(name), name) == real_delegate(graph(name))


def test_an_int8_softmax_falls_back_in_both() -> None:
    """The one built graph where XNNPACK leaves an op: the check must say so, and the delegate must agree."""
    taken, left = real_delegate(graph("int8_softmax"))
    assert left == {"SOFTMAX": 1} and "SOFTMAX" not in taken
    assert checked(graph("int8_softmax"), "int8_softmax") == (taken, left)


#: Zoo models an interpreter can load (custom_op and mediapipe_op cannot: their custom ops are not registered).
ZOO = ("multi_io", "int8_input", "uint8_input", "dynamic", "mixed_dtypes", "small_vocab", "string_input",
       "cumsum_fallback")


@pytest.mark.parametrize("name", ZOO)
def test_the_check_matches_the_delegate_on_imported_files(name: str) -> None:
    from support.tflite_zoo import zoo_dir

    blob = (zoo_dir() / f"{name}.tflite").read_bytes()
    mine, real = checked(blob, name), real_delegate(blob)
    assert mine == real
    if name in ("cumsum_fallback", "mixed_dtypes", "string_input", "uint8_input"):
        assert real[1], "this file was chosen because something falls back"


def test_custom_ops_fall_back_unless_xnnpack_implements_them() -> None:
    from support.tflite_zoo import zoo_dir

    custom = explain_bytes((zoo_dir() / "custom_op.tflite").read_bytes(), "custom_op")
    assert {"op": "Erfc", "count": 1, "why": "custom op: XNNPACK has no kernel for it"} in custom.fallback
    # MediaPipe's name on Erfc's single input: XNNPACK implements the op but refuses this node (1 input, not 3)
    mediapipe = explain_bytes((zoo_dir() / "mediapipe_op.tflite").read_bytes(), "mediapipe_op")
    assert mediapipe.fallback == [{"op": "Convolution2DTransposeBias", "count": 1,
                                   "why": "1 inputs and 1 outputs (XNNPACK's Convolution2DTransposeBias takes 3 and 1)"}]
