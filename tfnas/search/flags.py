"""The flags of `python -m tfnas.search` and what its run directories record of them.

`define_flags()` defines every flag (the sweep defines them too, and passes them on);
`run_settings` / `train_settings` are what the search's and its training's run directories
record (`tfnas.run.rundir`). `tfnas.search.command` turns the flags into a configuration.
"""

from __future__ import annotations

from typing import Any

from tfnas.search.objectives import DEFAULT_KAPPA, DEFAULT_LAM_RATE


def define_flags(values: Any = None) -> None:
    """Every flag of `python -m tfnas.search` (also the sweep's, which passes them on), into
    `values` (the process's FLAGS by default)."""
    from tfnas import cli, data
    from tfnas.run import distribute
    from tfnas.search import methods, objectives

    flags = cli.Definer(values, __name__)
    cli.define_space_flags(default="single_path", values=values)
    cli.define_cell_flags(values)
    flags.DEFINE_integer("nodes", 4, "Cell searches: intermediate nodes per cell (DARTS: 4).")
    flags.DEFINE_integer("cell_bottleneck", None, "Cell searches: DCA-NAS' channel bottleneck "
                         "b, the search cells' nodes at C/b channels (default: the method's, "
                         "2 for dca_nas, else 1).")
    flags.DEFINE_boolean("derived_cells", None, "Cell searches: DCA-NAS' derived cells, only "
                         "the first cell of each kind mixed by α, the others the cells derived "
                         "from α each step (default: the method's, on for dca_nas).")
    flags.DEFINE_integer("latency_samples", 20, "Cell searches with a latency predictor: "
                         "networks sampled from α whose mean predicted latency the budget "
                         "prices (LA-DARTS Eq. 2, M = 20); 0: the cells derived now, straight "
                         "through (LightNAS).", lower_bound=0)
    flags.DEFINE_float("latency_noise", 0.0, "Cell searches with a latency predictor: "
                       "multiply the predicted latency by 1 + σ·N(0, 1) at every step "
                       "(LA-DARTS' robustness test); σ here.", lower_bound=0.0)
    flags.DEFINE_string("eval_network", None, "Cell searches: the network the derived cells "
                        "are built in, which arch.json holds and the budgets price (default: "
                        "darts_cifar for darts_search, darts28 for darts28_search, else "
                        "--space itself), with --space's input size, channels and classes.")
    cli.define_cell_flags(values, prefix="eval_", what="Cell searches, the evaluation network",
                          module=__name__)
    flags.DEFINE_string("dataset", "tfds:imagenet2012", f"Dataset: {', '.join(data.KINDS)}.")
    flags.DEFINE_enum("method", "superkernel", list(methods.METHODS),
                      f"Search method: {methods.describe()}.")
    flags.DEFINE_float("arch_learning_rate", 0.01, "Adam learning rate of α (multi-path).")
    flags.DEFINE_float("arch_split", 0.2, "Training examples held out to learn α (multi-path).")
    flags.DEFINE_integer("rl_samples", 10, "proxyless_reinforce: networks sampled per α step "
                         "(ProxylessNAS: 10).", lower_bound=1)
    flags.DEFINE_float("rl_baseline_weight", 0.99, "proxyless_reinforce: the reward baseline "
                       "moves this fraction of the way to each step's mean reward.")
    flags.DEFINE_float("tau_start", 5.0, "Gumbel temperature of the first epoch.")
    flags.DEFINE_float("tau_end", 0.5, "Gumbel temperature of the last epoch.")
    flags.DEFINE_enum("path_select", "auto", ["auto", "gather", "switch", "mask"],
                      "How gumbel, proxyless and derived cells run the chosen path: gather "
                      "(its weights in one MBConv of the layer's largest shape: one network's "
                      "activations, no conditional; mixed ops only), switch (that path alone in "
                      "a conditional: its FLOPs only, several times the memory), mask (every "
                      "path, one kept), auto (gather for mixed ops; cells: mask with "
                      "--jit_compile or several replicas off TPUs, else switch).")
    flags.DEFINE_string("latency_table", None,
                        "Latency table JSON, or a built-in table (pixel1). Default: with "
                        "--device, MODEL_DIR/lut.json; else pixel1 where it prices the space "
                        "(single_path at 224x224, 1000 classes).")
    flags.DEFINE_string("latency_model", "table", "What predicts latency: table (the "
                        "--latency_table or --device table) or predictor:PATH (an MLP from "
                        "tools/train_predictor.py).")
    flags.DEFINE_enum("cost_metric", None, ["latency", "energy", "params", "flops"],
                      "What R counts: latency (ms, from --latency_table), energy (mJ, from "
                      "--energy_table), params (M) or FLOPs (M multiply-adds). Default: "
                      "latency with a table, else flops.")
    flags.DEFINE_enum("cost", None, list(objectives.KINDS),
                      "Cost term: target (reach --target_ms: CE + λ(R/T − 1), λ learned), max "
                      "(R ≤ --target_ms, λ ≥ 0 learned), log (CE + λ log R, the paper's Eq. 9) "
                      "or linear (CE + λ R) with a fixed --lam. Default: target with "
                      "--target_ms; none with only --max_mparams / --max_mflops; else log.")
    flags.DEFINE_float("lam", 0.02, "λ of --cost=log|linear (the paper: 0.020).")
    flags.DEFINE_float("target_ms", None, "Latency target in ms: the search lands on it "
                       "(--cost=target, the default) or stays under it (--cost=max).")
    flags.DEFINE_float("target_fraction", None, "Latency target as a fraction of the space's "
                       "range under the latency model: 0 is its cheapest network, 1 its dearest "
                       "(the target in ms then follows on any device; instead of --target_ms).")
    flags.DEFINE_float("max_mparams", None, "Budget: at most this many million parameters "
                       "(a learned multiplier; combines with the others).")
    flags.DEFINE_float("max_mflops", None, "Budget: at most this many million multiply-adds.")
    flags.DEFINE_string("lug", None, "DCA-NAS' lookup graph (lug.json from python -m "
                        "tfnas.sweep --budgets_mparams=...): search with the budget whose "
                        "derived network met --max_mparams (or --max_mflops) there, instead of "
                        "that budget, and without the solver (--norepair).")
    flags.DEFINE_string("energy_table", None, "Energy table JSON: rows per layer signature "
                        "in mJ, as a latency table holds ms (\"unit\": \"mJ\"); for --max_mj "
                        "or --cost_metric=energy.")
    flags.DEFINE_float("max_mj", None, "Budget: at most this many mJ per inference under "
                       "--energy_table.")
    flags.DEFINE_float("lam_rate", DEFAULT_LAM_RATE, "How fast the budgets' multipliers move: "
                       "λ changes by lam_rate·(R/T − 1) per epoch, R/T − 1 clamped to ±0.1.")
    flags.DEFINE_float("lam_init", 0.0, "Initial value of the budgets' multipliers.")
    flags.DEFINE_float("lam_kappa", DEFAULT_KAPPA, "Weight of the budgets' proportional term "
                       "(augmented Lagrangian; 0: the plain λ·(R/T − 1) of LightNAS).")
    flags.DEFINE_bool("repair", True, "Return the network of highest architecture weight "
                      "(log-probability under the search's relaxation) that meets every budget "
                      "(max budgets, targets within --target_tolerance; where no network is "
                      "that close, the nearest), found exactly by dynamic programming over the "
                      "layers; report.json keeps the search's own network and its error.")
    flags.DEFINE_float("target_tolerance", 0.01, "How close to --target_ms counts as on target "
                       "(relative).")
    flags.DEFINE_integer("epochs", 8, "Search epochs.")
    flags.DEFINE_integer("warmup_epochs", 2, "First epochs without the cost terms (λ = 0, "
                         "budgets off): the weights and (superkernel) thresholds train on CE "
                         "alone; multi-path α stay frozen.")
    flags.DEFINE_integer("batch_size", 1024, "Global batch size.")
    flags.DEFINE_float("learning_rate", 0.01, "Adam learning rate (weights and thresholds).")
    flags.DEFINE_enum("lr_schedule", "cosine", ["cosine", "constant"], "Learning rates of "
                      "weights, thresholds and α: cosine decay to 0 over the search (the "
                      "architecture settles) or constant.")
    flags.DEFINE_float("kernel_dropout", 0.1, "Drop rate of kernel subsets (paper Sec. 4.2).")
    flags.DEFINE_integer("dropout_epochs", 6, "First epochs with kernel-subset dropout.")
    flags.DEFINE_float("dropout", 0.2, "Dropout before the classifier.")
    flags.DEFINE_integer("seed", 0, "Seed of weights, data order and dropout.")
    flags.DEFINE_string("model_dir", "runs/search", "Output and checkpoint directory.")
    flags.DEFINE_string("tpu", None, "TPU name or address: runs under TPUStrategy.")
    flags.DEFINE_enum("strategy", "auto", list(distribute.STRATEGIES), distribute.STRATEGY_HELP)
    flags.DEFINE_enum("precision", "auto", ["auto", "float32", "mixed_bfloat16"],
                      "Compute dtype (auto: mixed_bfloat16 with --tpu, else float32).")
    flags.DEFINE_bool("jit_compile", False, "Compile the train step with XLA (on for TPUs).")
    flags.DEFINE_integer("checkpoint_every", 50, "Steps between checkpoints.")
    flags.DEFINE_string("device", None, "Profile this device (local, adb:SERIAL or "
                        "cmd:TEMPLATE) into "
                        "--latency_table (default MODEL_DIR/lut.json; only missing rows are "
                        "measured), search on it, and measure the derived network there. "
                        "Cells: measure the derived network there, in the units of the "
                        "predictor's dataset or the cell table, and solve again for the "
                        "measured latency where it misses the target.")
    flags.DEFINE_integer("threads", 1, "Threads on --device.", lower_bound=1)
    flags.DEFINE_integer("profile_runs", 40, "Timed runs per table row and network, at least.",
                         lower_bound=1)
    flags.DEFINE_float("profile_seconds", 1.0, "Each group of models on --device is timed for "
                       "at least this long.", lower_bound=0)
    flags.DEFINE_integer("profile_repeats", 3, "Times each group of models on --device is "
                         "timed; each model keeps its median.", lower_bound=1)
    flags.DEFINE_integer("calibration_archs", 16, "Whole networks measured to calibrate the "
                         "device's table.", lower_bound=0)
    flags.DEFINE_bool("deterministic", True, "Deterministic TensorFlow ops (resumed searches "
                      "end exactly where uninterrupted ones do).")
    flags.DEFINE_bool("train_after_search", False, "Then train the derived network from scratch "
                      "on the same dataset (MODEL_DIR/train: model.keras, train_report.json) "
                      "with the --train_* flags (those of python -m tfnas.train).")
    from tfnas.train import command as train

    train.define_flags(prefix="train_", values=values)
    flags.DEFINE_bool("dry_run", False, "Check the flags, print the search's configuration "
                      "(JSON) and stop: nothing is written, no TPU or device is contacted.")
    flags.DEFINE_bool("overwrite", False, "Start afresh in a --model_dir that holds a run made "
                      "with other flags (the old run is moved to MODEL_DIR.old-TIMESTAMP). "
                      "Without it, the same flags resume the run (or report it, if finished) "
                      "and other flags stop with a line naming them.")


# flags that do not change a search's result: where it writes, how often it checkpoints, which
# TPU runs it, whether training follows (the training has its own run directory)
NOT_SETTINGS = ("model_dir", "overwrite", "dry_run", "checkpoint_every", "tpu", "strategy",
                "train_after_search")


def run_settings(f: Any) -> dict[str, Any]:
    """What the search's run directory records (`tfnas.run.rundir`): its flags (not the --train_*
    ones: the training's own directory records those) and its input files' fingerprints (a
    --device table is the run's own output; a built-in table is no file)."""
    from tfnas import cli

    from tfnas.latency.cell_table import is_cell_table

    training = tuple(cli.flag_settings(f, ["tfnas.train.command"]))  # the --train_* flags
    own = cli.flag_settings(f, skip=NOT_SETTINGS + training)
    # a --device layer table is the run's output; a cell table stays an input
    output = f.device and not (f.latency_table and is_cell_table(f.latency_table))
    return {**own, "inputs": cli.input_fingerprints(
        {"latency_table": None if output else f.latency_table,
         "latency_model": f.latency_model, "energy_table": f.energy_table,
         "dataset": f.dataset}, f.model_dir)}


def train_settings(f: Any) -> dict[str, Any]:
    """What --train_after_search's run directory (MODEL_DIR/train) records."""
    from tfnas import cli

    return {**cli.flag_settings(f, ["tfnas.train.command"]), "dataset": f.dataset, "seed": f.seed,
            "precision": f.precision, "jit_compile": f.jit_compile}
