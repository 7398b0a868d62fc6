"""Datasets as batched tf.data pipelines of (image in [-1, 1], int label).

Specs (the `--dataset` flag):
- `digits`: scikit-learn's 8x8 handwritten digits (1,797 images, ships offline), resized.
- `synthetic` (or `synthetic:N`, N examples; default 2048): random images whose class shifts a
  per-class pattern; learnable, any size. A small N smoke-tests a large recipe in minutes.
- `tfds:NAME`: a TensorFlow Datasets dataset (e.g. `tfds:imagenet2012`): decode, resize
  (random crop and flip for training), normalise, shuffle, batch with `drop_remainder`.
- `folder:PATH`: your own images (.png, .jpg, .jpeg, .bmp, .gif), one subfolder per class.
- `npz:PATH`: NumPy arrays `x_train`, `y_train`, `x_test`, `y_test` (images N x H x W
  grayscale or N x H x W x C with C = 1 or 3, uint8 0-255 or float in [0, 1]; integer labels
  0..K-1), resized to the space's input; the test arrays are the validation split (e.g.
  Fashion-MNIST saved from TFDS or Keras: the same data as `tfds:fashion_mnist`).

Every pipeline batches with `drop_remainder=True` (static shapes for TPU / XLA) and shuffles
with a seed per epoch, so the order of epoch n is reproducible and a resumed search can skip
the batches it already consumed (`Dataset.skip`). Training examples carry their position in
the source as an id: held-out splits (`Data.hold_out`) are chosen by id, so they are disjoint
and the same in every epoch and after a resume, and augmentation is seeded by it.
"""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path
from typing import Any, Callable

import numpy as np

from tfnas.errors import TfnasError, error_line, missing_file

KINDS = ("digits", "synthetic[:N]", "tfds:NAME", "folder:PATH", "npz:PATH")
NPZ_KEYS = ("x_train", "y_train", "x_test", "y_test")
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
    """Train and validation pipelines; `train(epoch)` is the epoch's shuffled batches.

    `_train` holds (id, example) pairs in a fixed order, id being the example's position in
    the training source: `hold_out` splits by id, so a split is the same set of examples in
    every epoch and after a resume, whatever the kind of dataset. `prepare` turns an example
    into (image, label) (decoding, resizing: deterministic); `augment(image, seed)` is
    stateless random augmentation, seeded by (data seed, epoch, id), so epoch n of a resumed
    search sees the same images as an uninterrupted one."""

    spec: DataSpec
    batch_size: int
    _train: Any
    _val: Any
    seed: int
    prepare: Callable[[Any], tuple[Any, Any]] | None = None
    augment: Callable[[Any, Any], Any] | None = None
    shuffle_buffer: int = 10_000

    def train(self, epoch: int, ids: bool = False) -> Any:
        """The epoch's batches of (image, label), or of (image, label, id) with `ids`."""
        import tensorflow as tf

        buffer = max(1, min(self.spec.train_examples, self.shuffle_buffer))
        ds = self._train.shuffle(buffer, seed=self.seed + epoch, reshuffle_each_iteration=False)
        prepare, augment = self.prepare, self.augment
        stream = tf.constant([self.seed, epoch], tf.int64) * tf.constant([1, 1 << 20], tf.int64)

        def example(i: Any, item: Any) -> tuple[Any, ...]:
            image, label = prepare(item) if prepare is not None else item
            if augment is not None:
                image = augment(image, tf.stack([stream[0], stream[1] + tf.cast(i, tf.int64)]))
            return (image, label, i) if ids else (image, label)

        ds = ds.map(example, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
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
        """Splits the training examples: (the rest, a `fraction` of them spread evenly over
        the source order: example i is held out when ⌊(i+1)·f⌋ > ⌊i·f⌋), e.g. weights and
        architecture parameters of a bi-level search (DARTS Sec. 2.3); validation stays. The
        split depends on the ids alone: disjoint, and the same in every epoch and resume."""
        import tensorflow as tf

        n = self.spec.train_examples
        n_arch = math.floor(n * fraction) if 0 < fraction < 1 else 0
        n_weights = n - n_arch
        if not 0 < fraction < 1 or min(n_arch, n_weights) < self.batch_size:
            raise TfnasError(f"holding out {fraction:g} of {n} training examples leaves fewer "
                             f"than a batch ({self.batch_size}) on one side: change "
                             "--arch_split or --batch_size")

        def held_out(i: Any, _: Any) -> Any:
            i = tf.cast(i, tf.float64)
            return tf.math.floor((i + 1.0) * fraction) > tf.math.floor(i * fraction)

        parts = []
        for count, keep in ((n_weights, lambda i, x: tf.logical_not(held_out(i, x))),
                            (n_arch, held_out)):
            spec = dataclasses.replace(self.spec, train_examples=count)
            parts.append(dataclasses.replace(self, spec=spec, _train=self._train.filter(keep)))
        return parts[0], parts[1]


def _indexed(dataset: Any) -> Any:
    """(id, example) pairs: the example's position in the source as its id."""
    import tensorflow as tf

    return dataset.enumerate().map(lambda i, x: (tf.cast(i, tf.int64), x))


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
    return Data(spec, batch_size, _indexed(dataset(train_idx)), dataset(val_idx), seed)


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

    larger = int(round(size * 8 / 7))

    def prepare(example: dict) -> tuple[Any, Any]:
        """Resized to 8/7 of the input, in [-1, 1]."""
        image = _resize(tf.cast(example["image"], tf.float32), larger, channels)
        return image / 127.5 - 1.0, tf.cast(example["label"], tf.int32)

    def augment(image: Any, seed: Any) -> Any:
        """Training: a random crop and a random flip (Inception-style light augmentation)."""
        crop_seed, flip_seed = tf.unstack(tf.random.experimental.stateless_split(seed, 2))
        image = tf.image.stateless_random_crop(image, (size, size, channels), crop_seed)
        return tf.image.stateless_random_flip_left_right(image, flip_seed)

    def evaluate(example: dict) -> tuple[Any, Any]:
        """Evaluation: the central crop."""
        image, label = prepare(example)
        offset = (larger - size) // 2
        return image[offset:offset + size, offset:offset + size, :], label

    options = tf.data.Options()
    options.deterministic = True
    raw = {split: builder.as_dataset(split=split, shuffle_files=False).with_options(options)
           for split in ("train", val_split)}
    val = raw[val_split].map(evaluate, num_parallel_calls=tf.data.AUTOTUNE)

    def count(split: str) -> int:
        if split in splits:
            return splits[split].num_examples
        return int(raw[split].reduce(0, lambda n, _: n + 1))

    spec = DataSpec(f"tfds:{name}", num_classes, count("train"), count(val_split))
    _check_batches(spec, batch_size)
    return Data(spec, batch_size, _indexed(raw["train"]), val, seed, prepare, augment)


IMAGE_EXTENSIONS = (".bmp", ".gif", ".jpeg", ".jpg", ".png")


def folder(path: str, size: int, channels: int, batch_size: int, seed: int = 0,
           val_fraction: float = 0.2) -> Data:
    """Images in one subfolder per class (classes in name order), split once by a seeded
    permutation of the sorted file list: the same files in every epoch and run."""
    import tensorflow as tf

    classes, files = _folder_files(path)
    order = np.random.default_rng(seed).permutation(len(files))
    n_val = int(round(len(files) * val_fraction))

    def dataset(idx: np.ndarray) -> Any:
        paths = [files[i][0] for i in idx]
        labels = np.array([files[i][1] for i in idx], np.int32)
        return tf.data.Dataset.from_tensor_slices((paths, labels))

    def prepare(item: tuple[Any, Any]) -> tuple[Any, Any]:
        file, label = item
        image = tf.io.decode_image(tf.io.read_file(file), channels=channels,
                                   expand_animations=False)
        image = tf.image.resize(tf.cast(image, tf.float32), (size, size))
        return image / 127.5 - 1.0, label

    spec = DataSpec(f"folder:{path}", len(classes), len(files) - n_val, n_val)
    _check_batches(spec, batch_size)
    val = dataset(order[:n_val]).map(lambda file, label: prepare((file, label)),
                                     num_parallel_calls=tf.data.AUTOTUNE)
    return Data(spec, batch_size, _indexed(dataset(order[n_val:])), val, seed, prepare)


def _folder_files(path: str) -> tuple[list[str], list[tuple[str, int]]]:
    """(class names, (file, label) pairs) of a `folder:PATH` dataset, checked: one subfolder
    per class, and every image whole (`_damaged`: one line naming the bad files)."""
    root = Path(path)
    if not root.is_dir():
        raise TfnasError(f"image folder {path!r} " + (
            "is a file, not a folder" if root.exists() else "does not exist"))
    classes = sorted(d.name for d in root.iterdir() if d.is_dir())
    files = [(str(f), label) for label, name in enumerate(classes)
             for f in sorted((root / name).rglob("*"))
             if f.is_file() and f.suffix.lower() in IMAGE_EXTENSIONS]
    if len(classes) < 2 or not files:
        raise TfnasError(f"cannot read images from {path}: expected one subfolder per class "
                         f"(at least 2) holding {', '.join(IMAGE_EXTENSIONS)} files, found "
                         f"{len(classes)} subfolder(s) and {len(files)} image(s)")
    bad = [(f, why) for f, _ in files for why in [_damaged(Path(f))] if why]
    if bad:
        shown = "; ".join(f"{f} ({why})" for f, why in bad[:3])
        raise TfnasError(f"{len(bad)} of the {len(files)} images in {path} cannot be decoded: "
                         f"{shown}{'; ...' if len(bad) > 3 else ''} (remove or replace them)")
    return classes, files


def _damaged(path: Path) -> str | None:
    """Why an image file cannot be decoded, from its first and last bytes (cheap enough for
    every file of a folder), or None: empty, not the format its header says, or cut short (a
    JPEG without its end marker, a PNG without IEND, a GIF without its trailer, a BMP shorter
    than its header says)."""
    size = path.stat().st_size
    if size == 0:
        return "empty"
    with path.open("rb") as f:
        head = f.read(16)
        f.seek(max(0, size - 64))
        tail = f.read()
    if head.startswith(b"\xff\xd8"):
        return None if b"\xff\xd9" in tail else "JPEG cut short"
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return None if b"IEND" in tail else "PNG cut short"
    if head[:6] in (b"GIF87a", b"GIF89a"):
        return None if tail.rstrip(b"\x00").endswith(b"\x3b") else "GIF cut short"
    if head.startswith(b"BM") and len(head) >= 6:
        return None if int.from_bytes(head[2:6], "little") <= size else "BMP cut short"
    return "not a JPEG, PNG, GIF or BMP image"


def _npz_arrays(path: str) -> dict[str, np.ndarray]:
    """The four arrays of an `npz:PATH` file, checked (one clear line for each problem)."""
    try:
        with np.load(path, allow_pickle=False) as npz:
            missing = [key for key in NPZ_KEYS if key not in npz.files]
            if missing:
                raise TfnasError(f"{path} has no {', '.join(missing)}: an npz dataset needs "
                                 f"the arrays {', '.join(NPZ_KEYS)} (it has "
                                 f"{', '.join(npz.files) or 'none'})")
            arrays = {key: npz[key] for key in NPZ_KEYS}
    except TfnasError:
        raise
    except (FileNotFoundError, IsADirectoryError):
        raise missing_file(path, "npz dataset") from None
    except Exception as err:  # not a zip, truncated, pickled objects...
        raise TfnasError(f"cannot read npz dataset {path}: {error_line(err)}") from None
    for split in ("train", "test"):
        x, y = arrays[f"x_{split}"], arrays[f"y_{split}"]
        if x.ndim not in (3, 4) or (x.ndim == 4 and x.shape[-1] not in (1, 3)) or not len(x):
            raise TfnasError(f"{path}: x_{split} must be N x H x W or N x H x W x C images "
                             f"(C = 1 or 3), got shape {x.shape}")
        if y.shape != (len(x),) or not np.issubdtype(y.dtype, np.integer):
            raise TfnasError(f"{path}: y_{split} must hold one integer label per image of "
                             f"x_{split} ({len(x)}), got {y.dtype} of shape {y.shape}")
        if not (np.issubdtype(x.dtype, np.integer) or np.issubdtype(x.dtype, np.floating)):
            raise TfnasError(f"{path}: x_{split} must be numbers, got {x.dtype}")
    if arrays["x_train"].shape[1:] != arrays["x_test"].shape[1:]:
        raise TfnasError(f"{path}: x_train images are {arrays['x_train'].shape[1:]}, x_test "
                         f"images {arrays['x_test'].shape[1:]}: they must be the same size")
    return arrays


def _npz_for_space(path: str, num_classes: int | None, channels: int | None
                   ) -> dict[str, np.ndarray]:
    """The arrays of an npz dataset, checked against the space's classes and channels."""
    arrays = _npz_arrays(path)
    for split in ("train", "test"):
        y = arrays[f"y_{split}"]
        if num_classes is not None and (y.min() < 0 or y.max() >= num_classes):
            raise TfnasError(f"{path}: y_{split} has labels {y.min()}..{y.max()}, the space "
                             f"has {num_classes} classes (0..{num_classes - 1}): set "
                             "--num_classes")
    rgb = arrays["x_train"].ndim == 4 and arrays["x_train"].shape[-1] == 3
    if rgb and channels == 1:
        raise TfnasError(f"{path} holds RGB images and the space takes 1 channel: set "
                         "--input_channels=3")
    return arrays


def npz(path: str, size: int, channels: int, num_classes: int, batch_size: int,
        seed: int = 0) -> Data:
    """An `npz:PATH` dataset: x_train/y_train to train on, x_test/y_test as validation; the
    labels must lie in 0..num_classes-1 (the space's classes)."""
    import tensorflow as tf

    arrays = _npz_for_space(path, num_classes, channels)
    in_channels = 1 if arrays["x_train"].ndim == 3 else arrays["x_train"].shape[-1]
    scale = 255.0 if np.issubdtype(arrays["x_train"].dtype, np.integer) else 1.0

    def images(x: np.ndarray) -> np.ndarray:
        """[-1, 1], resized to the space's input, in chunks (60,000 images at once would
        hold every resized copy twice)."""
        x = x.reshape(*x.shape[:3], in_channels)
        return np.concatenate([
            _resize(tf.constant(x[i:i + 10_000], tf.float32) * (2.0 / scale) - 1.0, size,
                    channels).numpy() for i in range(0, len(x), 10_000)])

    train_x, test_x = images(arrays["x_train"]), images(arrays["x_test"])
    spec = DataSpec(f"npz:{path}", num_classes, len(train_x), len(test_x))
    _check_batches(spec, batch_size)
    train = tf.data.Dataset.from_tensor_slices((train_x, arrays["y_train"].astype(np.int32)))
    val = tf.data.Dataset.from_tensor_slices((test_x, arrays["y_test"].astype(np.int32)))
    return Data(spec, batch_size, _indexed(train), val, seed)


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


def _check_kind(spec: str) -> None:
    """Raises the one-line error for a `--dataset` value of no known kind (reads nothing)."""
    if _synthetic_examples(spec) is not None:
        return
    if not (spec == "digits" or (spec.startswith("tfds:") and len(spec) > 5)
            or (spec.startswith("folder:") and len(spec) > 7)
            or (spec.startswith("npz:") and len(spec) > 4)):
        raise TfnasError(f"unknown dataset {spec!r}: expected one of {', '.join(KINDS)}")


def check_spec(spec: str, num_classes: int | None = None, channels: int | None = None) -> None:
    """Raises the one-line error for a bad `--dataset` value, before any work: a kind it does
    not know, an npz file whose arrays do not fit the space's classes and channels, an image
    folder with damaged images or another number of classes (the kinds read here)."""
    _check_kind(spec)
    if spec.startswith("npz:"):
        _npz_for_space(spec[4:], num_classes, channels)
    if spec.startswith("folder:"):
        classes, _ = _folder_files(spec[7:])
        if num_classes is not None and len(classes) != num_classes:
            raise TfnasError(f"{spec} has {len(classes)} classes (subfolders) but the space "
                             f"has {num_classes}: set --num_classes={len(classes)}")


def load(spec: str, *, image_size: int, channels: int = 3, num_classes: int = 10,
         batch_size: int, seed: int = 0) -> Data:
    """The dataset named by a `--dataset` value (see the module docstring)."""
    _check_kind(spec)  # an npz file is checked as it is read
    if spec == "digits":
        return digits(image_size, channels, batch_size, seed)
    examples = _synthetic_examples(spec)
    if examples is not None:
        return synthetic(image_size, channels, num_classes, batch_size, seed, examples=examples)
    if spec.startswith("tfds:"):
        return tfds_dataset(spec[5:], image_size, channels, batch_size, seed)
    if spec.startswith("npz:"):
        return npz(spec[4:], image_size, channels, num_classes, batch_size, seed)
    return folder(spec[7:], image_size, channels, batch_size, seed)


def load_for_space(spec: str, space: Any, *, batch_size: int, seed: int = 0) -> Data:
    """The dataset named by `spec`, sized for a search space (its input size, channels and,
    for `synthetic`, classes)."""
    return load(spec, image_size=space.input_size, channels=space.input_channels,
                num_classes=space.num_classes, batch_size=batch_size, seed=seed)
