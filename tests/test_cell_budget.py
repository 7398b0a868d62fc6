"""Budgets of a DARTS cell search: the exact cost range of the derivable networks, the soft
(DCA-NAS Eq. 3) and derived costs in the search step, the solver that meets max budgets, and
the cell-search command's flags."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from conftest import search_error
from tfnas.costs import CELL_KINDS, CellCost
from tfnas.errors import TfnasError
from tfnas.search import cell_budget
from tfnas.search.cell_supernet import derive_cell, derived_one_hot
from tfnas.search.objectives import Constraint
from tfnas.space.cells import (CELL_OPS, Cell, CellArchitecture, Genotype, edge_count,
                               get_network)

# the evaluation network of a two-node search: small enough to enumerate every derivable cell
NETWORK = get_network("darts28", cells=3, init_channels=8, input_size=16)
NODES = 2


def _every_genotype(nodes=NODES):
    """Every derivable genotype with two nodes (node 2 from 0 and 1; node 3 two of 0, 1, 2)."""
    ops = [op for op in CELL_OPS if op != "none"]
    cells = []
    for a, b in itertools.product(ops, repeat=2):
        for pair in itertools.combinations(range(3), 2):
            for c, d in itertools.product(ops, repeat=2):
                cells.append(Cell(((a, 0), (b, 1), (c, pair[0]), (d, pair[1])), (2, 3)))
    return cells


def test_the_cost_range_is_the_cheapest_and_dearest_derivable_network():
    cost = CellCost.counting("params", NETWORK, NODES)
    cells = _every_genotype()
    # the normal and reduction cells are priced apart: extremes of each, combined
    lows, highs = [], []
    for kind in CELL_KINDS:
        values = [cost.of(CellArchitecture(NETWORK, Genotype(
            *((cell, cells[0]) if kind == "normal" else (cells[0], cell))))) for cell in cells]
        lows.append(min(values))
        highs.append(max(values))
    base = cost.of(CellArchitecture(NETWORK, Genotype(cells[0], cells[0])))
    low, high = cell_budget.cost_range(cost)
    assert low == pytest.approx(lows[0] + lows[1] - base, rel=1e-9)
    assert high == pytest.approx(highs[0] + highs[1] - base, rel=1e-9)


def _weights(seed):
    rng = np.random.default_rng(seed)
    w = rng.dirichlet(np.ones(len(CELL_OPS)), size=edge_count(NODES))
    return {kind: w if kind == "normal" else w[::-1].copy() for kind in CELL_KINDS}


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_the_compiled_derivation_is_derive_cell_and_prices_the_derived_network(seed):
    import tensorflow as tf

    weights = _weights(seed)
    beta = np.random.default_rng(seed + 10).uniform(0.1, 1, edge_count(NODES))
    for kind in CELL_KINDS:
        for b in (None, beta):
            cell = derive_cell(weights[kind], b, NODES)
            hot = derived_one_hot(tf.constant(weights[kind], tf.float32),
                                  None if b is None else tf.constant(b, tf.float32), NODES)
            picked = [(CELL_OPS[o], e) for e, o in zip(*np.nonzero(hot.numpy()))]
            sources = [s for _, s in [(n, s) for n in (2, 3) for s in range(n)]]
            assert [(op, sources[e]) for op, e in picked] == list(cell.edges)


def test_the_solver_returns_the_heaviest_network_within_the_budget_exactly():
    params = CellCost.counting("params", NETWORK, NODES)
    scores = {kind: np.log(w) for kind, w in _weights(3).items()}
    derived = CellArchitecture(NETWORK, Genotype(derive_cell(np.exp(scores["normal"]), None, 2),
                                                 derive_cell(np.exp(scores["reduce"]), None, 2)))
    low, _ = cell_budget.cost_range(params)
    budget = low + 0.3 * (params.of(derived) - low)  # below the search's own network
    constraint = Constraint(params, budget, "max")
    answer, moves = cell_budget.solve(derived, scores, [constraint])
    assert params.of(answer) <= budget and moves

    def weight(arch):
        total = 0.0
        for kind in CELL_KINDS:
            cell = getattr(arch.genotype, kind)
            rows = [0, 0, 2, 2]  # α row of each kept edge's node's first edge
            total += sum(scores[kind][rows[i] + s][CELL_OPS.index(op)]
                         for i, (op, s) in enumerate(cell.edges))
        return total

    # brute force over the normal cells with the reduction cell fixed to the answer's
    best = max((CellArchitecture(NETWORK, Genotype(cell, answer.genotype.reduce))
                for cell in _every_genotype()),
               key=lambda a: weight(a) if params.of(a) <= budget else -np.inf)
    assert weight(answer) == pytest.approx(weight(best), abs=1e-9)
    # within budget already: the search's own network comes back unchanged
    same, none = cell_budget.solve(derived, scores, [Constraint(params, 1e3, "max")])
    assert same == derived and none == []
    with pytest.raises(TfnasError, match="no network of cells meets"):
        cell_budget.solve(derived, scores, [Constraint(params, low * 0.99, "max")])


CELL_SEARCH = ("--space=darts_search", "--method=darts", "--cells=3", "--init_channels=4",
               "--nodes=2", "--eval_cells=5", "--eval_init_channels=8")


@pytest.mark.parametrize("args, expected", [
    (("--max_mparams=0.001",), "--max_mparams=0.001 is below the cheapest network: the "
                               "darts_cifar space spans"),
    (("--target_ms=5",), "--target_ms needs a latency model"),
    (("--device=local",), "--device=local: a search of DARTS cells measures its network "
                          "there in the units of its latency model: give "
                          "--latency_model=predictor:PATH or a cell --latency_table"),
    (("--energy_table=e.json",), "--energy_table: a search of DARTS cells prices latency with "
                                 "--latency_model=predictor:PATH or a cell --latency_table"),
    (("--latency_table=pixel1",), "--latency_table=pixel1: a search of DARTS cells needs a "
                                  "cell latency table"),
    (("--latency_model=predictor:/nope.json",), "latency predictor '/nope.json' does not exist"),
    (("--latency_samples=-1",), "--latency_samples"),
    (("--width_multiplier=0.5",), "--width_multiplier applies to layer spaces"),
    (("--method=superkernel",), "--method=superkernel does not search networks of DARTS "
                                "cells (--space=darts_search): choose darts, darts_2nd, pc_darts, "
                                "dca_nas"),
    (("--nodes=0",), "--nodes must be in [1, 8], got 0"),
    (("--eval_network=nope",), "unknown cell network 'nope'"),
    # dca_nas: a 2x bottleneck, then 4 partial-channel groups: C=4 has not 8 channels
    (("--method=dca_nas",), "--init_channels=4: --method=dca_nas with a channel bottleneck of "
                            "2 needs the cells' channels (C, 2C, 4C) to split by 2 and then "
                            "in 4 partial-channel groups"),
    (("--method=darts", "--cell_bottleneck=0"), "--cell_bottleneck must be at least 1, got 0"),
])
def test_bad_cell_search_flags_are_one_line(args, expected):
    message = search_error(*CELL_SEARCH, *args)
    assert expected in message and "\n" not in message


def test_a_layer_space_refuses_a_cell_method():
    message = search_error("--method=pc_darts")
    assert "--method=pc_darts does not search layer spaces (--space=tiny)" in message
    message = search_error("--method=softmax", "--derived_cells", "--cell_bottleneck=2")
    assert message == ("--cell_bottleneck, --derived_cells: for searches of DARTS cells "
                       "(--space=darts_search, ...), not --space=tiny")


@pytest.mark.long
@pytest.mark.e2e
def test_a_pc_darts_search_under_a_params_budget_ends_to_end_and_trains(tmp_path):
    """`python -m tfnas.search` on the cell space: PC-DARTS (partial channels, edge weights) on
    digits with a params budget between the cheapest and the search's unconstrained network,
    and a latency target priced by a predictor of the evaluation network (issue 21); the
    evaluation network of the derived cells holds both, and trains."""
    import json
    import subprocess
    import sys

    import numpy as np

    from conftest import ROOT
    from tfnas.latency import predictor
    from tfnas.search.budget import cost_range
    from tfnas.space import load_architecture

    network = get_network("darts_cifar", cells=5, init_channels=8, input_size=8,
                          input_channels=1)
    params = CellCost.counting("params", network, NODES)
    low, high = cell_budget.cost_range(params)
    budget = low + 0.75 * (high - low)
    rng = np.random.default_rng(0)
    samples = [CellArchitecture.sample(network, rng, NODES) for _ in range(100)]
    flops = CellCost.counting("flops", network, NODES)
    lpm = predictor.fit(network, samples, [0.05 + flops.of(a) / 10 for a in samples],
                        hidden=(16,), steps=300)
    lpm.save(tmp_path / "lpm.json")
    fastest, slowest = cost_range(lpm, network)
    target = fastest + 0.4 * (slowest - fastest)
    out = tmp_path / "run"
    done = subprocess.run(
        [sys.executable, "-m", "tfnas.search", *CELL_SEARCH, "--method=pc_darts",
         "--init_channels=8", "--dataset=digits", "--input_size=8", "--input_channels=1",
         "--epochs=1", "--warmup_epochs=0", "--batch_size=64", f"--max_mparams={budget}",
         f"--latency_model=predictor:{tmp_path / 'lpm.json'}", f"--target_ms={target}",
         f"--model_dir={out}", "--train_after_search", "--train_epochs=1",
         "--train_warmup_epochs=0"],
        capture_output=True, text=True, timeout=900, cwd=ROOT)
    assert done.returncode == 0, done.stderr[-2000:]
    arch = load_architecture(out / "arch.json")
    assert isinstance(arch, CellArchitecture) and arch.network.name == "darts_cifar"
    for cell in (arch.genotype.normal, arch.genotype.reduce):
        cell.check("derived")
        assert len(cell.edges) == 2 * NODES and all(op != "none" for op, _ in cell.edges)
    report = json.loads((out / "report.json").read_text())
    assert report["method"] == "pc_darts" and report["eval_space"] == "darts_cifar"
    latency, b = report["budgets"]
    assert b["holds"] and arch.params() / 1e6 <= budget
    assert b["predicted"] == pytest.approx(arch.params() / 1e6)
    assert latency["holds"] and lpm.of(arch) == pytest.approx(target, rel=0.01)
    assert report["predicted_ms"] == pytest.approx(lpm.of(arch))
    assert report["train"]["top1"] > 0.1  # one epoch on digits: above chance
    assert "params: target ≤" in done.stdout


def _cell_config(*args):
    from absl import flags

    from conftest import TINY_SEARCH
    from tfnas.search.command import config_from_flags
    from tfnas.search.flags import define_flags

    values = flags.FlagValues()
    define_flags(values)
    values(["tfnas.search", *TINY_SEARCH, *args])
    return config_from_flags(values)


def test_cells_flags_size_the_search_network_and_eval_flags_the_evaluation_network():
    config = _cell_config("--space=darts_search", "--method=darts", "--cells=5",
                          "--init_channels=8", "--input_size=8", "--input_channels=1")
    assert (config.space.cells, config.space.init_channels) == (5, 8)
    assert config.eval_space == get_network("darts_cifar", input_size=8, input_channels=1)
    assert config.objective is None and config.cost_model.name == "flops"  # plain DARTS
    config = _cell_config("--space=darts28_search", "--method=dca_nas", "--eval_cells=6",
                          "--eval_init_channels=12", "--max_mflops=20")
    assert config.eval_space == get_network("darts28", cells=6, init_channels=12)
    (budget,) = config.constraints
    assert budget.cost_model.network == config.eval_space and budget.target == 20


def test_the_lookup_graph_finds_the_search_budget_whose_derived_network_meets_the_device():
    from tfnas.search.lug import LookupGraph

    graph = LookupGraph("params", ((1.0, 1.4), (2.0, 2.2), (1.5, 1.6)))
    assert graph.search_budget(1.6) == pytest.approx(1.5)
    assert graph.search_budget(1.9) == pytest.approx(1.5 + 0.3 / 0.6 * 0.5)  # between points
    assert graph.search_budget(9.0) == 2.0  # above every point: the largest search
    with pytest.raises(TfnasError, match="cheapest derived network has 1.4 M params"):
        graph.search_budget(1.0)
    again = LookupGraph.from_dict(graph.to_dict())
    assert again.search_budget(1.9) == graph.search_budget(1.9)
    with pytest.raises(TfnasError, match="at least two searches"):
        LookupGraph("params", ((1.0, 1.2),))


def test_a_search_with_a_lookup_graph_searches_at_its_budget_without_the_solver(tmp_path):
    from tfnas.search.lug import LookupGraph

    path = tmp_path / "lug.json"
    LookupGraph("params", ((2.0, 2.4), (3.0, 3.4))).save(path)
    config = _cell_config("--space=darts_search", "--method=dca_nas", f"--lug={path}",
                          "--max_mparams=2.9")
    (budget,) = config.constraints
    assert budget.target == pytest.approx(2.5) and not config.repair
    assert config.lug == {"path": str(path), "metric": "params", "device_budget": 2.9,
                          "search_budget": pytest.approx(2.5)}
    common = ("--space=darts_search", "--method=dca_nas", f"--lug={path}")
    for args, expected in (((), f"--lug={path} looks up params budgets: give --max_mparams"),
                           (("--max_mparams=2.9", "--repair"), "--lug replaces the solver"),
                           (("--max_mparams=2.2",), "cheapest derived network has 2.4 M")):
        message = search_error(*common, *args)
        assert expected in message and "\n" not in message
    assert "no such file" in search_error("--space=darts_search", "--method=dca_nas",
                                          f"--lug={tmp_path / 'none.json'}", "--max_mparams=2")


def test_the_report_of_a_repaired_cell_search_names_the_network_before_the_moves():
    """A cell search whose solver moved a node wrote its report with the layer spaces' op
    names, which cell architectures do not have: the finished search crashed at its report."""
    from tfnas.search.knapsack import Move
    from tfnas.search.records import repair_report
    from tfnas.space.cells import Genotype

    derived = CellArchitecture(NETWORK, Genotype.named("darts_v2"))
    move = Move(3, "sep_conv_3x3/0 sep_conv_3x3/1", "skip_connect/0 sep_conv_3x3/1", -0.5,
                {"params": -0.1}, where="normal node 3")
    report = repair_report([move], derived)
    assert report["derived"] == derived.brief() and report["moves"][0]["where"] == "normal node 3"
    assert repair_report([], derived) is None
