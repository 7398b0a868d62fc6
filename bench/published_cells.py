"""Published DARTS cells in tfnas: their evaluation networks' size next to the papers' tables,
and their float TFLite exports against Keras.

    python bench/published_cells.py                          # export at the search size
    python bench/published_cells.py --export_network=darts_cifar   # the 20-cell networks

Params as the papers count them: trainable weights, without the auxiliary head (PyTorch's
count; Keras also counts BN's moving statistics, the `keras params` column). Multiply-adds:
convolutions and the classifier. The export compares LiteRT's logits with Keras' on random
inputs after BN statistics are set from them (`nets.recalibrate_batchnorm`), as the largest
difference relative to the largest logit; the same model on LiteRT's reference kernels
against its default (XNNPACK) kernels is the float32 noise floor of that network.
"""

from __future__ import annotations

import argparse
import time

import numpy as np

# the papers' tables: (network, genotype) -> (params in M, multiply-adds in M or None)
PUBLISHED_FIGURES = {
    ("darts_cifar", "darts_v1"): (3.3, None),  # DARTS Table 1, first order
    ("darts_cifar", "darts_v2"): (3.3, None),  # DARTS Table 1, second order
    ("darts_cifar", "pc_darts_cifar"): (3.6, None),  # PC-DARTS Table 1
    ("darts_imagenet", "darts_v2"): (4.7, 574),  # DARTS Table 2
    ("darts_imagenet", "pc_darts_imagenet"): (5.3, 597),  # PC-DARTS Table 2
}


def _logits(flatbuffer: bytes, images: np.ndarray, reference: bool) -> np.ndarray:
    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    kind = OpResolverType.BUILTIN_REF if reference else OpResolverType.AUTO
    interpreter = Interpreter(model_content=flatbuffer, experimental_op_resolver_type=kind)
    interpreter.allocate_tensors()
    out = []
    for image in images:
        interpreter.set_tensor(interpreter.get_input_details()[0]["index"], image[None])
        interpreter.invoke()
        out.append(interpreter.get_tensor(interpreter.get_output_details()[0]["index"])[0])
    return np.stack(out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--export_network", default="darts_search",
                        help="cell network the exports use (none: skip the exports)")
    args = parser.parse_args()

    from tfnas import nets
    from tfnas.deploy import export
    from tfnas.space.cells import PUBLISHED, cell_architecture

    print("network         genotype           params (M)  paper (M)  keras params  "
          "MFLOPs  paper MFLOPs")
    for (network, name), (paper, paper_flops) in PUBLISHED_FIGURES.items():
        arch = cell_architecture(network, name)
        model = nets.build(arch)
        trainable = sum(int(np.prod(w.shape)) for w in model.trainable_weights)
        print(f"{network:<15} {name:<18} {trainable / 1e6:>10.3f} {paper:>10.1f} "
              f"{arch.params():>13,} {arch.flops() / 1e6:>7.1f} "
              f"{paper_flops if paper_flops else '-':>13}")
    if args.export_network == "none":
        return
    print(f"\nfloat TFLite against Keras, {args.export_network} network")
    print("genotype           convert s   max rel. error  noise floor (ref vs XNNPACK)")
    for name in PUBLISHED:
        arch = cell_architecture(args.export_network, name)
        n = arch.network
        shape = (n.input_size, n.input_size, n.input_channels)
        model = nets.build(arch)
        nets.recalibrate_batchnorm(model, export.representative_inputs(shape, 64, seed=9))
        start = time.perf_counter()
        flatbuffer = export.to_tflite(model, arch=arch)
        seconds = time.perf_counter() - start
        images = export.representative_inputs(shape, 10, seed=1)
        ref = np.asarray(model(images, training=False))
        got = _logits(flatbuffer, images, reference=False)
        floor = _logits(flatbuffer, images, reference=True)
        scale = np.abs(ref).max()
        print(f"{name:<18} {seconds:>9.1f} {np.abs(got - ref).max() / scale:>16.2e} "
              f"{np.abs(floor - got).max() / scale:>28.2e}")


if __name__ == "__main__":
    main()
