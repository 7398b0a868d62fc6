"""Datasets: value range, static batches, reproducible epoch order, TFDS and folder inputs."""

from __future__ import annotations

import numpy as np
import pytest

from tfnas import data
from tfnas.errors import TfnasError


def _labels(ds) -> np.ndarray:
    return np.concatenate([y.numpy() for _, y in ds])


def test_digits_are_resized_normalised_and_split():
    d = data.load("digits", image_size=16, batch_size=64, seed=0)
    assert d.spec.num_classes == 10
    assert d.spec.train_examples + d.spec.val_examples == 1797
    assert d.steps_per_epoch == d.spec.train_examples // 64
    batches = list(d.train(0))
    assert len(batches) == d.steps_per_epoch  # drop_remainder: every batch full
    images, labels = batches[0]
    assert images.shape == (64, 16, 16, 3) and labels.dtype.name == "int32"
    assert images.numpy().min() >= -1.0 and images.numpy().max() <= 1.0
    assert images.numpy().min() < -0.9 and images.numpy().max() > 0.9


def test_epoch_order_is_reproducible_and_skippable():
    d = data.load("digits", image_size=8, batch_size=32, seed=5)
    first, again, second = _labels(d.train(0)), _labels(d.train(0)), _labels(d.train(1))
    assert np.array_equal(first, again)
    assert not np.array_equal(first, second)
    # a resumed epoch skips the batches it already consumed and sees the same rest
    assert np.array_equal(_labels(d.train(0).skip(3)), first[3 * 32:])
    other_seed = data.load("digits", image_size=8, batch_size=32, seed=6)
    assert not np.array_equal(_labels(other_seed.train(0)), first)


def test_synthetic_classes_are_learnable_patterns():
    d = data.load("synthetic", image_size=16, num_classes=4, batch_size=32, seed=1)
    pairs = [(a.numpy(), b.numpy()) for a, b in d.train(0)]
    images, labels = (np.concatenate(x) for x in zip(*pairs))
    means = np.stack([images[labels == c].mean(axis=0) for c in range(4)])
    # class means differ far more than the noise left in a mean of ~100 images
    assert np.abs(means[0] - means[1]).mean() > 0.2


def test_synthetic_example_count():
    d = data.load("synthetic:40", image_size=8, num_classes=4, batch_size=8, seed=0)
    assert d.spec.train_examples + d.spec.val_examples == 40
    assert data.load("synthetic", image_size=8, batch_size=8).spec.train_examples > 1000


def test_tfds_pipeline_with_mock_data():
    tfds = pytest.importorskip("tensorflow_datasets")
    with tfds.testing.mock_data(num_examples=40):
        d = data.load("tfds:mnist", image_size=16, batch_size=8, seed=0)
        assert d.spec.num_classes == 10 and d.spec.train_examples == 40
        images, labels = next(iter(d.train(0)))
        assert images.shape == (8, 16, 16, 3)  # grayscale tiled to the space's 3 channels
        assert -1.0 <= images.numpy().min() and images.numpy().max() <= 1.0
        assert len(list(d.val())) == 40 // 8


def _image_folder(root, per_class=10):
    from PIL import Image

    rng = np.random.default_rng(0)
    for label in ("cat", "dog"):
        (root / label).mkdir()
        for i in range(per_class):
            pixels = rng.integers(0, 255, (20, 24, 3), dtype=np.uint8)
            Image.fromarray(pixels).save(root / label / f"{i}.png")
    return root


def test_folder_of_images(tmp_path):
    _image_folder(tmp_path)
    d = data.load(f"folder:{tmp_path}", image_size=16, batch_size=4, seed=0)
    assert d.spec.num_classes == 2
    assert d.spec.train_examples == 16 and d.spec.val_examples == 4
    images, labels = next(iter(d.train(0)))
    assert images.shape == (4, 16, 16, 3)
    assert -1.0 <= images.numpy().min() and images.numpy().max() <= 1.0
    assert set(_labels(d.train(0))) <= {0, 1}


def _npz(path, n_train=120, n_test=40, shape=(28, 28), dtype=np.uint8, **changes):
    """A Fashion-MNIST-shaped npz file (class c: a bright c-th band), with `changes` to its
    arrays (None drops one)."""
    rng = np.random.default_rng(0)
    arrays = {}
    for split, n in (("train", n_train), ("test", n_test)):
        y = rng.integers(0, 10, n).astype(np.uint8)
        x = rng.integers(0, 60, (n, *shape)).astype(np.float64)
        for i, label in enumerate(y):
            x[i, 2 * label:2 * label + 2] = 250
        arrays[f"x_{split}"], arrays[f"y_{split}"] = x.astype(dtype), y
    arrays.update(changes)
    np.savez(path, **{k: v for k, v in arrays.items() if v is not None})
    return path


def test_npz_arrays_train_on_x_train_and_validate_on_x_test(tmp_path):
    path = _npz(tmp_path / "f.npz")
    raw = np.load(path)
    gray = data.load(f"npz:{path}", image_size=28, channels=1, batch_size=40, seed=0)
    assert gray.spec.train_examples == 120 and gray.spec.val_examples == 40
    val_images = np.concatenate([x.numpy() for x, _ in gray.val()])
    assert val_images.shape == (40, 28, 28, 1)
    # the test arrays, in order, scaled from 0..255 to [-1, 1]
    np.testing.assert_allclose(val_images[..., 0], raw["x_test"] / 127.5 - 1.0, atol=1e-6)
    np.testing.assert_array_equal(_labels(gray.val()), raw["y_test"])
    train = np.concatenate([y.numpy() for _, y in gray.train(0)])
    assert sorted(train) == sorted(raw["y_train"])  # 120 = 3 batches: every example once
    # resized and made RGB for a space that takes 16x16x3
    rgb = data.load(f"npz:{path}", image_size=16, channels=3, batch_size=40, seed=0)
    images, _ = next(iter(rgb.train(0)))
    assert images.shape == (40, 16, 16, 3) and -1 <= images.numpy().min() < -0.5
    assert np.array_equal(images.numpy()[..., 0], images.numpy()[..., 2])
    # float images in [0, 1] and N x H x W x 1 arrays mean the same
    floats = _npz(tmp_path / "g.npz", dtype=np.float32)
    as_floats = {k: v for k, v in np.load(floats).items()}
    for split in ("train", "test"):
        as_floats[f"x_{split}"] = (raw[f"x_{split}"] / 255.0)[..., None].astype(np.float32)
    np.savez(floats, **as_floats)
    again = data.load(f"npz:{floats}", image_size=28, channels=1, batch_size=40, seed=0)
    np.testing.assert_allclose(np.concatenate([x.numpy() for x, _ in again.val()]),
                               val_images, atol=1e-5)


def _split(d, epoch):
    """Per part of the α hold-out: the ids and the image bytes of an epoch's batches."""
    parts = []
    for part in d.hold_out(0.25):
        batches = [(images.numpy(), ids.numpy()) for images, _, ids in part.train(epoch, ids=True)]
        parts.append((np.concatenate([i for _, i in batches]).tolist(),
                      [image.tobytes() for images, _ in batches for image in images]))
    return parts


@pytest.mark.parametrize("kind", ["digits", "synthetic", "folder", "tfds", "npz"])
def test_alpha_and_weight_splits_are_disjoint_and_fixed_across_epochs_and_resumes(
        kind, tmp_path):
    """A bi-level search learns α on held-out examples: they must never be weight examples,
    in any epoch, nor after a resume (a new process builds the data again). Images are
    compared too where no augmentation changes them."""
    import contextlib

    spec, stack = {"digits": "digits", "synthetic": "synthetic:400", "tfds": "tfds:mnist",
                   "folder": f"folder:{_image_folder(tmp_path, 60)}",
                   "npz": f"npz:{_npz(tmp_path / 'f.npz')}"}[kind], contextlib.ExitStack()
    if kind == "tfds":
        tfds = pytest.importorskip("tensorflow_datasets")
        stack.enter_context(tfds.testing.mock_data(num_examples=200))
    with stack:
        def build():
            return data.load(spec, image_size=16, batch_size=8, seed=3)

        d = build()
        epochs = [_split(d, epoch) for epoch in (0, 1)]
        resumed = [_split(build(), epoch) for epoch in (0, 1)]
    augmented = d.augment is not None
    for (weights, arch), again in zip(epochs, resumed):
        assert again == [weights, arch]  # a resume sees the same batches
        assert not set(weights[0]) & set(arch[0])
        assert len(weights[0]) == len(set(weights[0])) and len(arch[0]) >= 8
        if not augmented:
            assert not set(weights[1]) & set(arch[1])
    # never an α example in one epoch and a weight example in another
    weight_ids = set(epochs[0][0][0]) | set(epochs[1][0][0])
    assert not weight_ids & (set(epochs[0][1][0]) | set(epochs[1][1][0]))
    if not augmented:
        weight_images = set(epochs[0][0][1]) | set(epochs[1][0][1])
        assert not weight_images & (set(epochs[0][1][1]) | set(epochs[1][1][1]))
    for part in (0, 1):  # epoch 1: the same examples in another order (less the remainders)
        ids = [epochs[e][part][0] for e in (0, 1)]
        assert ids[0] != ids[1] and len(set(ids[0]) ^ set(ids[1])) <= 2 * (8 - 1)
    assert augmented == (kind == "tfds")


@pytest.mark.parametrize("spec,kwargs,message", [
    ("mnist", {}, "unknown dataset 'mnist'"),
    ("tfds:", {}, "unknown dataset"),
    ("synthetic:0", {}, "N of synthetic:N must be a positive integer"),
    ("synthetic:many", {}, "N of synthetic:N must be a positive integer"),
    ("digits", {"batch_size": 5000}, "fewer than one batch"),
    ("folder:/no/such/folder", {}, "does not exist"),
])
def test_bad_datasets(spec, kwargs, message):
    with pytest.raises(TfnasError, match=message):
        data.load(spec, image_size=8, **{"batch_size": 16, **kwargs})


@pytest.mark.parametrize("changes,kwargs,message", [
    ({"y_test": None}, {}, r"has no y_test: an npz dataset needs the arrays x_train, y_train"),
    ({"y_train": np.full(120, 12, np.uint8)}, {},
     r"y_train has labels 12..12, the space has 10 classes \(0..9\): set --num_classes"),
    ({"y_test": np.full(40, -1, np.int64)}, {}, r"y_test has labels -1..-1"),
    ({"y_train": np.zeros(120, np.float32)}, {}, "y_train must hold one integer label per image"),
    ({"x_train": np.zeros((120, 28), np.uint8)}, {}, "x_train must be N x H x W or N x H x W x C"),
    ({"x_test": np.zeros((40, 20, 20), np.uint8)}, {}, "they must be the same size"),
    ({"x_train": np.zeros((120, 28, 28, 3), np.uint8),
      "x_test": np.zeros((40, 28, 28, 3), np.uint8)}, {"channels": 1},
     "holds RGB images and the space takes 1 channel: set --input_channels=3"),
])
def test_bad_npz_datasets_are_one_line(tmp_path, changes, kwargs, message):
    path = _npz(tmp_path / "bad.npz", **changes)
    with pytest.raises(TfnasError, match=message):
        data.load(f"npz:{path}", image_size=28, batch_size=8, **kwargs)


def test_an_npz_that_is_not_one_is_one_line(tmp_path):
    (tmp_path / "text.npz").write_text("not a zip")
    with pytest.raises(TfnasError, match="cannot read npz dataset .*text.npz: "):
        data.load(f"npz:{tmp_path / 'text.npz'}", image_size=8, batch_size=4)
    with pytest.raises(TfnasError, match="npz dataset '/no/such.npz' does not exist"):
        data.load("npz:/no/such.npz", image_size=8, batch_size=4)


def test_a_folder_without_class_subfolders_is_one_line(tmp_path):
    (tmp_path / "only").mkdir()
    with pytest.raises(TfnasError, match="expected one subfolder per class .at least 2."):
        data.load(f"folder:{tmp_path}", image_size=8, batch_size=4)


@pytest.mark.parametrize("damage,why", [
    ("truncate", "PNG cut short"), ("random", "not a JPEG, PNG, GIF or BMP image"),
    ("empty", "empty"), ("jpeg_truncate", "JPEG cut short")])
def test_a_damaged_image_in_a_folder_is_one_line_naming_it(tmp_path, damage, why):
    """Issue 18, defect 6: a corrupt or truncated image gave a 37-46 line traceback mid-run,
    naming no file. Every image is checked when the folder is read (and by check_spec, before
    any work)."""
    from PIL import Image

    _image_folder(tmp_path)
    bad = tmp_path / "dog" / "3.png"
    if damage == "truncate":
        bad.write_bytes(bad.read_bytes()[:100])
    elif damage == "random":
        bad.write_bytes(np.random.default_rng(1).bytes(500))
    elif damage == "empty":
        bad.write_bytes(b"")
    else:
        bad = tmp_path / "dog" / "3.jpg"
        Image.fromarray(np.zeros((20, 20, 3), np.uint8)).save(bad)
        bad.write_bytes(bad.read_bytes()[:200])
        (tmp_path / "dog" / "3.png").unlink()
    message = rf"1 of the 20 images in {tmp_path} cannot be decoded: {bad} \({why}\)"
    with pytest.raises(TfnasError, match=message):
        data.load(f"folder:{tmp_path}", image_size=8, batch_size=4)
    with pytest.raises(TfnasError, match=message):
        data.check_spec(f"folder:{tmp_path}")
    # the check agrees with TensorFlow's decoder: that file does not decode
    import tensorflow as tf

    with pytest.raises(tf.errors.InvalidArgumentError):
        tf.io.decode_image(tf.io.read_file(str(bad)))


def test_a_folder_with_other_classes_than_the_space_is_one_line(tmp_path):
    _image_folder(tmp_path)
    with pytest.raises(TfnasError, match="has 2 classes .subfolders. but the space has 10"):
        data.check_spec(f"folder:{tmp_path}", num_classes=10)
