"""TFLite export of tfnas networks: float32, dynamic-range and full-integer int8.

The architecture JSON is embedded in the .tflite file's metadata table (the flatbuffer
`Model.metadata` list, entry `tfnas_architecture`), so a model file says what it is; read it
back with `read_architecture`. Metadata is written with the LiteRT flatbuffer tools, not
tflite-support (its last release requires protobuf < 4, TensorFlow 2.21 protobuf >= 6.31).

Quantization modes (TFLite post-training quantization guide):
- `none`: float32 weights and activations.
- `dynamic`: int8 weights, float activations quantized on the fly.
- `int8`: int8 weights and activations calibrated on representative data; float32 input and
  output tensors (the model quantizes at its edges), so it is a drop-in for the float model.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Iterable

import numpy as np

from tfnas.errors import TfnasError
from tfnas.latency.devices import read_model_file
from tfnas.quiet import captured_output
from tfnas.space import Architecture, SearchSpace

METADATA_NAME = "tfnas_architecture"
QUANTIZE_MODES = ("none", "dynamic", "int8")


def representative_inputs(shape: tuple[int, ...], count: int = 100, seed: int = 0) -> np.ndarray:
    """`count` random images of `shape` (H, W, C), uniform in [-1, 1] like normalised inputs."""
    rng = np.random.default_rng(seed)
    return rng.uniform(-1.0, 1.0, size=(count, *shape)).astype(np.float32)


def calibration_images(dataset: str, space: SearchSpace, count: int = 100,
                       seed: int = 0) -> list[np.ndarray]:
    """`count` training images of `dataset` (a `--dataset` spec), sized for `space`: int8
    calibration on real inputs rather than `representative_inputs`."""
    from tfnas import data

    source = data.load_for_space(dataset, space, batch_size=1, seed=seed)
    return [image.numpy() for image, _ in source.train(0).unbatch().take(count)]


def to_tflite(model: Any, *, quantize: str = "none",
              representative_data: Iterable[np.ndarray] | None = None,
              arch: Architecture | None = None) -> bytes:
    """Converts a Keras model (batch 1) to a .tflite flatbuffer, with `arch` as metadata.

    `representative_data` (required for int8) yields single images of the model's input shape;
    around 100 are enough for calibration.
    """
    import tensorflow as tf

    if quantize not in QUANTIZE_MODES:
        raise TfnasError(f"unknown quantization {quantize!r}: choose {', '.join(QUANTIZE_MODES)}")
    if quantize == "int8" and representative_data is None:
        raise TfnasError("int8 quantization needs representative data")
    from tensorflow.python.framework.convert_to_constants import (
        convert_variables_to_constants_v2)

    shape = tuple(model.inputs[0].shape[1:])
    forward = tf.function(lambda x: model(x, training=False),
                          input_signature=[tf.TensorSpec((1, *shape), tf.float32, "image")])
    # Freeze first: converting Keras 3 variables directly leaves VAR_HANDLE/READ_VARIABLE ops
    # and unfolded batch norms in the .tflite (about 10x slower). The frozen function is
    # converted as it is, not lowered to a SavedModel first (the converter's default, and
    # `from_keras_model`'s way): the same operators and outputs, in a fifth of the time
    # (0.8 s against 4.4 s for a `tiny` network); `convert` adds the signature that the
    # SavedModel route would have given (serving_default: image -> output_0).
    samples = None
    if quantize == "int8":
        samples = [np.asarray(x, np.float32).reshape((1, *shape)) for x in representative_data]
    def converter() -> Any:
        frozen = convert_variables_to_constants_v2(forward.get_concrete_function())
        converter = tf.lite.TFLiteConverter.from_concrete_functions([frozen], model)
        converter.experimental_lower_to_saved_model = False
        if quantize in ("dynamic", "int8"):
            converter.optimizations = [tf.lite.Optimize.DEFAULT]
        if samples is not None:
            converter.representative_dataset = _as_generator(samples)
            converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        return converter

    return convert(converter, arch)


def convert(make_converter: Callable[[], Any], arch: Architecture | None = None,
            what: str = "TFLite conversion") -> bytes:
    """Runs the TFLiteConverter `make_converter()` returns with the console output of both
    (freezing and conversion log to fd 2) captured, gives a model without signatures the
    `serving_default` one, then embeds `arch`; a failure is one TfnasError with the tail of
    what they logged."""
    failure = None
    with captured_output() as log:
        try:
            flatbuffer = make_converter().convert()
        except Exception as err:  # the converter raises many types; show the log it wrote
            failure = err
    if failure is not None:
        raise TfnasError(f"{what} failed: {failure}\n{log.tail()}")
    return _finish(flatbuffer, arch)


def _finish(flatbuffer: bytes, arch: Architecture | None) -> bytes:
    """The model with a `serving_default` signature (input `image`, outputs `output_0`, ...)
    unless it has one, and `arch` as metadata."""
    from ai_edge_litert import schema_py_generated as schema
    from ai_edge_litert.tools import flatbuffer_utils

    model = flatbuffer_utils.read_model_from_bytearray(bytearray(flatbuffer))
    if not model.signatureDefs:
        graph = model.subgraphs[0]

        def tensors(indices: Any, names: list[str]) -> list[Any]:
            return [schema.TensorMapT(name=name, tensorIndex=int(index))
                    for name, index in zip(names, indices)]

        signature = schema.SignatureDefT(signatureKey="serving_default", subgraphIndex=0)
        count = len(graph.inputs)
        signature.inputs = tensors(graph.inputs, ["image"] if count == 1 else
                                   [f"image_{i}" for i in range(count)])
        signature.outputs = tensors(graph.outputs,
                                    [f"output_{i}" for i in range(len(graph.outputs))])
        model.signatureDefs = [signature]
    if arch is not None:
        _set_metadata(model, METADATA_NAME, arch.to_json(indent=None).encode())
    return bytes(flatbuffer_utils.convert_object_to_bytearray(model))


def _as_generator(samples: list[np.ndarray]) -> Callable[[], Iterable[list[np.ndarray]]]:
    def generate() -> Iterable[list[np.ndarray]]:
        for sample in samples:
            yield [sample]
    return generate


def embed_metadata(flatbuffer: bytes, name: str, payload: bytes) -> bytes:
    """Returns the model with metadata entry `name` set to `payload` (replacing an old one)."""
    from ai_edge_litert.tools import flatbuffer_utils

    model = flatbuffer_utils.read_model_from_bytearray(bytearray(flatbuffer))
    _set_metadata(model, name, payload)
    return bytes(flatbuffer_utils.convert_object_to_bytearray(model))


def _set_metadata(model: Any, name: str, payload: bytes) -> None:
    """Sets metadata entry `name` of a flatbuffer object model (`ModelT`) to `payload`."""
    from ai_edge_litert import schema_py_generated as schema

    model.buffers.append(schema.BufferT(data=np.frombuffer(payload, np.uint8).copy()))
    entry = schema.MetadataT(name=name, buffer=len(model.buffers) - 1)
    model.metadata = [m for m in (model.metadata or []) if _text(m.name) != name] + [entry]


def read_metadata(flatbuffer: bytes, name: str) -> bytes | None:
    """The payload of metadata entry `name`, or None when the model has none."""
    from ai_edge_litert import schema_py_generated as schema

    try:
        model = schema.Model.GetRootAs(flatbuffer, 0)
        for i in range(model.MetadataLength()):
            entry = model.Metadata(i)
            if _text(entry.Name()) == name:
                buffer = model.Buffers(entry.Buffer())
                if buffer.Offset():
                    return bytes(flatbuffer[buffer.Offset():buffer.Offset() + buffer.Size()])
                return buffer.DataAsNumpy().tobytes()
    except Exception:  # a truncated or foreign flatbuffer fails anywhere in the accessors
        raise TfnasError("not a readable .tflite model (bad flatbuffer)") from None
    return None


def check_matches(model: Any, arch: Architecture, model_name: str, arch_name: str) -> None:
    """One TfnasError unless `model` is the network of `arch` (input shape and every weight's
    shape, as `tfnas.nets.build` makes it): an export must not embed another network's
    architecture."""
    from tfnas import nets

    expected = (arch.space.input_size, arch.space.input_size, arch.space.input_channels)
    if tuple(model.inputs[0].shape[1:]) != expected:
        raise TfnasError(f"{model_name} takes inputs {tuple(model.inputs[0].shape[1:])} but "
                         f"{arch_name} describes a network for {expected}")
    built = nets.build(arch)
    shapes = [tuple(w.shape) for w in built.weights]
    if [tuple(w.shape) for w in model.weights] != shapes:
        count = sum(int(np.prod(s)) for s in shapes)
        mine = int(sum(int(np.prod(w.shape)) for w in model.weights))
        raise TfnasError(f"{model_name} is not the network {arch_name} describes ({mine:,} "
                         f"weights against {count:,}): give the arch.json it was trained from")


def read_architecture(path: str | Path) -> Any:
    """The architecture (`Architecture` or `CellArchitecture`) embedded in a .tflite file by
    `to_tflite`, or None."""
    from tfnas.space import architecture_from_json

    payload = read_metadata(read_model_file(path), METADATA_NAME)
    return None if payload is None else architecture_from_json(payload.decode())


def _text(value: bytes | str | None) -> str | None:
    return value.decode() if isinstance(value, bytes) else value
