"""Datasets as batched tf.data pipelines of (image in [-1, 1], int label).

Specs (the `--dataset` flag):
- `digits`: scikit-learn's 8x8 handwritten digits (1,797 images, ships offline), resized.
- `synthetic` (or `synthetic:N`, N examples; default 2048): random images whose class shifts a
  per-class pattern; learnable, any size. A small N smoke-tests a large recipe in minutes.
- `tfds:NAME`: a TensorFlow Datasets dataset (e.g. `tfds:imagenet2012`): decode, resize
  (random crop and flip for training), normalise, shuffle, batch with `drop_remainder`.
- `folder:PATH`: your own images, one subfolder per class (Keras `image_dataset_from_directory`).

Every pipeline batches with `drop_remainder=True` (static shapes for TPU / XLA) and shuffles
with a seed per epoch, so the order of epoch n is reproducible and a resumed search can skip
the batches it already consumed (`Dataset.skip`).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import numpy as np

from tfnas.errors import TfnasError, error_line

KINDS = ("digits", "synthetic[:N]", "tfds:NAME", "folder:PATH")
SYNTHETIC_EXAMPLES = 2048


@dataclasses.dataclass(frozen=True)
class DataSpec:
    """What a dataset gives, after resizing to the search space's input."""

    name: str
    num_classes: int
    train_examples: int
    val_examples: int


@dataclasses.dataclass
class Data:
    """Train and validation pipelines; `train(epoch)` is the epoch's shuffled batches."""

    spec: DataSpec
    batch_size: int
    _train: Any
    _val: Any
    seed: int
    shuffle_buffer: int = 10_000

    def train(self, epoch: int) -> Any:
        import tensorflow as tf

        buffer = max(1, min(self.spec.train_examples, self.shuffle_buffer))
        ds = self._train.shuffle(buffer, seed=self.seed + epoch, reshuffle_each_iteration=False)
        return ds.batch(self.batch_size, drop_remainder=True).prefetch(tf.data.AUTOTUNE)

    def val(self, drop_remainder: bool = True) -> Any:
        """Validation batches (static shapes by default; `drop_remainder=False` for a final
        evaluation on every example)."""
        import tensorflow as tf

        return self._val.batch(self.batch_size, drop_remainder=drop_remainder).prefetch(
            tf.data.AUTOTUNE)

    @property
    def steps_per_epoch(self) -> int:
        return self.spec.train_examples // self.batch_size

    def hold_out(self, fraction: float) -> tuple["Data", "Data"]:
        """Splits the training examples: (the first 1 − fraction, the rest), e.g. weights
        and architecture parameters of a bi-level search (DARTS Sec. 2.3); validation stays."""
        n_arch = int(round(self.spec.train_examples * fraction))
        n_weights = self.spec.train_examples - n_arch
        if not 0 < fraction < 1 or min(n_arch, n_weights) < self.batch_size:
            raise TfnasError(f"holding out {fraction:g} of {self.spec.train_examples} training "
                             f"examples leaves fewer than a batch ({self.batch_size}) on one "
                             "side: change --arch_split or --batch_size")
        parts = []
        for n, ds in ((n_weights, self._train.take(n_weights)),
                      (n_arch, self._train.skip(n_weights))):
            spec = dataclasses.replace(self.spec, train_examples=n)
            parts.append(dataclasses.replace(self, spec=spec, _train=ds))
        return parts[0], parts[1]


def _resize(images: Any, size: int, channels: int) -> Any:
    import tensorflow as tf

    images = tf.image.resize(images, (size, size))
    if images.shape[-1] == 1 and channels == 3:
        images = tf.tile(images, (1, 1, 1, 3) if images.shape.rank == 4 else (1, 1, 3))
    if images.shape[-1] != channels:
        raise TfnasError(f"images have {images.shape[-1]} channels, the space takes {channels}")
    return images


def _from_arrays(name: str, images: np.ndarray, labels: np.ndarray, num_classes: int,
                 size: int, channels: int, val_fraction: float, seed: int,
                 batch_size: int) -> Data:
    import tensorflow as tf

    order = np.random.default_rng(seed).permutation(len(images))
    n_val = int(round(len(images) * val_fraction))
    val_idx, train_idx = order[:n_val], order[n_val:]
    images = _resize(tf.constant(images, tf.float32), size, channels).numpy()
    labels = labels.astype(np.int32)

    def dataset(idx: np.ndarray) -> Any:
        return tf.data.Dataset.from_tensor_slices((images[idx], labels[idx]))

    spec = DataSpec(name, num_classes, len(train_idx), len(val_idx))
    _check_batches(spec, batch_size)
    return Data(spec, batch_size, dataset(train_idx), dataset(val_idx), seed)


def _check_batches(spec: DataSpec, batch_size: int) -> None:
    if batch_size < 1:
        raise TfnasError(f"batch size must be positive, got {batch_size}")
    if spec.train_examples < batch_size:
        raise TfnasError(f"{spec.name} has {spec.train_examples} training examples, fewer than "
                         f"one batch of {batch_size}: lower --batch_size")


def digits(size: int, channels: int, batch_size: int, seed: int = 0,
           val_fraction: float = 0.2) -> Data:
    from sklearn.datasets import load_digits

    bunch = load_digits()
    images = (bunch.images[..., None] / 8.0 - 1.0).astype(np.float32)  # 0..16 → [-1, 1]
    return _from_arrays("digits", images, bunch.target, 10, size, channels, val_fraction, seed,
                        batch_size)


def synthetic(size: int, channels: int, num_classes: int, batch_size: int, seed: int = 0,
              examples: int = SYNTHETIC_EXAMPLES, val_fraction: float = 0.2) -> Data:
    rng = np.random.default_rng(seed)
    patterns = rng.uniform(-1, 1, (num_classes, 8, 8, channels)).astype(np.float32)
    labels = rng.integers(num_classes, size=examples)
    images = patterns[labels] + rng.normal(0, 0.5, (examples, 8, 8, channels))
    return _from_arrays("synthetic", np.clip(images, -1, 1).astype(np.float32), labels,
                        num_classes, size, channels, val_fraction, seed, batch_size)


def tfds_dataset(name: str, size: int, channels: int, batch_size: int, seed: int = 0,
                 data_dir: str | None = None) -> Data:
    """A TFDS dataset: 'train' for training, 'validation' (else 'test') for validation."""
    import tensorflow as tf
    import tensorflow_datasets as tfds

    try:
        builder = tfds.builder(name, data_dir=data_dir)
        builder.download_and_prepare()
    except Exception as err:  # unknown names, no network, no manual download...
        raise TfnasError(f"cannot load TFDS dataset {name!r}: {error_line(err)}") from None
    info = builder.info
    splits = info.splits
    names = set(splits) or {"train", "test"}  # (mock builders in tests report no splits)
    val_split = "validation" if "validation" in names else "test" if "test" in names else None
    if "train" not in names or val_split is None:
        raise TfnasError(f"TFDS dataset {name!r} needs a 'train' and a 'validation' or 'test' "
                         f"split, it has {sorted(names)}")
    num_classes = info.features["label"].num_classes

    def preprocess(training: bool) -> Any:
        """Training: resize to 8/7 of the input, random crop, random flip (Inception-style
        light augmentation); evaluation: resize to 8/7 and take the central crop."""
        larger = int(round(size * 8 / 7))

        def fn(example: dict) -> tuple[Any, Any]:
            image = _resize(tf.cast(example["image"], tf.float32), larger, channels)
            if training:
                image = tf.image.random_crop(image, (size, size, channels))
                image = tf.image.random_flip_left_right(image)
            else:
                offset = (larger - size) // 2
                image = image[offset:offset + size, offset:offset + size, :]
            return image / 127.5 - 1.0, tf.cast(example["label"], tf.int32)
        return fn

    options = tf.data.Options()
    options.deterministic = True
    raw = {split: builder.as_dataset(split=split).with_options(options)
           for split in ("train", val_split)}
    train = raw["train"].map(preprocess(True), num_parallel_calls=tf.data.AUTOTUNE)
    val = raw[val_split].map(preprocess(False), num_parallel_calls=tf.data.AUTOTUNE)

    def count(split: str) -> int:
        if split in splits:
            return splits[split].num_examples
        return int(raw[split].reduce(0, lambda n, _: n + 1))

    spec = DataSpec(f"tfds:{name}", num_classes, count("train"), count(val_split))
    _check_batches(spec, batch_size)
    return Data(spec, batch_size, train, val, seed)


def folder(path: str, size: int, channels: int, batch_size: int, seed: int = 0,
           val_fraction: float = 0.2) -> Data:
    import keras

    if not Path(path).is_dir():
        raise TfnasError(f"image folder {path!r} does not exist")
    common = dict(image_size=(size, size), batch_size=None, seed=seed,
                  validation_split=val_fraction, color_mode="rgb" if channels == 3 else
                  "grayscale", label_mode="int")
    try:
        train = keras.utils.image_dataset_from_directory(path, subset="training", **common)
        val = keras.utils.image_dataset_from_directory(path, subset="validation", **common)
    except ValueError as err:
        raise TfnasError(f"cannot read images from {path}: {err}") from None

    def norm(x: Any, y: Any) -> tuple[Any, Any]:
        return x / 127.5 - 1.0, y

    spec = DataSpec(f"folder:{path}", len(train.class_names), int(train.cardinality()),
                    int(val.cardinality()))
    _check_batches(spec, batch_size)
    return Data(spec, batch_size, train.map(norm), val.map(norm), seed)


def _synthetic_examples(spec: str) -> int | None:
    """N of `synthetic:N` (2048 for plain `synthetic`); None for other kinds."""
    if spec == "synthetic":
        return SYNTHETIC_EXAMPLES
    if not spec.startswith("synthetic:"):
        return None
    count = spec.split(":", 1)[1]
    if not count.isdigit() or int(count) < 1:
        raise TfnasError(f"dataset {spec!r}: N of synthetic:N must be a positive integer "
                         f"(examples), got {count!r}")
    return int(count)


def check_spec(spec: str) -> None:
    """Raises the one-line error for a `--dataset` value of no known kind (loads nothing)."""
    if _synthetic_examples(spec) is not None:
        return
    if not (spec == "digits" or (spec.startswith("tfds:") and len(spec) > 5)
            or (spec.startswith("folder:") and len(spec) > 7)):
        raise TfnasError(f"unknown dataset {spec!r}: expected one of {', '.join(KINDS)}")


def load(spec: str, *, image_size: int, channels: int = 3, num_classes: int = 10,
         batch_size: int, seed: int = 0) -> Data:
    """The dataset named by a `--dataset` value (see the module docstring)."""
    check_spec(spec)
    if spec == "digits":
        return digits(image_size, channels, batch_size, seed)
    examples = _synthetic_examples(spec)
    if examples is not None:
        return synthetic(image_size, channels, num_classes, batch_size, seed, examples=examples)
    if spec.startswith("tfds:"):
        return tfds_dataset(spec[5:], image_size, channels, batch_size, seed)
    return folder(spec[7:], image_size, channels, batch_size, seed)


def load_for_space(spec: str, space: Any, *, batch_size: int, seed: int = 0) -> Data:
    """The dataset named by `spec`, sized for a search space (its input size, channels and,
    for `synthetic`, classes)."""
    return load(spec, image_size=space.input_size, channels=space.input_channels,
                num_classes=space.num_classes, batch_size=batch_size, seed=seed)
