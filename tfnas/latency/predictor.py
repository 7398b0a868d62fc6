"""MLP latency predictor (LightNAS, Luo et al. Sec. 3.2; LA-DARTS' latency prediction module).

Input: the L x K one-hot encoding of an Architecture (`Architecture.one_hot`, columns in
`space.ops` order), flattened; for a network of DARTS cells LA-DARTS' encoding
(`CellArchitecture.one_hot`: 14 edges x 8 ops of the normal cell, 112 bits, and with
`reduce_cell` the reduction cell's 112 too). Output: latency in ms. The network is

    ms = y_mean + y_std · (x·w_lin + b_lin + MLP(x)),   MLP: dense + activation per hidden
                                                        width, then dense to 1

an MLP with a linear shortcut: the shortcut alone is a learned lookup table (latency is nearly
a sum over layers), the hidden layers learn what a table cannot (layers that overlap or
interfere). The hidden widths and their activation are the predictor's shape: the tools'
default is (64, 64) with ReLU; LightNAS' 128-64-1 is `hidden=(128, 64)`, and LA-DARTS' latency
prediction module (112-256-64-1, sigmoids) is `hidden=(112, 256, 64), activation="sigmoid"`.
It is trained with Adam on mean squared error (plain NumPy, seeded, so no TensorFlow is needed
to fit or use it), and is differentiable inside a search: `soft_cost` takes an L x K matrix of
op probabilities (a relaxed one-hot) as a tensor and returns ms.

Predictors are JSON files (`save` / `load`) that record the space and how their training
latencies were measured (`measurement`: device, statistic, reference network).
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from tfnas.errors import TfnasError, missing_file
from tfnas.run.files import write_text
from tfnas.space import Architecture, SearchSpace
from tfnas.space.architecture import space_from_dict
from tfnas.space.cells import is_cell_network

FORMAT = "tfnas.latency_predictor/1"


@dataclasses.dataclass
class LatencyPredictor:
    """A trained MLP from one-hot architectures to ms."""

    space: SearchSpace
    weights: list[np.ndarray]  # w_lin, b_lin, then (W, b) per dense layer
    y_mean: float
    y_std: float
    measurement: dict[str, Any] = dataclasses.field(default_factory=dict)
    metrics: dict[str, Any] = dataclasses.field(default_factory=dict)
    activation: str = "relu"  # of the hidden layers: relu, sigmoid or tanh
    reduce_cell: bool = False  # cell networks: the reduction cell's encoding too
    name: str = "latency"
    unit: str = "ms"

    def __post_init__(self) -> None:
        check_activation(self.activation)

    @property
    def timed(self) -> bool:
        """It predicts what a device's meter measures (a `tfnas.costs.CostSource`)."""
        return True

    @property
    def hidden(self) -> tuple[int, ...]:
        """Widths of the hidden layers."""
        return tuple(int(w.shape[1]) for w in self.weights[2:-2:2])

    # --- use -------------------------------------------------------------------------------

    def predict(self, archs: Sequence[Any]) -> np.ndarray:
        """Latency in ms of each architecture."""
        x = features(archs, self.reduce_cell)
        for arch in archs:
            if arch.space.name != self.space.name or x.shape[1] != len(self.weights[0]):
                raise TfnasError(f"the predictor is for space {self.space.name!r}, not "
                                 f"{arch.space.name!r}")
        return self.y_mean + self.y_std * _forward(self.weights, x, self.activation)[0]

    def predict_codes(self, codes: np.ndarray) -> np.ndarray:
        """Latency in ms of a batch of encodings ([N, ...] one-hots, flattened here)."""
        x = np.asarray(codes, np.float64).reshape(len(codes), -1)
        return self.y_mean + self.y_std * _forward(self.weights, x, self.activation)[0]

    def of(self, arch: Architecture) -> float:
        """Latency in ms of one architecture (the `tfnas.costs.CostSource` interface)."""
        return float(self.predict([arch])[0])

    def soft_cost(self, probabilities: Any) -> Any:
        """Differentiable ms of an L x K op-probability tensor (Keras ops, any backend)."""
        from keras import ops

        return ops.reshape(self.soft_costs(ops.expand_dims(probabilities, 0)), ())

    def soft_costs(self, batch: Any) -> Any:
        """Differentiable ms of each of a batch [N, L, K] of op-probability tensors (LA-DARTS'
        expected latency averages the predictions of sampled networks, its Eq. 2)."""
        from keras import ops

        x = ops.reshape(ops.cast(batch, "float32"), (ops.shape(batch)[0], -1))
        w = [ops.convert_to_tensor(v.astype(np.float32)) for v in self.weights]
        out = ops.matmul(x, ops.expand_dims(w[0], 1)) + w[1]
        h = x
        dense = w[2:]
        activate = getattr(ops, self.activation)
        for i in range(0, len(dense), 2):
            h = ops.matmul(h, dense[i]) + dense[i + 1]
            if i + 2 < len(dense):
                h = activate(h)
        return self.y_mean + self.y_std * ops.reshape(out + h, (-1,))

    # --- files -----------------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        return {"format": FORMAT, "space": self.space.to_dict(), "y_mean": self.y_mean,
                "y_std": self.y_std, "weights": [w.tolist() for w in self.weights],
                "activation": self.activation, "reduce_cell": self.reduce_cell,
                "measurement": self.measurement,
                "metrics": self.metrics}

    def save(self, path: str | Path) -> None:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        write_text(path, json.dumps(self.to_dict()) + "\n")

    @classmethod
    def load(cls, path: str | Path) -> "LatencyPredictor":
        path = Path(path)
        if not path.is_file():
            raise missing_file(path, "latency predictor",
                               "train one with python tools/train_predictor.py")
        try:
            data = json.loads(path.read_text())
            if data.get("format") != FORMAT:
                raise TfnasError(f"{path} is not a tfnas latency predictor")
            return cls(space_from_dict(data["space"]),
                       [np.asarray(w, np.float64) for w in data["weights"]],
                       float(data["y_mean"]), float(data["y_std"]),
                       dict(data.get("measurement", {})), dict(data.get("metrics", {})),
                       data.get("activation", "relu"), bool(data.get("reduce_cell", False)))
        except (json.JSONDecodeError, KeyError, TypeError, ValueError, AttributeError) as err:
            raise TfnasError(f"malformed latency predictor {path}: {err}") from None


ACTIVATIONS = ("relu", "sigmoid", "tanh")


def features(archs: Sequence[Any], reduce_cell: bool = False) -> np.ndarray:
    """The flattened one-hot of each architecture, [N, features] (see the module docstring)."""
    return np.stack([(a.one_hot(reduce=reduce_cell) if is_cell_network(a.space)
                      else a.one_hot()).reshape(-1) for a in archs]).astype(np.float64)


def check_activation(activation: str) -> None:
    if activation not in ACTIVATIONS:
        raise TfnasError(f"unknown predictor activation {activation!r}: choose "
                         f"{', '.join(ACTIVATIONS)}")


def _activate(h: np.ndarray, activation: str) -> np.ndarray:
    if activation == "relu":
        return np.maximum(h, 0.0)
    if activation == "sigmoid":
        return 1.0 / (1.0 + np.exp(-h))
    return np.tanh(h)


def _slope(a: np.ndarray, activation: str) -> np.ndarray:
    """The activation's derivative, from its output `a`."""
    if activation == "relu":
        return (a > 0).astype(a.dtype)
    if activation == "sigmoid":
        return a * (1.0 - a)
    return 1.0 - a * a


def _forward(weights: list[np.ndarray], x: np.ndarray, activation: str = "relu"
             ) -> tuple[np.ndarray, list[np.ndarray]]:
    """Output (N,) and the activations the backward pass needs."""
    w_lin, b_lin, dense = weights[0], weights[1], weights[2:]
    acts = [x]
    h = x
    for i in range(0, len(dense), 2):
        h = h @ dense[i] + dense[i + 1]
        if i + 2 < len(dense):
            h = _activate(h, activation)
        acts.append(h)
    return x @ w_lin + b_lin[0] + h[:, 0], acts


def _gradients(weights: list[np.ndarray], x: np.ndarray, y: np.ndarray,
               weight_decay: float, prior: np.ndarray, prior_decay: float,
               activation: str = "relu") -> list[np.ndarray]:
    pred, acts = _forward(weights, x, activation)
    err = 2.0 * (pred - y) / len(y)  # d(mean squared error)/d(pred)
    grads = [x.T @ err, np.array([err.sum()])]
    dense = weights[2:]
    delta = err[:, None]
    dense_grads: list[np.ndarray] = []
    for i in range(len(dense) - 2, -1, -2):
        dense_grads = [acts[i // 2].T @ delta, delta.sum(axis=0)] + dense_grads
        if i > 0:
            delta = (delta @ dense[i].T) * _slope(acts[i // 2], activation)
    grads += dense_grads
    grads[0] = grads[0] + prior_decay * (weights[0] - prior)  # the shortcut stays near the table
    return [g + weight_decay * w if w.ndim == 2 else g for g, w in zip(grads, weights)]


DEFAULT_HIDDEN = (64, 64)


def fit(space: Any, archs: Sequence[Any], latencies_ms: Sequence[float], *,
        hidden: Sequence[int] = DEFAULT_HIDDEN, activation: str = "relu", steps: int = 2000,
        learning_rate: float = 3e-3, weight_decay: float = 1e-1, seed: int = 0,
        table: Any = None, prior_decay: float = 1.0,
        reduce_cell: bool = False) -> LatencyPredictor:
    """Trains a predictor on measured architectures (full-batch Adam, seeded); `hidden`: the
    widths of the hidden layers (any number), `activation` theirs; `reduce_cell`: a cell
    network's encoding includes the reduction cell.

    With a `table` (the additive cost source of a calibrated latency table in the same units,
    `tfnas.costs.CostModel.from_table`; of a cell network, a per-edge table's `CellCost`), the linear shortcut starts as that table (each
    one-hot column's row, through the calibration) and is pulled back to it
    with `prior_decay`: the MLP and the shortcut then learn only what the table misses, which a
    few hundred noisy measurements can estimate, instead of the whole latency.
    """
    if len(archs) != len(latencies_ms) or len(archs) < 2:
        raise TfnasError(f"a predictor needs at least 2 measured architectures, got "
                         f"{len(archs)} with {len(latencies_ms)} latencies")
    x = features(archs, reduce_cell)
    y_ms = np.asarray(latencies_ms, np.float64)
    y_mean, y_std = float(y_ms.mean()), float(y_ms.std() or 1.0)
    y = (y_ms - y_mean) / y_std
    check_activation(activation)
    hidden = tuple(int(w) for w in hidden)
    if any(w < 1 for w in hidden):
        raise TfnasError(f"hidden layer widths must be positive, got {list(hidden)}")
    rng = np.random.default_rng(seed)
    d = x.shape[1]
    sizes = [d, *hidden, 1]
    prior, prior_bias = np.zeros(d), 0.0
    if table is not None:
        prior, prior_bias = (_cell_table_prior(archs, table, reduce_cell, y_mean, y_std)
                             if is_cell_network(space) else
                             _table_prior(space, table, y_mean, y_std))
    weights = [prior.copy(), np.array([prior_bias])]
    for n_in, n_out in zip(sizes[:-1], sizes[1:]):
        weights += [rng.normal(0, np.sqrt(2.0 / n_in), (n_in, n_out)) * (
            0.1 if n_out == 1 else 1.0), np.zeros(n_out)]
    m = [np.zeros_like(w) for w in weights]
    v = [np.zeros_like(w) for w in weights]
    for t in range(1, steps + 1):
        lr = learning_rate * 0.5 * (1 + np.cos(np.pi * t / steps))  # cosine decay
        for i, g in enumerate(_gradients(weights, x, y, weight_decay, prior,
                                         prior_decay if table is not None else 0.0,
                                         activation)):
            m[i] = 0.9 * m[i] + 0.1 * g
            v[i] = 0.999 * v[i] + 0.001 * g * g
            weights[i] -= lr * (m[i] / (1 - 0.9 ** t)) / (np.sqrt(v[i] / (1 - 0.999 ** t)) + 1e-8)
    return LatencyPredictor(space, weights, y_mean, y_std, activation=activation,
                            reduce_cell=reduce_cell)


PRIOR_DECAYS = (0.01, 0.1, 1.0, 10.0)


def choose_prior_decay(space: SearchSpace, archs: Sequence[Architecture],
                       latencies_ms: Sequence[float], table: Any, *,
                       candidates: Sequence[float] = PRIOR_DECAYS, folds: int = 5,
                       seed: int = 0, on_result: Any = None, **options: Any) -> float:
    """The `prior_decay` of `candidates` with the lowest k-fold cross-validated MAPE.

    How far a device's networks stray from its calibrated table is a property of the device
    and the space, so it is chosen from the measurements, not fixed: on this host 5-fold CV
    picked 0.1 for both `single_path` (CV MAPE 1.31% vs 1.42% at 1.0) and `tiny`.
    `on_result(prior_decay, mape)` is called after each candidate."""
    if len(archs) < 2 * folds:
        return 1.0
    order = np.random.default_rng(seed).permutation(len(archs))
    parts = np.array_split(order, folds)
    best, best_mape = None, np.inf
    for decay in candidates:
        mapes = []
        for part in parts:
            held = set(part.tolist())
            train = [i for i in order if i not in held]
            model = fit(space, [archs[i] for i in train], [latencies_ms[i] for i in train],
                        table=table, prior_decay=decay, seed=seed, **options)
            mapes.append(errors(model.predict([archs[i] for i in part]),
                                [latencies_ms[i] for i in part])["mape"])
        mape = float(np.mean(mapes))
        if on_result:
            on_result(decay, mape)
        if mape < best_mape:
            best, best_mape = decay, mape
    return float(best)


def _table_prior(space: SearchSpace, cost: Any, y_mean: float,
                 y_std: float) -> tuple[np.ndarray, float]:
    """An additive cost source (a calibrated table's per-layer rows) as a linear model of the
    flattened one-hot, in normalised units."""
    rows = np.zeros((space.num_layers, len(space.ops)))
    for i, layer in enumerate(cost.layers):
        for op, ms in layer.items():
            rows[i, space.ops.index(op)] = ms
    return rows.reshape(-1) / y_std, float((cost.fixed - y_mean) / y_std)


def _cell_table_prior(archs: Sequence[Any], cost: Any, reduce_cell: bool, y_mean: float,
                      y_std: float) -> tuple[np.ndarray, float]:
    """A per-edge latency table (`tfnas.costs.CellCost` in ms) as a linear model of LA-DARTS'
    encoding, in normalised units: each (edge, op) bit of the normal cell (and of the
    reduction cell with `reduce_cell`) is its row summed over the cells of that kind; what the
    encoding leaves out (the reduction cell, without `reduce_cell`) enters the bias as its
    mean over `archs`."""
    kinds = 2 if reduce_cell else 1
    rows = np.concatenate([np.asarray(cost.tables[k], float) for k in range(kinds)]).reshape(-1)
    x = features(archs, reduce_cell)
    bias = float(np.mean([cost.sum_of(a) for a in archs]) - np.mean(x @ rows))
    return rows / y_std, (bias - y_mean) / y_std


def errors(predicted: Sequence[float], measured: Sequence[float]) -> dict[str, float]:
    """MAPE (%), RMSE (ms) and the largest absolute error (ms)."""
    p, m = np.asarray(predicted, float), np.asarray(measured, float)
    return {"mape": float(np.mean(np.abs(p - m) / m) * 100),
            "rmse_ms": float(np.sqrt(np.mean((p - m) ** 2))),
            "max_error_ms": float(np.max(np.abs(p - m)))}
