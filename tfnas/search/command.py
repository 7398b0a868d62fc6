"""The SearchConfig that the flags of `python -m tfnas.search` (`tfnas.search.flags`) describe.

`request_from_flags(values)` checks them all (budgets against the space's range, the dataset
against the space, the `--train_*` flags), every problem one `TfnasError`, and its
`config(latency)` builds the configuration once the latency source exists (after a --device
table is profiled; `config_from_flags` when there is nothing to profile); `profile_device`
builds or completes a `--device` table. The command itself is `tfnas/search/__main__.py`.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from tfnas import costs
from tfnas.costs import CostModel
from tfnas.errors import TfnasError
from tfnas.search.objectives import Constraint, Objective
from tfnas.search.config import SearchConfig


def device_table_path(flags_values: Any) -> str:
    """Where `--device` profiling writes (or completes) its table."""
    f = flags_values
    return f.latency_table or str(Path(f.model_dir) / "lut.json")


def table_path(f: Any, space: Any) -> str | None:
    """The latency table the flags name: --latency_table, the --device table, or by default
    the built-in table that prices the space (the Single-Path authors' Pixel 1 model for
    `single_path` at its published geometry); None without one."""
    from tfnas.latency.table import BUILTIN_TABLES, LatencyTable

    if f.latency_table or f.device:
        return device_table_path(f)
    for name in BUILTIN_TABLES:
        try:
            LatencyTable.load(name).check_covers(space)
        except TfnasError:
            continue
        return name
    return None


def _predictor_path(f: Any) -> str | None:
    """PATH of --latency_model=predictor:PATH (None for table), the flag checked."""
    kind, _, path = f.latency_model.partition(":")
    if f.latency_model != "table" and not (kind == "predictor" and path):
        raise TfnasError(f"--latency_model={f.latency_model!r}: expected table or "
                         "predictor:PATH")
    return path or None


def _latency_model(f: Any, space: Any) -> tuple[Any, str | None]:
    """The latency source the flags name (predictor or table) and its name for the report
    ("table PATH", "predictor PATH"); the source is None without one (or while a --device
    table is still to be profiled)."""
    predictor_path = _predictor_path(f)
    if predictor_path:
        from tfnas.latency.predictor import LatencyPredictor

        model = LatencyPredictor.load(predictor_path)
        if model.space != space:
            raise TfnasError(f"predictor {predictor_path!r} was trained for space "
                             f"{model.space.name!r} ({model.space.num_layers} layers), "
                             f"not this {space.name!r}")
        return model, f"predictor {predictor_path}"
    path = table_path(f, space)
    if path is None:
        return None, None
    if f.device:  # the device's table: profiled first (`SearchRequest.device_latency`)
        return None, f"table {path}"
    return table_source(space, path, "ms", "--latency_table"), f"table {path}"


def table_source(space: Any, path: str, unit: str, flag: str) -> CostModel:
    """The cost source of a per-signature table, which must be in `unit`."""
    from tfnas.latency.table import LatencyTable

    table = LatencyTable.load(path)
    if table.unit != unit:
        raise TfnasError(f"{flag}={path}: the table is in {table.unit}, not {unit}")
    return CostModel.from_table(space, table, f"{flag.lstrip('-').replace('_', ' ')} {path!r}")


def _read_target(f: Any) -> None:
    """The latency target's flags, checked (the one place they are)."""
    if f.target_ms is not None and f.target_fraction is not None:
        raise TfnasError("give --target_ms or --target_fraction, not both")
    if f.target_ms is not None and not f.target_ms > 0:
        raise TfnasError(f"--target_ms must be positive, got {f.target_ms}")
    if f.target_fraction is not None and not 0 <= f.target_fraction <= 1:
        raise TfnasError(f"--target_fraction must be in [0, 1], got {f.target_fraction}")


def _settings(f: Any) -> dict[str, Any]:
    """The SearchConfig fields the flags set one to one."""
    return dict(
        dataset=f.dataset, model_dir=f.model_dir, method=f.method,
        epochs=f.epochs, warmup_epochs=f.warmup_epochs, batch_size=f.batch_size,
        learning_rate=f.learning_rate, lr_schedule=f.lr_schedule, seed=f.seed,
        kernel_dropout=f.kernel_dropout, dropout_epochs=f.dropout_epochs, dropout=f.dropout,
        jit_compile=f.jit_compile or bool(f.tpu), checkpoint_every=f.checkpoint_every,
        arch_learning_rate=f.arch_learning_rate, arch_split=f.arch_split,
        temperature=(f.tau_start, f.tau_end), rl_samples=f.rl_samples,
        rl_baseline_weight=f.rl_baseline_weight, path_select=f.path_select, repair=f.repair,
        target_tolerance=f.target_tolerance, nodes=f.nodes,
        cell_bottleneck=f.cell_bottleneck, derived_cells=f.derived_cells,
        latency_samples=f.latency_samples, latency_noise=f.latency_noise)


def _named(f: Any, err: TfnasError) -> TfnasError:
    """Names the flags in a configuration's problems: "--warmup_epochs must be in [0, epochs)"."""
    return TfnasError("; ".join(f"--{p}" if p.split(" ")[0] in f else p
                                for p in str(err).split("; ")))


@dataclasses.dataclass(frozen=True)
class SearchRequest:
    """What the flags ask for, every flag checked: all of a SearchConfig but the latency
    source, which a --device run profiles in between (`config`)."""

    flags: Any
    space: Any
    metric: str  # the cost the search reports: latency, energy, params or flops
    cost: str | None  # target or max (a latency budget), log or linear (fixed λ), or None
    ceilings: tuple[Constraint, ...]  # the max budgets of other sources (params, FLOPs, mJ)
    sources: dict[str, Any]  # metric → source, for those known before any profiling
    latency: Any  # the latency source, None until profiled or without one
    latency_name: str | None  # what predicts latency, as the report names it
    settings: dict[str, Any]
    # the configuration built when the flags were checked (None while a table is pending)
    checked: SearchConfig | None = dataclasses.field(default=None, compare=False, repr=False)

    @property
    def pending(self) -> bool:
        """A --device table is still to be profiled."""
        return bool(self.flags.device) and self.latency is None

    def device_latency(self) -> CostModel:
        """The latency source of the --device table, once `profile_device` has built it."""
        return table_source(self.space, device_table_path(self.flags), "ms", "--latency_table")

    def config(self, latency: Any = None) -> SearchConfig:
        """The configuration, with `latency` (a --device run's profiled table) or the latency
        source the flags named."""
        from tfnas.search import budget

        if latency is None and self.checked is not None:
            return self.checked
        f, space = self.flags, self.space
        latency = latency if latency is not None else self.latency
        if latency is None and (self.metric == "latency" or self.cost in ("target", "max")):
            raise TfnasError("this search needs its latency source: profile the device first")
        constraints = list(self.ceilings)
        derived = self.settings.get("eval_space") or space  # what the budgets price
        if self.cost in ("target", "max"):
            target = f.target_ms
            if target is None:
                low, high = budget.cost_range(latency, derived)
                target = low + f.target_fraction * (high - low)
            constraints.insert(0, Constraint(
                latency, target, self.cost, flag="--target_ms", lam_init=f.lam_init,
                lam_rate=f.lam_rate, kappa=f.lam_kappa))
            budget.check_feasible(constraints[0], derived)  # an unreachable target stops here
        sources = {**self.sources, "latency": latency}
        objective = (Objective(self.cost, f.lam) if self.cost in ("log", "linear") else None)
        try:
            return SearchConfig(
                space=space, cost_model=sources[self.metric], objective=objective,
                constraints=tuple(constraints), **self.settings,
                latency_source=self.latency_name if latency is not None else None)
        except TfnasError as err:
            raise _named(f, err) from None

    def summary(self) -> dict[str, Any]:
        """The configuration as JSON values; before a --device table is profiled, what will be
        searched on it."""
        if not self.pending:
            return self.config().summary()
        return {"space": self.space.to_dict(), "cost_model": {
            "name": self.metric, "pending": f"profiled on --device={self.flags.device}"},
            "cost": self.cost, "target_ms": self.flags.target_ms,
            "target_fraction": self.flags.target_fraction,
            "constraints": [c.summary() for c in self.ceilings], **self.settings}


def request_from_flags(flags_values: Any) -> SearchRequest:
    """Checks every flag (budgets against the space's range, the dataset against the space,
    the `--train_*` flags) before any work; every problem is one TfnasError. With --device,
    what needs the device's table (a --target_fraction's ms, the target's feasibility) is
    checked by `SearchRequest.config` once the table is profiled."""
    from tfnas import cli, data
    from tfnas.search import budget, methods
    from tfnas.space.cells import is_cell_network

    f = flags_values
    if f.device:
        from tfnas.latency.pool import parse_devices
        from tfnas.latency.table import BUILTIN_TABLES
        from tfnas.run.rundir import check_output

        parse_devices(f.device, threads=f.threads)  # a bad spec stops here
        if f.latency_table in BUILTIN_TABLES:
            raise TfnasError(f"--latency_table={f.latency_table} is a built-in table; with "
                             "--device the table is that device's own: give a JSON path to "
                             "build or complete (default MODEL_DIR/lut.json)")
        check_output(device_table_path(f), "--latency_table")
    space = cli.search_space_from_flags(f)
    methods.get(f.method).check_space(space)
    _read_target(f)
    settings = _settings(f)
    cells = is_cell_network(space)
    derived = space  # the space of the architecture the search returns
    if cells:
        derived = _cell_search(f, space)
        settings["eval_space"] = derived
        latency, latency_name = _cell_latency_model(f, derived)
    else:
        cell_only = [n for n in ("cell_bottleneck", "derived_cells") if getattr(f, n) is not None]
        if cell_only:
            raise TfnasError(f"{', '.join('--' + n for n in cell_only)}: for searches of DARTS "
                             f"cells (--space=darts_search, ...), not --space={f.space}")
        latency, latency_name = _latency_model(f, space)
    has_latency = latency is not None or bool(f.device)
    has_target = f.target_ms is not None or f.target_fraction is not None
    sources: dict[str, Any] = costs.exact_sources(derived, f.nodes)
    if f.energy_table:
        sources["energy"] = table_source(space, f.energy_table, "mJ", "--energy_table")
    lug = _lookup_graph(f)
    if lug is not None:
        settings["repair"] = False
    ceilings = []
    for value, metric, flag in ((f.max_mparams, "params", "--max_mparams"),
                                (f.max_mflops, "flops", "--max_mflops"),
                                (f.max_mj, "energy", "--max_mj")):
        if value is None:
            continue
        if metric not in sources:
            raise TfnasError(f"{flag} needs --energy_table (a table in mJ)")
        ceilings.append(Constraint(sources[metric], value, "max", flag=flag,
                                   lam_init=f.lam_init, lam_rate=f.lam_rate, kappa=f.lam_kappa))
        budget.check_feasible(ceilings[-1], derived)  # an unreachable budget stops here
        if lug is not None and lug.metric == metric:  # DCA-NAS: search at the looked-up K_d'
            looked_up = lug.search_budget(value)
            settings["lug"] = {"path": f.lug, "metric": metric, "device_budget": value,
                               "search_budget": looked_up}
            ceilings[-1] = dataclasses.replace(ceilings[-1], target=looked_up)
    # default: a target's budget; with only other budgets (or on cells, DARTS), no fixed-λ term
    cost = f.cost or ("target" if has_target else None if ceilings or cells else "log")
    if cost in ("target", "max") and not has_target:
        raise TfnasError(f"--cost={cost} needs --target_ms or --target_fraction (for "
                         "params, FLOPs or energy budgets use --max_mparams / --max_mflops / "
                         "--max_mj)")
    if cost in ("log", "linear") and has_target:
        raise TfnasError(f"--target_ms / --target_fraction is a budget: use --cost=target or "
                         f"max (or leave --cost unset), not --cost={cost}")
    if f.cost_metric == "latency" and not has_latency:
        raise TfnasError("--cost_metric=latency needs --latency_table (a JSON table or pixel1), "
                         "--device or --latency_model=predictor:PATH")
    if cost in ("target", "max") and not has_latency:
        raise TfnasError("--target_ms needs a latency model: --latency_table, --device or "
                         "--latency_model=predictor:PATH")
    metric = f.cost_metric or ("latency" if has_latency else "flops")
    if metric == "energy" and "energy" not in sources:
        raise TfnasError("--cost_metric=energy needs --energy_table (a table in mJ)")
    data.check_spec(f.dataset, space.num_classes, space.input_channels)
    if f.train_after_search:  # the --train_* flags stop here too, not after the search
        from tfnas.train import command as train
        from tfnas.space import Architecture
        from tfnas.space.cells import CellArchitecture, placeholder_genotype

        some_network = (CellArchitecture(derived, placeholder_genotype(f.nodes)) if cells else
                        Architecture(space, tuple(space.candidates(i)[0]
                                                  for i in range(space.num_layers))))
        train.config_from_flags(f, some_network, f.dataset, f.model_dir, f.seed, False,
                                prefix="train_")
    try:
        SearchConfig.check_settings(settings)
    except TfnasError as err:
        raise _named(f, err) from None
    request = SearchRequest(f, space, metric, cost, tuple(ceilings), sources, latency,
                            latency_name, settings)
    if request.pending:
        return request
    # built once here: the target checked against the latency source's range
    return dataclasses.replace(request, checked=request.config())


def _lookup_graph(f: Any) -> Any:
    """--lug's graph, checked against the flags: it replaces its cost's max budget's target
    and the solver."""
    if not f.lug:
        return None
    from tfnas.search.lug import LookupGraph

    graph = LookupGraph.load(f.lug)
    flag = {"params": "max_mparams", "flops": "max_mflops"}[graph.metric]
    if getattr(f, flag) is None:
        raise TfnasError(f"--lug={f.lug} looks up {graph.metric} budgets: give --{flag}")
    if f["repair"].present and f.repair:
        raise TfnasError("--lug replaces the solver (DCA-NAS derives without one): leave out "
                         "--repair")
    return graph


# flags a cell search has no use for yet
_UNSUPPORTED_ON_CELLS = ("energy_table", "max_mj")


def _cell_search(f: Any, space: Any) -> Any:
    """The checks of a search of DARTS cells; returns the evaluation network (--eval_network,
    with --space's input and classes)."""
    from tfnas import cli
    from tfnas.search import methods
    from tfnas.space.cells import EVALUATED_IN

    given = [name for name in _UNSUPPORTED_ON_CELLS if getattr(f, name) not in (None, "")]
    given += ["cost_metric"] if f.cost_metric == "energy" else []
    if given:
        raise TfnasError(f"{', '.join('--' + n for n in given)}: a search of DARTS cells "
                         "prices latency with --latency_model=predictor:PATH or a cell "
                         "--latency_table (tools/train_predictor.py, tools/build_lut.py), "
                         "params and FLOPs exactly; it has no energy model yet")
    if f.device and not (_predictor_path(f) or f.latency_table):
        raise TfnasError(f"--device={f.device}: a search of DARTS cells measures its network "
                         "there in the units of its latency model: give "
                         "--latency_model=predictor:PATH or a cell --latency_table measured on "
                         "that device (tools/train_predictor.py, tools/build_lut.py)")
    methods.get(f.method).check_widths(space, f.cell_bottleneck)
    name = f.eval_network or EVALUATED_IN.get(f.space, f.space)
    return cli.cell_network_from_flags(f, name, cells=f.eval_cells,
                                       init_channels=f.eval_init_channels)


def _cell_latency_model(f: Any, network: Any) -> tuple[Any, str | None]:
    """The latency source of a cell search (of `network`, the evaluation network): a
    predictor (--latency_model=predictor:PATH, LA-DARTS' LPM or tfnas' own) or a per-edge
    table (--latency_table, `tfnas.latency.cell_table`), each checked against the network
    and --nodes; (None, None) without one."""
    path = _predictor_path(f)
    if path:
        from tfnas.latency.cell_table import describe
        from tfnas.latency.predictor import LatencyPredictor
        from tfnas.search.cell_budget import predictor_nodes

        model = LatencyPredictor.load(path)
        if model.space != network or predictor_nodes(model) != f.nodes:
            raise TfnasError(f"predictor {path!r} was trained on other networks of cells "
                             f"({describe(model.space, predictor_nodes(model))}), not on "
                             f"{describe(network, f.nodes)}")
        return model, f"predictor {path}"
    if not f.latency_table:
        return None, None
    from tfnas.latency.cell_table import CellLatencyTable, is_cell_table

    if not is_cell_table(f.latency_table):
        raise TfnasError(f"--latency_table={f.latency_table}: a search of DARTS cells needs a "
                         "cell latency table (tools/build_lut.py --space=darts28 ...)")
    table = CellLatencyTable.load(f.latency_table)
    table.check_for(network, f.nodes, f"--latency_table={f.latency_table}")
    return costs.CellCost.from_table(table), f"table {f.latency_table}"


def config_from_flags(flags_values: Any) -> SearchConfig:
    """The SearchConfig the flags describe (no --device table to profile first)."""
    return request_from_flags(flags_values).config()


def _device_meter(f: Any, space: Any) -> Any:
    """The Meter of `--device` (checked) with the --profile_* flags, timed beside `space`'s
    reference network."""
    from tfnas.latency.meter import Meter, default_reference
    from tfnas.latency.pool import parse_devices

    device = parse_devices(f.device, threads=f.threads)
    device.check()
    return Meter(device, runs=f.profile_runs, min_seconds=f.profile_seconds,
                 repeats=f.profile_repeats, reference=default_reference(space))


def cell_meter(f: Any, network: Any) -> Any:
    """The Meter that times a cell search's network on `--device`, in its latency model's
    units: the predictor's dataset (statistic, reference network, anchors) or the cell
    table's (anchored to its calibration networks); the device is checked."""
    from tfnas.latency import measured

    meter = _device_meter(f, network)
    path = _predictor_path(f)
    if path:
        from tfnas.latency.predictor import LatencyPredictor

        dataset = LatencyPredictor.load(path).metrics.get("dataset")
        if not dataset or not Path(dataset).exists():
            raise TfnasError(f"--device: predictor {path!r} does not name the dataset it was "
                             f"trained on ({dataset or 'none'}), whose units the network must "
                             "be measured in")
        _, _, record = measured.load(dataset, network)
        meter.join(record, dataset)
    else:
        from tfnas.latency.cell_table import CellLatencyTable

        table = CellLatencyTable.load(f.latency_table)
        meter.join(table.device, f.latency_table)
        meter.anchor_to(table)
    return meter


def profile_device(f: Any, space: Any) -> Any:
    """Profiles `--device` into its table (only missing rows and calibration networks) and
    returns a Meter anchored to that table (measurements in the table's units); anchors this
    call has just measured count as timed now (`Meter.anchor_seconds`)."""
    import time

    from tfnas.latency.meter import ANCHORS
    from tfnas.latency.profiler import calibrate, profile

    meter = _device_meter(f, space)
    path = device_table_path(f)
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    table = profile(space, meter, path)
    known = [list(a) for a in table.calibration.get("archs", [])]
    started = time.monotonic()
    calibrate(table, space, meter, path, num_archs=f.calibration_archs)
    anchors = table.calibration.get("archs", [])[:ANCHORS]
    fresh = bool(anchors) and not any(list(a) in known for a in anchors)
    meter.anchor_to(table, measured_at=started if fresh else None)
    return meter
