"""TFLite export: float32 agrees with Keras, int8 tracks it, metadata round trip, quiet."""

from __future__ import annotations

import numpy as np
import pytest
from ai_edge_litert.interpreter import Interpreter

from tfnas.deploy import export
from tfnas import nets
from tfnas.errors import TfnasError
from tfnas.space import Architecture, get_space


def _litert_logits(flatbuffer: bytes, images: np.ndarray) -> np.ndarray:
    interpreter = Interpreter(model_content=flatbuffer)
    interpreter.allocate_tensors()
    inp = interpreter.get_input_details()[0]["index"]
    out = interpreter.get_output_details()[0]["index"]
    logits = []
    for image in images:
        interpreter.set_tensor(inp, image[None])
        interpreter.invoke()
        logits.append(interpreter.get_tensor(out)[0].copy())
    return np.stack(logits)


def _op_names(flatbuffer: bytes) -> set[str]:
    interpreter = Interpreter(model_content=flatbuffer)
    return {op["op_name"] for op in interpreter._get_ops_details()}


@pytest.fixture(scope="module")
def cifar_net():
    """A cifar-space network with BN statistics from data, so logits are O(1) as when trained."""
    arch = Architecture.sample(get_space("cifar"), 4)
    model = nets.build(arch)
    nets.recalibrate_batchnorm(model, export.representative_inputs((32, 32, 3), 64, seed=9))
    return arch, model


@pytest.fixture(scope="module")
def cifar_float(cifar_net) -> bytes:
    arch, model = cifar_net
    return export.to_tflite(model, arch=arch)


def test_float32_tflite_agrees_with_keras(cifar_net, cifar_float):
    arch, model = cifar_net
    flatbuffer = cifar_float
    images = export.representative_inputs((32, 32, 3), 20, seed=1)
    ref = np.asarray(model(images, training=False))
    got = _litert_logits(flatbuffer, images)
    assert ref.std() > 0.1  # meaningful logits, not a dead network
    assert np.abs(got - ref).max() < 1e-4
    # frozen graph: weights are constants and batch norm is folded into the convolutions
    assert _op_names(flatbuffer) <= {"CONV_2D", "DEPTHWISE_CONV_2D", "ADD", "MEAN",
                                     "FULLY_CONNECTED"}


def test_float32_tflite_has_the_serving_signature(cifar_net, cifar_float):
    """The frozen function is converted directly (no SavedModel on the way), yet the model
    answers through `serving_default` as a SavedModel-converted one does."""
    _, model = cifar_net
    interpreter = Interpreter(model_content=cifar_float)
    assert interpreter.get_signature_list() == {
        "serving_default": {"inputs": ["image"], "outputs": ["output_0"]}}
    images = export.representative_inputs((32, 32, 3), 1, seed=2)
    got = interpreter.get_signature_runner("serving_default")(image=images)["output_0"]
    assert np.abs(got - np.asarray(model(images, training=False))).max() < 1e-4


def test_conversion_does_not_write_a_saved_model(cifar_net, monkeypatch):
    """(The converter falls back to the direct route when saving fails: record, not raise.)"""
    from tensorflow.python.saved_model import save as saved_model_save

    saves = []
    original = saved_model_save.save_and_return_nodes
    monkeypatch.setattr(saved_model_save, "save_and_return_nodes",
                        lambda *a, **k: saves.append(1) or original(*a, **k))
    arch, model = cifar_net
    flatbuffer = export.to_tflite(model, arch=arch)
    assert not saves
    assert export.read_metadata(flatbuffer, export.METADATA_NAME) == arch.to_json(
        indent=None).encode()


@pytest.mark.e2e
def test_int8_logits_correlate_with_float(cifar_net):
    arch, model = cifar_net
    calibration = export.representative_inputs((32, 32, 3), 100, seed=2)
    flatbuffer = export.to_tflite(model, quantize="int8", arch=arch,
                                  representative_data=calibration)
    images = export.representative_inputs((32, 32, 3), 100, seed=3)  # drawn like calibration
    ref = np.asarray(model(images, training=False))
    got = _litert_logits(flatbuffer, images)
    r = np.corrcoef(got.ravel(), ref.ravel())[0, 1]
    assert r >= 0.9, r
    assert "QUANTIZE" in _op_names(flatbuffer)  # really integer inside, float at the edges
    interpreter = Interpreter(model_content=flatbuffer)
    assert interpreter.get_input_details()[0]["dtype"] == np.float32


@pytest.mark.e2e
def test_dynamic_range_model_is_smaller_and_close(cifar_net, cifar_float):
    arch, model = cifar_net
    float_fb = cifar_float
    dynamic_fb = export.to_tflite(model, quantize="dynamic", arch=arch)
    assert len(dynamic_fb) < 0.4 * len(float_fb)
    images = export.representative_inputs((32, 32, 3), 20, seed=4)
    ref = np.asarray(model(images, training=False))
    r = np.corrcoef(_litert_logits(dynamic_fb, images).ravel(), ref.ravel())[0, 1]
    assert r > 0.95


def test_architecture_metadata_round_trips(tmp_path, cifar_net, cifar_float):
    arch, model = cifar_net
    path = tmp_path / "net.tflite"
    path.write_bytes(cifar_float)
    assert export.read_architecture(path) == arch
    # a model exported without an architecture says so, and metadata can be replaced
    bare = export.to_tflite(model, quantize="dynamic")
    assert export.read_metadata(bare, export.METADATA_NAME) is None
    other = Architecture.sample(arch.space, 99)
    replaced = export.embed_metadata(path.read_bytes(), export.METADATA_NAME,
                                     other.to_json().encode())
    path.write_bytes(replaced)
    assert export.read_architecture(path) == other


@pytest.mark.e2e
def test_conversion_output_is_kept_off_the_console(capfd, cifar_net):
    arch, model = cifar_net
    export.to_tflite(model, arch=arch)
    out, err = capfd.readouterr()
    assert "Saved artifact" not in out + err
    assert out == "" and err == ""


def test_bad_inputs_are_clear_errors(tmp_path, cifar_net):
    _, model = cifar_net
    with pytest.raises(TfnasError, match="unknown quantization"):
        export.to_tflite(model, quantize="int4")
    with pytest.raises(TfnasError, match="representative data"):
        export.to_tflite(model, quantize="int8")
    with pytest.raises(TfnasError, match="does not exist"):
        export.read_architecture(tmp_path / "missing.tflite")
    junk = tmp_path / "junk.tflite"
    junk.write_bytes(b"\x00\x10\x00\x00TFL3" + b"\xff" * 40)  # root table out of range
    with pytest.raises(TfnasError, match="bad flatbuffer"):
        export.read_architecture(junk)


def test_an_architecture_that_is_not_the_models_is_refused(cifar_net):
    """Issue 18, defect 4: export embedded any --arch given beside --model (12,666 params for
    a 32,178-param model) and read_architecture then described another network."""
    arch, model = cifar_net
    export.check_matches(model, arch, "model.keras", "arch.json")  # its own: accepted
    other = Architecture.sample(get_space("cifar"), 5)
    assert other.params() != arch.params()
    with pytest.raises(TfnasError, match=r"model.keras is not the network other.json describes "
                                         r"\([\d,]+ weights against [\d,]+\)"):
        export.check_matches(model, other, "model.keras", "other.json")
    with pytest.raises(TfnasError, match=r"takes inputs \(32, 32, 3\)"):
        export.check_matches(model, Architecture.sample(get_space("tiny"), 0), "m", "a")


@pytest.mark.slow  # 1 min
def test_single_path_at_224_float_and_int8_fidelity():
    """The flagship space at full size: float32 within 1e-4, int8 r >= 0.9 over 100 inputs."""
    arch = Architecture.sample(get_space("single_path"), 0)
    model = nets.build(arch)
    shape = (224, 224, 3)
    nets.recalibrate_batchnorm(model, export.representative_inputs(shape, 16, seed=8))
    images = export.representative_inputs(shape, 100, seed=6)
    ref = np.asarray(model.predict(images, batch_size=25, verbose=0))
    float_logits = _litert_logits(export.to_tflite(model, arch=arch), images)
    assert np.abs(float_logits - ref).max() < 1e-4
    int8 = export.to_tflite(model, quantize="int8", arch=arch,
                            representative_data=export.representative_inputs(shape, 100))
    r = np.corrcoef(_litert_logits(int8, images).ravel(), ref.ravel())[0, 1]
    assert r >= 0.9, r
