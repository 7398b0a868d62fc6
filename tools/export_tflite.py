"""Export a tfnas network to TFLite.

    python tools/export_tflite.py --arch=arch.json --quantize=int8 --out=x.tflite

`--arch` alone exports a freshly initialised network (enough for latency measurement);
`--model=model.keras` exports trained weights (add `--arch` to embed the architecture when the
model's folder has no arch.json). int8 calibration uses `--calibration_dataset` images (the
training split), or random inputs uniform in [-1, 1], the range of tfnas' normalised images.
`--quantize=qat` fine-tunes a trained model with quantization-aware training on
`--calibration_dataset` for `--qat_epochs` (tfnas/deploy/qat.py, extra `qat`) and exports int8.
"""

from __future__ import annotations

from pathlib import Path

from tfnas import cli
from absl import flags

FLAGS = flags.FLAGS
flags.DEFINE_string("arch", None, "Architecture JSON (as written by the search).")
flags.DEFINE_string("model", None, "Trained Keras model (.keras); takes weights from it.")
flags.DEFINE_enum("quantize", "none", ["none", "dynamic", "int8", "qat"],
                  "none: float32; dynamic: int8 weights; int8: full integer (post-training, "
                  "calibrated); qat: quantization-aware fine-tuning, then int8.")
flags.DEFINE_string("calibration_dataset", None, "Dataset whose training images calibrate int8 "
                    "(digits, tfds:NAME, ...; default: random inputs) and fine-tune QAT.")
flags.DEFINE_integer("qat_epochs", 2, "Quantization-aware fine-tuning epochs.")
flags.DEFINE_float("qat_learning_rate", 1e-4, "Quantization-aware fine-tuning learning rate.")
flags.DEFINE_string("out", None, "Output .tflite path.")
flags.DEFINE_integer("calibration_samples", 100, "Inputs used to calibrate int8.")
flags.DEFINE_integer("seed", 0, "Seed of the initial weights (--arch alone) and calibration.")
flags.mark_flag_as_required("out")


def main(argv: list[str]) -> None:
    from tfnas.errors import TfnasError
    from tfnas.space import load_architecture

    if not FLAGS.arch and not FLAGS.model:
        raise TfnasError("give --arch=ARCH.json or --model=MODEL.keras")
    from tfnas.run.rundir import check_output

    check_output(FLAGS.out, "--out")
    if FLAGS.calibration_samples < 1:
        raise TfnasError("--calibration_samples must be at least 1")
    if FLAGS.quantize == "qat" and not (FLAGS.model and FLAGS.calibration_dataset):
        raise TfnasError("--quantize=qat fine-tunes a trained network: give --model=MODEL.keras "
                         "and --calibration_dataset=DATASET")
    if FLAGS.calibration_dataset:
        from tfnas import data

        data.check_spec(FLAGS.calibration_dataset)
    arch = load_architecture(FLAGS.arch) if FLAGS.arch else None
    if arch is None and FLAGS.model and (Path(FLAGS.model).parent / "arch.json").is_file():
        arch = load_architecture(Path(FLAGS.model).parent / "arch.json")
    if arch is None and (FLAGS.quantize == "qat" or FLAGS.calibration_dataset):
        raise TfnasError(f"no arch.json beside {FLAGS.model}: give --arch=ARCH.json")

    cli.import_tensorflow_quietly()  # after the checks: a bad flag stops in under a second
    import keras

    from tfnas.deploy import export
    from tfnas import nets
    from tfnas.run.files import write_bytes

    if FLAGS.model:
        model = _load_keras(FLAGS.model)
        if arch is not None:  # the metadata must describe this model
            export.check_matches(model, arch, FLAGS.model,
                                 FLAGS.arch or str(Path(FLAGS.model).parent / "arch.json"))
    else:
        keras.utils.set_random_seed(FLAGS.seed)
        model = nets.build(arch)
    shape = tuple(model.inputs[0].shape[1:])
    if FLAGS.quantize == "qat":
        from tfnas.deploy import qat

        quantized = qat.fine_tune(model, arch, FLAGS.calibration_dataset,
                                  epochs=FLAGS.qat_epochs, learning_rate=FLAGS.qat_learning_rate,
                                  seed=FLAGS.seed)
        flatbuffer = qat.to_tflite(quantized, arch)
    else:
        if FLAGS.calibration_dataset:
            calibration = export.calibration_images(FLAGS.calibration_dataset, arch.space,
                                                    FLAGS.calibration_samples, FLAGS.seed)
        else:
            calibration = export.representative_inputs(shape, FLAGS.calibration_samples,
                                                       FLAGS.seed)
        flatbuffer = export.to_tflite(model, quantize=FLAGS.quantize, arch=arch,
                                      representative_data=calibration)
    out = Path(FLAGS.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    write_bytes(out, flatbuffer)  # whole: a reader never sees half a model
    what = (f"{arch.space.name}: {arch.params():,} params, {arch.flops() / 1e6:.1f} MFLOPs"
            if arch else "no architecture metadata")
    print(f"wrote {out} ({len(flatbuffer) / 1e6:.2f} MB, quantize={FLAGS.quantize}, {what})")


def _load_keras(path: str):
    import keras

    from tfnas.errors import TfnasError, missing_file

    if not Path(path).is_file():
        raise missing_file(path, "model file")
    try:
        return keras.models.load_model(path)
    except Exception as err:  # Keras raises ValueError, OSError, zipfile errors...
        raise TfnasError(f"could not load Keras model {path}: {err}") from None


if __name__ == "__main__":
    cli.run(main)
