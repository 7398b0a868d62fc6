"""SearchSpace, Op, Architecture and LayerSignature: presets, JSON, encodings, counting."""

from __future__ import annotations

import json

import numpy as np
import pytest

from tfnas.errors import TfnasError
from tfnas.space import (PRESET_NAMES, SKIP, Architecture, LayerSignature, Op, get_space,
                         make_divisible)


def test_single_path_preset_matches_the_authors_space():
    """22 MBConv layers, of which the first (MBConv3x3-e1, 32 → 16 at 112x112) and the last
    (MBConv3x3-e6, 192 → 320 at 7x7) are fixed, as in the Single-Path NAS authors' code."""
    space = get_space("single_path")
    assert space.num_layers == 20
    assert space.input_size == 224 and space.num_classes == 1000
    assert [op.name for op in space.ops] == [
        "mbconv_k3_e3", "mbconv_k3_e6", "mbconv_k5_e3", "mbconv_k5_e6", "skip"]
    skippable = [i for i in range(20) if SKIP in space.candidates(i)]
    # the first layer of every stage changes shape; the other three of each 4-layer stage can skip
    assert skippable == [1, 2, 3, 5, 6, 7, 9, 10, 11, 13, 14, 15, 17, 18, 19]
    assert space.first_layer == LayerSignature(112, 112, 32, 16, 1, Op(3, 1))
    assert space.layers[0].c_in == 16 and space.layers[0].stride == 2
    assert space.layers[-1].c_out == 192 and space.final_size == 7
    assert space.last_layer == LayerSignature(7, 7, 192, 320, 1, Op(3, 6))
    assert space.head_input_channels == 320


def test_proxyless_space_has_7x7_kernels_and_a_fixed_first_layer():
    space = get_space("proxyless_mobile")
    assert {op.kernel for op in space.ops if not op.is_skip} == {3, 5, 7}
    assert space.first_layer == LayerSignature(112, 112, 32, 16, 1, Op(3, 1))
    assert space.num_layers == 21


@pytest.mark.parametrize("text,expected", [
    ("mbconv_k5_e6", Op(5, 6)), ("MBConv5x5-e6", Op(5, 6)), ("MBCONV_K3_E3", Op(3, 3)),
    ("skip", SKIP), ("Skip", SKIP), ("mbconv_k5_e3_se", Op(5, 3, True)),
    ("MBConv3x3-e6-SE", Op(3, 6, True))])
def test_op_parse_accepts_names_and_labels(text, expected):
    assert Op.parse(text) == expected
    assert Op.parse(expected.label) == expected == Op.parse(expected.name)


@pytest.mark.parametrize("text", ["conv3x3", "mbconv_k4_e6", "MBConv3x5-e6", "", "mbconv_k3_e0",
                                  "mbconv_k3_e6_sq", "skip_se"])
def test_op_parse_rejects_unknown_ops(text):
    with pytest.raises(TfnasError):
        Op.parse(text)


def test_unknown_preset_names_the_choices():
    with pytest.raises(TfnasError, match="single_path, proxyless_mobile, cifar, tiny"):
        get_space("mobilenet")


@pytest.mark.parametrize("name", PRESET_NAMES)
def test_random_architectures_round_trip_through_json(name):
    space = get_space(name)
    for seed in range(10):
        arch = Architecture.sample(space, seed)
        again = Architecture.from_json(arch.to_json())
        assert again == arch
        assert again.space == space and again.ops == arch.ops
        assert json.loads(again.to_json()) == json.loads(arch.to_json())


def test_squeeze_excite_choices_survive_json_and_default_files_do_not_change():
    plain = get_space("tiny")
    assert "squeeze_excite" not in plain.to_dict()  # files written before SE read the same
    searched = get_space("tiny", squeeze_excite=(True, False))
    assert searched.squeeze_excite == (False, True)
    assert [op.name for op in searched.ops[:2]] == ["mbconv_k3_e3", "mbconv_k3_e3_se"]
    arch = Architecture.sample(searched, 4)
    assert Architecture.from_json(arch.to_json()) == arch
    assert any(op.se for op in Architecture.sample(searched, 1).ops + arch.ops)
    with pytest.raises(TfnasError, match="squeeze_excite lists booleans"):
        get_space("tiny", squeeze_excite=("yes",))


def test_width_multiplier_survives_json_and_rounds_channels():
    space = get_space("single_path", width_multiplier=0.35)
    arch = Architecture.sample(space, 0)
    assert Architecture.from_json(arch.to_json()).space.width_multiplier == 0.35
    assert space.stem_channels == make_divisible(32 * 0.35) == 16
    assert space.head_channels == 1280  # MobileNetV2 keeps the head below multiplier 1


def test_sampling_is_seeded_and_covers_every_candidate():
    space = get_space("single_path")
    assert Architecture.sample(space, 7) == Architecture.sample(space, 7)
    samples = [Architecture.sample(space, s) for s in range(200)]
    assert len(set(samples)) == 200
    for i in range(space.num_layers):
        seen = {arch.ops[i] for arch in samples}
        assert seen == set(space.candidates(i))  # every allowed op drawn, nothing else


def test_one_hot_encoding_round_trips():
    space = get_space("single_path")
    arch = Architecture.sample(space, 3)
    enc = arch.one_hot()
    assert enc.shape == (20, 5) and enc.dtype == np.float32
    assert np.all(enc.sum(axis=1) == 1)
    assert Architecture.from_one_hot(space, enc) == arch
    with pytest.raises(TfnasError, match="shape"):
        Architecture.from_one_hot(space, enc[:, :4])


@pytest.mark.parametrize("mutate,message", [
    (lambda d: d.update(ops=d["ops"][:-1]), "19 ops but space 'single_path' has 20"),
    (lambda d: d["ops"].__setitem__(0, "skip"), "not allowed at layer 0"),
    (lambda d: d["ops"].__setitem__(3, "mbconv_k7_e6"), "not allowed at layer 3"),
    (lambda d: d["ops"].__setitem__(3, "conv"), "unknown op 'conv'"),
    (lambda d: d["space"].update(colour="red"), "unknown search space field"),
    (lambda d: d.pop("ops"), "'space' and 'ops'"),
    (lambda d: d["space"].update(stages=[{"filters": 8}]), "malformed search space"),
])
def test_mismatched_architecture_json_is_a_clear_error(mutate, message):
    data = Architecture.sample(get_space("single_path"), 0).to_dict()
    mutate(data)
    with pytest.raises(TfnasError, match=message):
        Architecture.from_json(json.dumps(data))


def test_malformed_json_and_missing_file(tmp_path):
    with pytest.raises(TfnasError, match="malformed architecture JSON"):
        Architecture.from_json("{not json")
    with pytest.raises(TfnasError, match="does not exist"):
        Architecture.load(tmp_path / "nope.json")


def test_space_may_be_named_by_preset_in_json():
    arch = Architecture.from_json(json.dumps({"space": "tiny", "ops": ["mbconv_k3_e3"] * 5}))
    assert arch.space == get_space("tiny")


def test_signatures_key_round_trip_and_cover_the_space():
    space = get_space("single_path")
    sigs = space.signatures()
    assert len(sigs) == len(set(sigs))
    for sig in sigs:
        assert LayerSignature.from_key(sig.key) == sig
    arch = Architecture.sample(space, 11)
    assert set(arch.signatures()) <= set(sigs)
    assert arch.signatures()[0] == LayerSignature(112, 112, 16, 24, 2, arch.ops[0])
    with pytest.raises(TfnasError, match="malformed layer signature"):
        LayerSignature.from_key("112x112-24")


def test_costs_follow_the_ops():
    space = get_space("single_path")
    small = Architecture.uniform(space, "mbconv_k3_e3")
    big = Architecture.uniform(space, "mbconv_k5_e6")
    assert small.params() < big.params() and small.flops() < big.flops()
    skips = list(small.ops)
    skips[2] = SKIP
    thinner = Architecture(space, tuple(skips))
    assert small.params() - thinner.params() == small.signatures()[2].params() > 0


def test_table_is_readable():
    text = Architecture.uniform(get_space("tiny"), "mbconv_k5_e6").table()
    assert "MBConv5x5-e6" in text and "params" in text
    assert text.count("\n") == 5 + 2  # header, rule, 5 layers, total
