"""Quantization-aware training (QAT) of a trained tfnas network, exported as int8 TFLite.

tensorflow-model-optimization's `quantize_model` accepts only tf_keras (Keras 2) models, so the
network is rebuilt from its Architecture with the same builder against tf_keras
(`nets.build(arch, backend="tf_keras")`: the same layer names), the trained Keras 3 weights are
copied layer by layer, fake-quantization is inserted (`quantize_model`: int8 weights per
channel, int8 activations with learned ranges) and the network is fine-tuned for a few epochs
at a small learning rate, then converted with the TFLite converter's default optimizations
(int8 weights and activations, float32 input and output). Needs the `qat` extra
(`pip install 'tfnas[qat]'`).
"""

from __future__ import annotations

from typing import Any

from tfnas.errors import TfnasError
from tfnas.space import Architecture


def _modules() -> tuple[Any, Any]:
    try:
        import tensorflow_model_optimization as tfmot
        import tf_keras
    except ImportError:
        raise TfnasError("quantization-aware training needs the qat extra: "
                         "pip install 'tfnas[qat]'") from None
    return tf_keras, tfmot


def tf_keras_copy(model: Any, arch: Architecture) -> Any:
    """The network of `arch` built with tf_keras, carrying `model`'s (Keras 3) weights."""
    from tfnas import nets

    twin = nets.build(arch, backend="tf_keras")
    for layer in twin.layers:
        if not layer.weights:
            continue
        try:
            source = model.get_layer(layer.name)
        except ValueError:
            raise TfnasError(f"the trained model has no layer {layer.name!r}: is it the "
                             "network of this architecture?") from None
        layer.set_weights(source.get_weights())
    return twin


def fine_tune(model: Any, arch: Architecture, dataset: str, *, epochs: int = 2,
              learning_rate: float = 1e-4, batch_size: int = 64, seed: int = 0,
              verbose: bool = True) -> Any:
    """A quantization-aware copy of a trained Keras 3 `model`, fine-tuned on `dataset`."""
    if epochs < 1:
        raise TfnasError(f"QAT needs at least one epoch, got {epochs}")
    from tfnas import data

    tf_keras, tfmot = _modules()
    space = arch.space
    source = data.load_for_space(dataset, space, batch_size=batch_size, seed=seed)
    tf_keras.utils.set_random_seed(seed)
    quantized = tfmot.quantization.keras.quantize_model(tf_keras_copy(model, arch))
    quantized.compile(tf_keras.optimizers.Adam(learning_rate),
                      tf_keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                      metrics=["accuracy"])
    for epoch in range(epochs):  # epoch e sees Data.train(e), as in the trainer
        quantized.fit(source.train(epoch), epochs=1, verbose=2 if verbose else 0)
    return quantized


def to_tflite(quantized: Any, arch: Architecture | None = None) -> bytes:
    """int8 TFLite of a quantization-aware tf_keras model (float32 input and output), with the
    architecture embedded as in `tfnas.deploy.export`."""
    import tensorflow as tf

    from tfnas.deploy.export import convert

    def converter() -> Any:
        converter = tf.lite.TFLiteConverter.from_keras_model(quantized)
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        return converter

    return convert(converter, arch, "TFLite conversion of the QAT model")
