"""Profiling a space into a latency table: every row measured once, resumable, usable."""

from __future__ import annotations

import json

import pytest

from tfnas.costs import CostModel
from tfnas.errors import TfnasError
from tfnas.latency.devices import LocalDevice
from tfnas.latency.profiler import profile
from tfnas.latency.table import LatencyTable
from tfnas.space import Architecture, get_space


class Stop(Exception):
    pass


def test_interrupted_profile_measures_only_the_missing_rows_when_run_again(tmp_path):
    space = get_space("tiny")
    out = tmp_path / "lut.json"
    first: list[str] = []

    def stop_after_five(key, stats):
        first.append(key)
        if len(first) == 5:
            raise Stop  # as if the process were killed after the 5th row was saved

    with pytest.raises(Stop):
        profile(space, LocalDevice(), out, runs=3, warmup=1, progress=False,
                on_row=stop_after_five)
    saved = LatencyTable.load(out)
    assert len(saved.rows) + len(saved.fixed_parts) == 5

    second: list[str] = []
    table = profile(space, LocalDevice(), out, runs=3, warmup=1, progress=False,
                    on_row=lambda key, stats: second.append(key))
    expected = len(space.signatures()) + 2  # every signature, plus stem and head
    assert len(second) == expected - 5 and not set(first) & set(second)
    assert len(table.rows) == len(space.signatures())
    assert set(table.fixed_parts) == {"stem", "head"}
    assert table.fixed_ms == pytest.approx(sum(table.fixed_parts.values()))
    # a third run has nothing left to measure
    third: list[str] = []
    profile(space, LocalDevice(), out, runs=3, warmup=1, progress=False,
            on_row=lambda key, stats: third.append(key))
    assert third == []
    # the table carries device metadata and per-row statistics, and serves the search
    data = json.loads(out.read_text())
    assert data["device"]["threads"] == 1 and data["device"]["dtype"] == "float32"
    assert all(data["stats"][key]["runs"] in (0, 3) for key in data["stats"])
    costs = CostModel.latency(space, table)
    big = Architecture.uniform(space, "mbconv_k5_e6")
    small = Architecture.uniform(space, "mbconv_k3_e3")
    assert costs.of(big) == pytest.approx(table.cost(big))
    assert table.cost(small) > table.fixed_ms > 0


def test_table_of_another_device_is_not_completed(tmp_path):
    out = tmp_path / "lut.json"
    LatencyTable({}, 0.0, {"device": "Pixel 1", "threads": 1, "dtype": "float32"}).save(out)
    with pytest.raises(TfnasError, match="was measured on"):
        profile(get_space("tiny"), LocalDevice(), out, runs=1, warmup=0, progress=False)
