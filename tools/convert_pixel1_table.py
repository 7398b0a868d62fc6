"""Convert the Single-Path NAS Pixel 1 runtime model into tfnas' built-in `pixel1` table.

    python tools/convert_pixel1_table.py --src=../shared/data/pixel1/pixel1_runtime_model.json \
        --out=tfnas/latency/tables/pixel1.json

The source maps layer index (0..21) → column → ms, columns 0..3 being MBConv3x3-e3, 3x3-e6,
5x5-e3, 5x5-e6 (the authors' superkernel order). Their code adds 19.5999 ms for stem, head and
logits, and 0.7 ms for a skipped layer. tfnas keys rows by layer signature, so layers that share
a signature (the repeated layers of a stage) get the mean of their rows: a network whose
repeated layers share one op costs exactly what the authors' per-layer table gives.
"""

from __future__ import annotations

import json
from collections import defaultdict

from tfnas import cli
from absl import flags

FLAGS = flags.FLAGS
flags.DEFINE_string("src", None, "pixel1_runtime_model.json of the Single-Path NAS authors.")
flags.DEFINE_string("out", "tfnas/latency/tables/pixel1.json", "Where to write the table.")
flags.mark_flag_as_required("src")

FIXED_MS = 19.5999   # stem, head and logits (their supernet's constant)
SKIP_MS = 0.7        # their "negligible, non-zero" cost of a skipped layer
COLUMNS = ("mbconv_k3_e3", "mbconv_k3_e6", "mbconv_k5_e3", "mbconv_k5_e6")


def main(argv: list[str]) -> None:
    from tfnas.errors import TfnasError
    from tfnas.latency.table import LatencyTable
    from tfnas.space import SKIP, get_space

    try:
        source = json.loads(open(FLAGS.src).read())
    except (OSError, json.JSONDecodeError) as err:
        raise TfnasError(f"cannot read {FLAGS.src}: {err}") from None
    space = get_space("single_path")
    if sorted(source, key=int) != [str(i) for i in range(space.num_layers)]:
        raise TfnasError(f"{FLAGS.src} must have layers 0..{space.num_layers - 1}")
    values = defaultdict(list)
    for i in range(space.num_layers):
        for column, op in enumerate(COLUMNS):
            values[space.signature(i, op)].append(float(source[str(i)][str(column)]))
        if SKIP in space.candidates(i):
            values[space.signature(i, SKIP)].append(SKIP_MS)
    rows = {sig: round(sum(v) / len(v), 6) for sig, v in values.items()}
    table = LatencyTable(rows, FIXED_MS, {
        "device": "Pixel 1", "runtime": "TFLite (per-layer profile)", "threads": 1,
        "dtype": "float32", "space": "single_path",
        "source": "Single-Path NAS authors' pixel1_runtime_model.json (enyac-group/"
                  "single-path-nas); repeated layers with equal signatures averaged"})
    table.save(FLAGS.out)
    print(f"wrote {FLAGS.out}: {len(rows)} rows from {space.num_layers} layers")


if __name__ == "__main__":
    cli.run(main, tensorflow=False)
