"""Convert the Single-Path NAS Pixel 1 runtime model into tfnas' built-in `pixel1` table.

    python tools/convert_pixel1_table.py --src=pixel1_runtime_model.json \
        --out=tfnas/latency/tables/pixel1.json

The source is the authors' `nas-search/pixel1_runtime_model.json` (enyac-group/single-path-nas):
layer index (0..21) → column → ms, columns 0..3 being MBConv3x3-e3, 3x3-e6, 5x5-e3, 5x5-e6 (their
superkernel's order). Their runtime model, as their code computes it:

- layers 0 (MBConv3x3-e1, 32 → 16) and 21 (MBConv3x3-e6, 192 → 320) are fixed, not searched,
  and their runtime is inside the constant 19.5999 ms, "the rest of runtime (i.e., stem, head,
  logits, block0, block21)". Rows 0 and 21 of the file are therefore not used (row 0 was
  profiled on the fixed e=1 block: 3.86-3.98 ms whatever the column);
- a skipped layer costs 0 ms (Eq. 11-12: the e=3 indicator zeroes the layer's whole term).

So the `single_path` space's searchable layers 0..19 take rows 1..20. tfnas keys rows by layer
signature, so layers that share one (the repeated layers of a stage) get the mean of their
rows: a network whose repeated layers share one op costs exactly what the authors' per-layer
model gives (all MBConv3x3-e3: 65.69 ms, all MBConv5x5-e6: 131.46 ms).
"""

from __future__ import annotations

import json
from collections import defaultdict

from absl import flags

from tfnas import cli

FLAGS = flags.FLAGS
flags.DEFINE_string("src", None, "pixel1_runtime_model.json of the Single-Path NAS authors.")
flags.DEFINE_string("out", "tfnas/latency/tables/pixel1.json", "Where to write the table.")
flags.mark_flag_as_required("src")

FIXED_MS = 19.5999  # stem, head, logits and the fixed layers 0 and 21 (their constant)
FIRST_ROW = 1  # the file's row of the first searchable layer
COLUMNS = ("mbconv_k3_e3", "mbconv_k3_e6", "mbconv_k5_e3", "mbconv_k5_e6")


def main(argv: list[str]) -> None:
    from tfnas.errors import TfnasError
    from tfnas.latency.table import LatencyTable, fixed_geometry
    from tfnas.space import SKIP, get_space

    try:
        source = json.loads(open(FLAGS.src).read())
    except (OSError, json.JSONDecodeError) as err:
        raise TfnasError(f"cannot read {FLAGS.src}: {err}") from None
    space = get_space("single_path")
    rows_in_file = space.num_layers + 2  # with the fixed first and last layers
    if sorted(source, key=int) != [str(i) for i in range(rows_in_file)]:
        raise TfnasError(f"{FLAGS.src} must have layers 0..{rows_in_file - 1}")
    values = defaultdict(list)
    for i in range(space.num_layers):
        row = source[str(i + FIRST_ROW)]
        for column, op in enumerate(COLUMNS):
            values[space.signature(i, op)].append(float(row[str(column)]))
        if SKIP in space.candidates(i):
            values[space.signature(i, SKIP)].append(0.0)
    rows = {sig: round(sum(v) / len(v), 6) for sig, v in values.items()}
    table = LatencyTable(rows, FIXED_MS, {
        "device": "Pixel 1", "runtime": "TFLite (per-layer profile)", "threads": 1,
        "dtype": "float32", "space": "single_path",
        "source": "Single-Path NAS authors' pixel1_runtime_model.json (enyac-group/"
                  "single-path-nas): rows 1-20 for the searchable layers, repeated layers with "
                  "equal signatures averaged, skip 0 ms, fixed 19.5999 ms (stem, head, logits, "
                  "layers 0 and 21)"}, fixed_for=fixed_geometry(space))
    table.save(FLAGS.out)
    print(f"wrote {FLAGS.out}: {len(rows)} rows for the {space.num_layers} searchable layers")


if __name__ == "__main__":
    cli.run(main)
