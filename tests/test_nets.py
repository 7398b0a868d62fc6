"""Standalone networks: exact params / FLOPs, shapes, tf_keras twin, BN recalibration."""

from __future__ import annotations

import keras
import numpy as np
import pytest

from conftest import flops_from_model
from tfnas import nets
from tfnas.blocks.common import BN_MOMENTUM
from tfnas.errors import TfnasError
from tfnas.space import PRESET_NAMES, Architecture, get_space


@pytest.mark.parametrize("name", PRESET_NAMES)
def test_params_and_flops_match_the_built_model_exactly(name):
    space = get_space(name)
    for seed in (0, 1):
        arch = Architecture.sample(space, seed)
        model = nets.build(arch)
        assert arch.params() == model.count_params()
        assert arch.flops() == flops_from_model(model)
        assert model.output.shape[1:] == (space.num_classes,)


@pytest.mark.parametrize("name", ["tiny", "fashion"])
def test_squeeze_excite_params_and_flops_match_the_built_model_exactly(name):
    space = get_space(name, squeeze_excite=(False, True))
    assert sum(op.se for op in space.ops) == len(space.kernels) * len(space.expansions)
    for seed in (0, 1, 2):
        arch = Architecture.sample(space, seed)
        model = nets.build(arch)
        assert arch.params() == model.count_params()
        assert arch.flops() == flops_from_model(model)
    every = Architecture.uniform(space, "mbconv_k3_e6_se")
    plain = Architecture.uniform(space, "mbconv_k3_e6")
    assert every.params() > plain.params() and every.flops() > plain.flops()


def test_single_path_mobilenetv2_like_params_exactly():
    arch = Architecture.uniform(get_space("single_path"), "mbconv_k3_e6")
    model = nets.build(arch)
    assert model.count_params() == arch.params() == 4_733_448


def test_skip_layers_add_no_weights_and_derived_nets_use_standard_layers_only():
    arch = Architecture.sample(get_space("tiny"), 5)
    model = nets.build(arch)
    allowed = {"InputLayer", "Conv2D", "DepthwiseConv2D", "BatchNormalization", "ReLU", "Add",
               "GlobalAveragePooling2D", "Dropout", "Dense"}
    assert {type(layer).__name__ for layer in model.layers} <= allowed


def test_tf_keras_build_has_the_same_layers_and_params():
    pytest.importorskip("tf_keras")
    arch = Architecture.sample(get_space("cifar"), 2)
    k3 = nets.build(arch)
    k2 = nets.build(arch, backend="tf_keras")
    assert k2.count_params() == k3.count_params() == arch.params()
    assert [layer.name for layer in k2.layers] == [layer.name for layer in k3.layers]
    assert type(k2).__module__.startswith("tf_keras")


def test_unknown_backend_and_bad_dropout():
    arch = Architecture.sample(get_space("tiny"), 0)
    with pytest.raises(TfnasError, match="unknown Keras backend"):
        nets.build(arch, backend="torch")
    with pytest.raises(TfnasError, match="dropout"):
        nets.build(arch, dropout=1.5)


def test_recalibrated_batchnorm_normalises_activations():
    arch = Architecture.uniform(get_space("tiny"), "mbconv_k3_e6")
    model = nets.build(arch, dropout=0.0)
    images = np.random.default_rng(0).uniform(-1, 1, (64, 16, 16, 3)).astype(np.float32)
    nets.recalibrate_batchnorm(model, images)
    probe = keras.Model(model.input, model.get_layer("head_bn").output)
    out = np.asarray(probe(images, training=False))
    # inference-mode BN now uses the batch statistics: per-channel mean 0, variance 1
    assert np.allclose(out.mean(axis=(0, 1, 2)), 0.0, atol=1e-3)
    assert np.allclose(out.var(axis=(0, 1, 2)), 1.0, atol=2e-2)
    assert all(layer.momentum == BN_MOMENTUM for layer in model.layers
               if isinstance(layer, keras.layers.BatchNormalization))
