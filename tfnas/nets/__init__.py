"""Standalone networks from an Architecture, built from standard Keras layers only (rule 4);
networks of DARTS cells (a `CellArchitecture`) are built by `tfnas.nets.cells`.

The same builder runs against Keras 3 (`backend="keras"`) and against `tf_keras`
(`backend="tf_keras"`, extra `qat`), because tensorflow-model-optimization's `quantize_model`
only accepts tf_keras models. Layer names are deterministic, so weights can be copied by name
from one build to the other. Each layer's op is built by its family module (`tfnas.blocks`).
"""

from __future__ import annotations

from types import ModuleType
from typing import Any, Callable

from tfnas.blocks import family
from tfnas.blocks.common import check_dropout, conv_bn, keras_module
from tfnas.nets import cells
from tfnas.space import Architecture, LayerSignature, SearchSpace
from tfnas.space.cells import CellArchitecture


def block(x: Any, k: ModuleType, sig: LayerSignature, name: str, sync_bn: bool = False) -> Any:
    """The op that `sig` describes (with its shortcut), applied to `x`."""
    return family(sig.op).build(x, k, sig, name, sync_bn)


def stem(inputs: Any, k: ModuleType, space: SearchSpace, sync_bn: bool = False) -> Any:
    """Stem conv and the fixed first layer: the part before the searchable layers."""
    x = conv_bn(inputs, k, space.stem_channels, 3, space.stem_stride, "stem", sync_bn=sync_bn)
    if space.first_layer is not None:
        x = block(x, k, space.first_layer, "first", sync_bn)
    return x


def head(x: Any, k: ModuleType, space: SearchSpace, dropout: float,
         sync_bn: bool = False) -> Any:
    """The fixed last layer, 1x1 conv, pooling, dropout and the classifier: the part after the
    searchable layers."""
    if space.last_layer is not None:
        x = block(x, k, space.last_layer, "last", sync_bn)
    x = conv_bn(x, k, space.head_channels, 1, 1, "head", sync_bn=sync_bn)
    x = k.layers.GlobalAveragePooling2D(name="pool")(x)
    if dropout > 0:
        x = k.layers.Dropout(dropout, name="dropout")(x)
    return k.layers.Dense(space.num_classes, name="logits")(x)


def image_input(k: ModuleType, space: SearchSpace) -> Any:
    return k.Input((space.input_size, space.input_size, space.input_channels), name="image")


def build(arch: Architecture | CellArchitecture, *, dropout: float = 0.2,
          backend: str = "keras", name: str | None = None, drop_path: bool = False) -> Any:
    """A functional model taking [B, H, W, C] float images and returning logits (a cell
    network with the auxiliary head: and the auxiliary logits; `drop_path`: a cell network's
    training network, `tfnas.nets.cells`)."""
    if isinstance(arch, CellArchitecture):
        return cells.build(arch, dropout=dropout, backend=backend, name=name,
                           drop_path=drop_path)
    if drop_path:
        raise ValueError("drop-path is for networks of DARTS cells")
    check_dropout(dropout)
    k = keras_module(backend)
    space = arch.space
    inputs = image_input(k, space)
    x = stem(inputs, k, space)
    for i, sig in enumerate(arch.signatures()):
        x = block(x, k, sig, f"layer{i:02d}")
    outputs = head(x, k, space, dropout)
    return k.Model(inputs, outputs, name=name or f"tfnas_{space.name}")


def batchnorm_recalibrator(model: Any) -> Callable[[Any], None]:
    """`recalibrate_batchnorm(model, images)` for repeated use: the pass compiled once (the
    momenta are 0 while it is traced, so the graph holds 0) instead of run eagerly each time,
    which costs about half a second on a small supernet."""
    import tensorflow as tf

    compiled = tf.function(lambda images: model(images, training=True), autograph=False)
    return lambda images: recalibrate_batchnorm(model, images, compiled)


def recalibrate_batchnorm(model: Any, images: Any,
                          forward: Callable[[Any], Any] | None = None) -> None:
    """Sets every BatchNormalization's moving mean/variance to the statistics of `images`.

    One forward pass in training mode with momentum 0, so each layer sees inputs normalised by
    the already-recalibrated layers before it (the BN recalibration that Once-for-All / BigNAS
    apply to sub-networks). Gives a freshly built or derived network realistic activations.
    """
    layers = (model._flatten_layers(include_self=False) if hasattr(model, "_flatten_layers")
              else model.layers)  # nested layers too (the supernet's searchable blocks)
    # (and a gathered mixed op's stacked norms, `tfnas.search.layers.gathered`)
    norms = [layer for layer in layers
             if type(layer).__name__ in ("BatchNormalization", "GatheredMBConv")]
    saved = [layer.momentum for layer in norms]
    try:
        for layer in norms:
            layer.momentum = 0.0
        (forward or (lambda x: model(x, training=True)))(images)
    finally:
        for layer, momentum in zip(norms, saved):
            layer.momentum = momentum
