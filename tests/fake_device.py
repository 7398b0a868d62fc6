"""A fake `cmd:` device for pool tests: times a .tflite with this host's LiteRT interpreter and
prints `median_ms=X`, X multiplied by FACTOR (a slower device of another model). With
FAIL_AFTER and a COUNTER file, every call after the first FAIL_AFTER fails (a phone
unplugged mid-run). With FAKE_DEVICE_LOG set, each call appends "NAME SHA1-of-the-model" to
that file (which device timed which model: bench/device_pool.py counts them).

    python tests/fake_device.py MODEL RUNS WARMUP MIN_SECONDS NAME FACTOR [FAIL_AFTER COUNTER]
"""

from __future__ import annotations

import hashlib
import os
import sys
from pathlib import Path


def main() -> int:
    model, runs, warmup, seconds, name, factor = sys.argv[1:7]
    if len(sys.argv) > 7:
        fail_after, counter = int(sys.argv[7]), Path(sys.argv[8])
        calls = int(counter.read_text()) if counter.exists() else 0
        counter.write_text(str(calls + 1))
        if calls >= fail_after:
            print("error: device not found", file=sys.stderr)
            return 1
    from tfnas.latency.devices import LocalDevice

    result = LocalDevice(threads=1).benchmark(model, runs=int(runs), warmup=int(warmup),
                                              min_seconds=float(seconds))
    if os.environ.get("FAKE_DEVICE_LOG"):
        with open(os.environ["FAKE_DEVICE_LOG"], "a") as log:
            digest = hashlib.sha1(Path(model).read_bytes()).hexdigest()
            log.write(f"{name} {digest}\n")
    print(f"median_ms={result.p10_ms * float(factor):.6f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
