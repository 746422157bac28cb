"""Purpose-built .tflite graphs for the "why not faster" check: one eligible for XNNPACK's sparse path, and one per
rule that breaks exactly that rule (issue 16). Built with TensorFlow once per session (``graph(name)`` caches
the bytes), tiny (32x32x3 inputs) so the whole set converts in seconds. The shared test helpers of the
explain tests live here too; the one test of this module checks the builders do what the others assume.
"""
from __future__ import annotations

import functools
from typing import Any, Callable, Dict, Tuple

import numpy as np

SEED = 16
#: name -> (builder keyword arguments, conversion): what each graph is and the rule it breaks.
GRAPHS: Dict[str, Tuple[Dict[str, Any], str]] = {
    "eligible": ({}, "sparse"),
    "dense_head": ({"head_zeros": 0.0, "zeros": 0.75}, "sparse"),  # eligible; not if the dense Dense counts
    "dense_stored": ({}, "float"),                           # weights stored dense
    "stem_1ch": ({"channels": 1}, "sparse"),                 # first op on 1 channel
    "stem_5x5": ({"stem": 5}, "sparse"),                     # first op 5x5
    "stem_same": ({"stem_padding": "same"}, "sparse"),       # SAME padding with stride 2
    "stem_mnv2": ({"stem_padding": ((0, 1), (0, 1))}, "sparse"),  # MobileNetV2's correct_pad: the converter
    "stem_asym": ({"stem_padding": ((1, 0), (1, 0))}, "sparse"),  # makes it SAME; this one stays PAD (1, 0)
    "maxpool_head": ({"head": "maxpool"}, "sparse"),         # MaxPooling2D + Flatten instead of a global mean
    "flatten_head": ({"head": "flatten"}, "sparse"),         # Flatten instead of a global mean
    "mid_conv3x3": ({"middle": "conv3x3"}, "sparse"),        # a 3x3 stride-1 conv between stem and mean
    "zeros40": ({"zeros": 0.4}, "sparse"),                   # 40% of the 1x1 weights zero
    "int8": ({}, "int8"),                                    # full-integer
    "int8_softmax": ({"softmax": True}, "int8"),             # full-integer with an int8 SOFTMAX (falls back)
    "dynamic_range": ({}, "dynamic"),                        # int8 weights, float activations
    "float16": ({}, "float16"),                              # float16 weights behind DEQUANTIZE
}


def _tf() -> Tuple[Any, Any]:
    from edgeprune.optimize._tf import load

    return load()


def zero_exactly(weights: np.ndarray, share: float, rng: np.random.Generator) -> np.ndarray:
    """``weights`` with exactly round(share * size) entries set to zero, the others made non-zero."""
    flat = weights.reshape(-1).copy()
    flat[flat == 0] = 0.5
    flat[rng.permutation(flat.size)[:round(share * flat.size)]] = 0.0
    return flat.reshape(weights.shape)


def build_model(channels: int = 3, stem: int = 3, stem_padding: Any = "zero", head: str = "gap",
                middle: str = "", zeros: float = 0.9, head_zeros: float = 0.9, softmax: bool = False) -> Any:
    """A MobileNet-like Keras model: stem, depthwise + 1x1 blocks, head; the 1x1 kernels ``zeros`` zero."""
    _, keras = _tf()
    layers = keras.layers
    keras.utils.set_random_seed(SEED)
    inputs = layers.Input((32, 32, channels))
    if stem_padding == "same":
        x = layers.Conv2D(16, stem, strides=2, padding="same")(inputs)
    else:
        pad = stem // 2 if stem_padding == "zero" else stem_padding
        x = layers.Conv2D(16, stem, strides=2, padding="valid")(layers.ZeroPadding2D(pad)(inputs))
    x = layers.ReLU(6.0)(x)
    x = layers.ReLU(6.0)(layers.DepthwiseConv2D(3, padding="same")(x))
    x = layers.ReLU(6.0)(layers.Conv2D(32, 1)(x))
    if middle == "conv3x3":
        x = layers.ReLU(6.0)(layers.Conv2D(32, 3, padding="same")(x))
    x = layers.ReLU(6.0)(layers.DepthwiseConv2D(3, strides=2, padding="valid")(layers.ZeroPadding2D(1)(x)))
    x = layers.ReLU(6.0)(layers.Conv2D(64, 1)(x))
    if head == "gap":
        x = layers.GlobalAveragePooling2D()(x)
    elif head == "maxpool":
        x = layers.Flatten()(layers.MaxPooling2D()(x))
    else:
        x = layers.Flatten()(x)
    outputs = layers.Dense(10, activation="softmax" if softmax else None)(x)
    model = keras.Model(inputs, outputs)
    rng = np.random.default_rng(SEED)
    for layer in model.layers:
        if isinstance(layer, layers.Conv2D) and not isinstance(layer, layers.DepthwiseConv2D) \
                and layer.kernel_size == (1, 1):
            kernel, bias = layer.get_weights()
            layer.set_weights([zero_exactly(kernel, zeros, rng), bias])
        elif isinstance(layer, layers.Dense) and head_zeros:
            kernel, bias = layer.get_weights()
            layer.set_weights([zero_exactly(kernel, head_zeros, rng), bias])
    return model


def one_by_one_zeros(model: Any) -> Tuple[int, int]:
    """(zeros, weights) over the Keras model's 1x1 Conv2D kernels: what the check must find in the file."""
    _, keras = _tf()
    kernels = [layer.get_weights()[0] for layer in model.layers
               if isinstance(layer, keras.layers.Conv2D) and not isinstance(layer, keras.layers.DepthwiseConv2D)
               and layer.kernel_size == (1, 1)]
    return sum(int((k == 0).sum()) for k in kernels), sum(k.size for k in kernels)


def convert(model: Any, how: str) -> bytes:
    tf, _ = _tf()
    converter = tf.lite.TFLiteConverter.from_keras_model(model)
    if how == "sparse":
        converter.optimizations = [tf.lite.Optimize.EXPERIMENTAL_SPARSITY]
    elif how == "dynamic":
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
    elif how == "float16":
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.target_spec.supported_types = [tf.float16]
    elif how == "int8":
        rng = np.random.default_rng(SEED)
        shape = (1,) + tuple(model.input_shape[1:])
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.representative_dataset = lambda: ([rng.random(shape, dtype=np.float32)] for _ in range(8))
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        converter.inference_input_type = tf.int8
        converter.inference_output_type = tf.int8
    return bytes(converter.convert())


@functools.lru_cache(maxsize=None)
def model(name: str) -> Any:
    return build_model(**GRAPHS[name][0])


@functools.lru_cache(maxsize=None)
def graph(name: str) -> bytes:
    """The named graph's .tflite bytes (built on first use in this session)."""
    return convert(model(name), GRAPHS[name][1])


def rewrite(blob: bytes, change: Callable[[Any], None]) -> bytes:
    """``blob`` rewritten through the LiteRT schema's object API after ``change(model)`` edits it."""
    import flatbuffers
    from ai_edge_litert import schema_py_generated as schema

    parsed = schema.ModelT.InitFromPackedBuf(bytearray(blob), 0)
    change(parsed)
    builder = flatbuffers.Builder(1024)
    builder.Finish(parsed.Pack(builder), file_identifier=b"TFL3")
    return bytes(builder.Output())


def test_builders_make_what_the_rules_need() -> None:
    """The eligible graph stores its 1x1 weights sparse (DENSIFY) and the dense one does not; zeros are exact."""
    from ai_edge_litert import schema_py_generated as schema

    def densify_count(blob: bytes) -> int:
        parsed = schema.ModelT.InitFromPackedBuf(bytearray(blob), 0)
        codes = [c.builtinCode for c in parsed.operatorCodes]
        return sum(1 for op in parsed.subgraphs[0].operators
                   if codes[op.opcodeIndex] == schema.BuiltinOperator.DENSIFY)

    assert densify_count(graph("eligible")) >= 2
    assert densify_count(graph("dense_stored")) == 0
    assert one_by_one_zeros(model("zeros40")) == (round(0.4 * 512) + round(0.4 * 2048), 512 + 2048)
