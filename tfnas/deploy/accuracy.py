"""Accuracy of .tflite models on a dataset's validation split (float, int8 or QAT exports).

Runs the LiteRT interpreter image by image (the exported models take batch 1) with the
validation images the trainer evaluated on, so a quantized model's top-1 compares directly
with `train_report.json`'s.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from tfnas.errors import TfnasError


def validation_split(dataset: str, space: Any, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """All validation images and labels of `dataset`, sized for `space`."""
    from tfnas import data

    source = data.load_for_space(dataset, space, batch_size=1, seed=seed)
    if source.spec.num_classes != space.num_classes:
        raise TfnasError(f"{dataset} has {source.spec.num_classes} classes but the model "
                         f"classifies {space.num_classes}: evaluate it on the data set it was "
                         "trained on")
    images, labels = [], []
    for x, y in source.val(drop_remainder=False):
        images.append(x.numpy())
        labels.append(y.numpy())
    return np.concatenate(images), np.concatenate(labels)


def tflite_top1(model_path: str | Path, images: np.ndarray, labels: np.ndarray) -> float:
    """Top-1 accuracy of a .tflite classifier (float32 input and output) on the images."""
    from tfnas.latency.devices import LocalDevice

    interpreter = LocalDevice().load(model_path)
    (inp,), (out,) = interpreter.get_input_details(), interpreter.get_output_details()
    if tuple(inp["shape"][1:]) != images.shape[1:]:
        raise TfnasError(f"{model_path} takes inputs {tuple(inp['shape'][1:])}, the dataset "
                         f"gives {images.shape[1:]}")
    correct = 0
    for image, label in zip(images, labels):
        interpreter.set_tensor(inp["index"], image[None].astype(inp["dtype"]))
        interpreter.invoke()
        correct += int(np.argmax(interpreter.get_tensor(out["index"])[0]) == label)
    return correct / max(len(labels), 1)
