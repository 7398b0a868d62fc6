"""What a search needs, as plain values (flags are turned into this in `tfnas.search.command`)."""

from __future__ import annotations

import dataclasses
from typing import Any

from tfnas.errors import TfnasError
from tfnas.search.objectives import Constraint, Objective
from tfnas.space.cells import is_cell_network


@dataclasses.dataclass(frozen=True)
class SearchConfig:
    """A search: the space and data, the cost it is reported in (`cost_model`), a fixed-λ
    term on that cost (`objective`, or None) and budgets with learned multipliers
    (`constraints`: latency target, params / FLOPs maxima). A cell search (`space` a
    `CellNetwork`, the search network) derives cells of `nodes` nodes for `eval_space`, the
    network they are built in (DARTS: searched with 8 cells, evaluated with 20), which the
    costs and budgets price."""

    space: Any  # SearchSpace | CellNetwork
    dataset: str
    cost_model: Any  # CostModel | LatencyPredictor: the cost the search reports and logs
    objective: Objective | None
    model_dir: str
    constraints: tuple[Constraint, ...] = ()
    method: str = "superkernel"
    epochs: int = 8
    warmup_epochs: int = 0
    batch_size: int = 64
    learning_rate: float = 0.01
    lr_schedule: str = "cosine"  # constant | cosine (decay to 0 over the search)
    seed: int = 0
    kernel_dropout: float = 0.0
    dropout_epochs: int = 0
    dropout: float = 0.2
    jit_compile: bool = False
    sync_bn: bool = True
    checkpoint_every: int = 50
    arch_learning_rate: float = 0.01  # Adam on α (multi-path methods)
    arch_split: float = 0.2  # training examples held out for α (multi-path methods)
    temperature: tuple[float, float] = (5.0, 0.5)  # Gumbel τ, first and last epoch
    rl_samples: int = 10  # proxyless_reinforce: networks sampled per α step
    rl_baseline_weight: float = 0.99  # proxyless_reinforce: baseline ← b + w·(mean reward − b)
    path_select: str = "auto"  # gather | switch | mask | auto (loop._path_select)
    repair: bool = True  # return the best-weighted network that meets every budget (budget.solve)
    target_tolerance: float = 0.01  # a target budget holds within ±1%
    latency_source: str | None = None  # what predicts latency, for the report
    nodes: int = 4  # cell searches: intermediate nodes per cell
    eval_space: Any = None  # cell searches: the CellNetwork of the derived cells (default space)
    # cell searches, DCA-NAS' search-time reductions (None: the method's own): the nodes at
    # C/b channels; one cell of each kind mixed by α, the others derived from it each step
    cell_bottleneck: int | None = None
    derived_cells: bool | None = None
    # cell searches priced by a latency predictor (LA-DARTS): networks sampled per step for
    # the expected latency (Eq. 2; 0: the derived cells), relative noise σ on the prediction
    latency_samples: int = 20
    latency_noise: float = 0.0
    # DCA-NAS' lookup graph: {path, metric, device_budget, search_budget} (`tfnas.search.lug`)
    lug: Any = None
    # (the latency target, like every budget, is a Constraint's target)
    verbose: bool = True

    def summary(self) -> dict[str, Any]:
        """The configuration as plain JSON values (cost models by name and source)."""
        values: dict[str, Any] = {}
        for field in dataclasses.fields(self):
            value = getattr(self, field.name)
            if field.name in ("space", "eval_space"):
                value = None if value is None else value.to_dict()
            elif field.name == "cost_model":
                value = {"name": value.name, "unit": value.unit}
            elif field.name == "objective":
                value = None if value is None else {"kind": value.kind, "lam": value.lam}
            elif field.name == "constraints":
                value = [c.summary() for c in value]
            elif isinstance(value, tuple):
                value = list(value)
            values[field.name] = value
        return values

    @property
    def cells(self) -> bool:
        """A search of DARTS cells (`space` a CellNetwork), not of one op per layer."""
        return is_cell_network(self.space)

    @property
    def derived_space(self) -> Any:
        """The space of the architecture the search returns (`eval_space` of a cell search)."""
        return self.eval_space if self.eval_space is not None else self.space

    @property
    def timed(self) -> Constraint | None:
        """The budget a device's meter measures (a latency target or maximum), if any."""
        return next((c for c in self.constraints if c.cost_model.timed), None)

    def __post_init__(self) -> None:
        settings = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        self.check_settings(settings)
        names = [c.name for c in self.constraints]
        if len(set(names)) != len(names):
            raise TfnasError(f"one budget per cost, got {', '.join(names)}")

    @staticmethod
    def check_settings(s: dict[str, Any]) -> None:
        """The plain settings' checks (every field but the costs), one TfnasError for all the
        problems: the command checks its flags with it before any work."""
        s = {**{f.name: f.default for f in dataclasses.fields(SearchConfig)
                if f.default is not dataclasses.MISSING}, **s}
        problems = []
        if s["epochs"] < 1:
            problems.append("epochs must be at least 1")
        if not 0 <= s["warmup_epochs"] < s["epochs"]:
            problems.append("warmup_epochs must be in [0, epochs)")
        if s["learning_rate"] <= 0:
            problems.append("learning_rate must be positive")
        if s["lr_schedule"] not in ("constant", "cosine"):
            problems.append(f"lr_schedule must be constant or cosine, got {s['lr_schedule']!r}")
        if not 0 <= s["kernel_dropout"] < 1:
            problems.append("kernel_dropout must be in [0, 1)")
        if s["checkpoint_every"] < 1:
            problems.append("checkpoint_every must be at least 1")
        if s["arch_learning_rate"] <= 0:
            problems.append("arch_learning_rate must be positive")
        if not 0 < s["arch_split"] < 1:
            problems.append("arch_split must be in (0, 1)")
        if s["rl_samples"] < 1:
            problems.append("rl_samples must be at least 1")
        if not 0 < s["rl_baseline_weight"] <= 1:
            problems.append("rl_baseline_weight must be in (0, 1]")
        if not min(s["temperature"]) > 0:
            problems.append("temperatures must be positive")
        if s["path_select"] not in ("auto", "gather", "switch", "mask"):
            problems.append("path_select must be auto, gather, switch or mask, got "
                            f"{s['path_select']!r}")
        if not 1 <= s["nodes"] <= 8:
            problems.append(f"nodes must be in [1, 8], got {s['nodes']}")
        if s["latency_samples"] < 0:
            problems.append("latency_samples must be 0 or more")
        if s["latency_noise"] < 0:
            problems.append("latency_noise must be 0 or more")
        if not 0 < s["target_tolerance"] < 1:
            problems.append("target_tolerance must be in (0, 1)")
        if problems:
            raise TfnasError("; ".join(problems))
