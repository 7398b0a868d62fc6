"""What does one search step cost per method? Step time and peak memory, side by side.

    python bench/search_step_cost.py [--space=cifar] [--batch_sizes=64,256] [--steps=10]
        [--methods=superkernel,softmax,gumbel,proxyless,gumbel:xla=1,gumbel:select=switch]
        [--quickstart [--quickstart_before=REV]]
        [--xla_batch_sizes=64]
    python bench/search_step_cost.py --phases=gumbel [--space=cifar --batch_sizes=64]
    python bench/search_step_cost.py --space=darts28_search --methods=darts,pc_darts
        [--cells=5 --init_channels=8 --nodes=4]
    python bench/search_step_cost.py --space=darts_search \
        --methods=dca_nas:b=1:derived=0,dca_nas:b=2:derived=0,dca_nas:b=1:derived=1,dca_nas

A method may carry overrides, `METHOD:key=value:...`: `xla=1` compiles its step with XLA
(the search's --jit_compile), `select=gather|switch|mask` picks how hard Gumbel and proxyless
run their one path (--path_select; gather by default), and the cell methods' below. The table
is printed once per batch size (the second lets a user see what fits).

With `--quickstart`, the README's quickstart command (without its pip install) also runs on a
copy of this tree in a fresh directory, its wall time printed; `--quickstart_before=REV` runs
the quickstart of git revision REV (its own README's command) first, in the same bench run:
before and after on the same machine, minutes apart.

The DARTS cell space (second form): DARTS' search network (every edge a softmax over the eight
ops) against PC-DARTS' (a quarter of the channels through the mixed edges), and the largest
child, the derivable network of the same stacking with the dearest cells (every node's two
dearest edges, each with its dearest op: sep_conv_5x5 at most places); PC-DARTS' claim
(Xu et al. 2020, Sec. 3.1) is the memory ratio, about 1/K. A cell method may carry DCA-NAS'
search-time reductions as overrides, `METHOD:b=B:derived=0|1` (its channel bottleneck b and
derived cells, `--cell_bottleneck` and `--derived_cells` of the search; dca_nas alone is b=2
with derived cells): the third form measures what each saves against dca_nas without them.

The Single-Path NAS claim (Stamoulis et al. 2019, Sec. 1 and 4): a superkernel search step
costs about as much as training one network, and far less than a multi-path (softmax / DARTS)
step. This measures it on one space and batch, in one run:

- time: one search step of every method and one training step of the largest child network
  (every layer at its biggest kernel and expansion, same optimizer), timed round-robin in one
  process so that the host's drifts hit all alike; medians. A search step is what the search
  runs per training batch: one forward/backward for `superkernel`; for the bi-level methods a
  weight step on one batch plus an α step on a held-out batch (two passes);
- memory: each method runs in its own subprocess with glibc's mmap threshold fixed at 64 KiB,
  so that freed tensors go back to the OS and the resident set follows live memory; after
  three warm-up steps the peak resident set is reset (/proc/self/clear_refs) and the bench
  reports how far the timed steps raise it above the resident set before them (`step MiB`:
  activations, gradients and workspace of one step; the model and optimizer are already
  resident), and how far above the process with TensorFlow loaded and no model (`peak MiB`:
  everything the method holds at its peak, weights, optimizer state and compiled functions
  included: what must fit). A step compiled by XLA (`:xla=1`) is compared with the child's
  training step compiled by XLA too (`largest child (train, XLA)`): XLA's CPU runtime holds
  more than graph mode for the same network (its compiled code, the compiler's arenas), and
  two more columns give XLA's own plan of the step, read from its buffer assignment
  (`--xla_dump_to`): `XLA plan` every buffer it allocates, `XLA temp` its heap of temporaries
  (what a step keeps alive between ops: activations for the gradient, workspace).

Both are printed with their ratio to the superkernel. No figure is asserted: report what you
measure, whatever it is.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np
from absl import flags

from tfnas import cli
from tfnas.search.methods import METHODS

FLAGS = flags.FLAGS
flags.DEFINE_string("space", "cifar", "Search space preset, or a network of DARTS cells "
                    "(darts_search, darts28_search, ...).")
flags.DEFINE_integer("cells", None, "Cell networks: override the number of cells.")
flags.DEFINE_integer("init_channels", None, "Cell networks: override the first cells' "
                     "channels C.")
flags.DEFINE_integer("nodes", 4, "Cell networks: intermediate nodes per cell.")
flags.DEFINE_list("batch_sizes", ["64", "256"], "Batch sizes: one table each (--batch_sizes= "
                  "with --quickstart: the quickstart alone).")
flags.DEFINE_list("xla_batch_sizes", None, "XLA methods (`:xla=1`) and the child compiled by "
                  "XLA at these batch sizes only (default: every one; XLA's CPU steps are "
                  "10x slower than graph mode's).")
flags.DEFINE_bool("quickstart", False, "Also time the README's quickstart on a copy of this "
                  "tree.")
flags.DEFINE_string("quickstart_before", None, "Also time the quickstart of this git revision "
                    "(before --quickstart's), in the same run.")
flags.DEFINE_integer("steps", 10, "Timed steps of each kind (after 3 warm-up steps).",
                     lower_bound=1)
flags.DEFINE_list("methods", ["superkernel", "softmax", "gumbel", "proxyless"],
                  f"Search methods to compare ({', '.join(METHODS)}); the first run at a "
                  "batch size is the reference of its table's ratios (with --xla_batch_sizes, "
                  "an XLA method left out there is not).")
flags.DEFINE_enum("path_select", "auto", ["auto", "gather", "switch", "mask"], "How hard Gumbel and "
                  "proxyless run their chosen path (the search's --path_select).")
flags.DEFINE_string("phases", None, "Print the resident set of one process through the "
                    "phases of this method's step (TensorFlow loaded, search network built, "
                    "step traced, first and second step) and stop: where the peak comes from.")
flags.DEFINE_string("memory_of", None, "(internal) measure the peak memory of this method's "
                    "step (or `child`) and print it as JSON.")


def _variant(name: str) -> tuple[str, dict[str, Any]]:
    """`METHOD[:b=B][:derived=0|1]` → (method, SearchConfig overrides); ValueError if bad."""
    method, *parts = name.split(":")
    keys = {"b": ("cell_bottleneck", int), "derived": ("derived_cells", lambda v: bool(int(v))),
            "xla": ("jit_compile", lambda v: bool(int(v))), "select": ("path_select", _select)}
    overrides = {}
    for part in parts:
        key, _, value = part.partition("=")
        field, parse = keys[key]  # (KeyError: a bad override)
        overrides[field] = parse(value)
    if method not in METHODS:
        raise ValueError(method)
    return method, overrides


def _select(value: str) -> str:
    if value not in ("gather", "switch", "mask"):
        raise ValueError(value)
    return value


def _valid_methods(names: list[str]) -> bool:
    try:
        return bool(names) and all(_variant(n) for n in names)
    except (KeyError, ValueError):
        return False


flags.register_validator("methods", _valid_methods,
                         f"--methods takes names among {', '.join(METHODS)}, with optional "
                         ":xla=0|1, :select=gather|switch|mask, cell methods :b=B:derived=0|1")


def _positive_ints(values: list[str] | None) -> bool:
    return all(str(b).isdigit() and int(b) > 0 for b in values or [])


flags.register_validator("batch_sizes", _positive_ints,
                         "--batch_sizes takes positive integers (none: the quickstart alone)")
flags.register_validator("xla_batch_sizes", _positive_ints,
                         "--xla_batch_sizes takes positive integers")

CHILD = "child"
CHILD_XLA = "child:xla=1"  # the child's training step compiled by XLA, beside XLA methods


def _child_xla(name: str) -> bool | None:
    """Whether `name` is the child compiled by XLA (True), in graph mode (False), or a method
    (None)."""
    return {CHILD: False, CHILD_XLA: True}.get(name)


def _xla(name: str) -> bool:
    return bool(_child_xla(name)) or (_child_xla(name) is None
                                      and _variant(name)[1].get("jit_compile", False))


def _reference_child(name: str) -> str:
    """The child a step's ratios divide by: compiled as the step is (XLA's CPU backend holds
    more than graph mode for the same network)."""
    return CHILD_XLA if _xla(name) else CHILD


def _step(name: str, folder: str, batch_size: int) -> Callable[[], Any]:
    """A no-argument callable running one step of `name` (a method or `child`) on one batch."""
    import keras
    import tensorflow as tf

    from tfnas import nets
    from tfnas.optimizers import StepAdam
    from tfnas.search.objectives import Objective
    from tfnas.search import Search, SearchConfig
    from tfnas.space import Architecture, get_space

    from tfnas.costs import exact_sources
    from tfnas.space.cells import NETWORKS, get_network

    cells = FLAGS.space in NETWORKS
    space = (get_network(FLAGS.space, **{k: FLAGS[k].value for k in ("cells", "init_channels")
                                         if FLAGS[k].value is not None})
             if cells else get_space(FLAGS.space))
    flops = exact_sources(space, FLAGS.nodes)["flops"]
    child_xla = _child_xla(name)
    method, overrides = _variant((FLAGS.methods[0] if cells else "superkernel")
                                 if child_xla is not None else name)
    search = Search(SearchConfig(
        space=space, dataset="synthetic", cost_model=flops,
        objective=Objective("log", 0.02), model_dir=str(Path(folder) / name.replace(":", "_")),
        method=method, batch_size=batch_size, nodes=FLAGS.nodes, verbose=False,
        **{"path_select": FLAGS.path_select, **overrides}))
    search.lam.assign(0.02)
    images, labels = next(iter(search.data.train(0)))
    if child_xla is None:
        step = search._step_function(True)
        batch = (images, labels) + ((images, labels) if search.multi_path else ())
        return lambda: step(*batch)["loss"]

    if cells:
        from tfnas.search.cell_budget import extreme
        from tfnas.space.cells import CellArchitecture

        child = nets.build(CellArchitecture(space, extreme(flops, dearest=True)))
    else:
        child = nets.build(Architecture.uniform(space, space.largest_op))
    optimizer = StepAdam(0.01)  # the search's own
    optimizer.build(child.trainable_variables)

    @tf.function(jit_compile=child_xla)
    def child_step(images: Any, labels: Any) -> Any:
        with tf.GradientTape() as tape:
            logits = child(images, training=True)
            loss = tf.reduce_mean(keras.losses.sparse_categorical_crossentropy(
                labels, logits, from_logits=True))
        optimizer.apply(tape.gradient(loss, child.trainable_variables),
                        child.trainable_variables)
        return loss

    return lambda: child_step(images, labels)


def _timed(step: Callable[[], Any]) -> float:
    start = time.perf_counter()
    float(step())  # waits for the step
    return time.perf_counter() - start


def _status_kib(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"no {field} in /proc/self/status")


def _measure_memory(name: str, batch_size: int) -> None:
    """Worker: peak resident growth of `name`'s steps after warm-up, printed as JSON (MiB)."""
    import gc
    import importlib

    importlib.import_module("tensorflow")  # the baseline: TensorFlow loaded, no model yet
    start = _status_kib("VmRSS")
    with tempfile.TemporaryDirectory() as folder:
        step = _step(name, folder, batch_size)
        for _ in range(3):
            _timed(step)
        gc.collect()
        before = _status_kib("VmRSS")
        Path("/proc/self/clear_refs").write_text("5")  # peak RSS := current RSS (Linux >= 4.0)
        for _ in range(FLAGS.steps):
            _timed(step)
        peak = _status_kib("VmHWM")
    print(json.dumps({"step_mib": (peak - before) / 1024, "resident_mib": before / 1024,
                      "total_mib": (peak - start) / 1024}))


def _phases(name: str, batch_size: int) -> None:
    """Resident set (MiB) after each phase of `name`'s search step, one line each."""
    import importlib

    importlib.import_module("tensorflow")
    print(f"{name}: TensorFlow loaded {_status_kib('VmRSS') / 1024:.0f} MiB", flush=True)
    with tempfile.TemporaryDirectory() as folder:
        step = _step(name, folder, batch_size)  # (builds the search network and its optimizer)
        print(f"{name}: built {_status_kib('VmRSS') / 1024:.0f} MiB", flush=True)
        for phase in ("traced and first step", "second step"):
            _timed(step)
            print(f"{name}: {phase} {_status_kib('VmRSS') / 1024:.0f} MiB "
                  f"(peak {_status_kib('VmHWM') / 1024:.0f})", flush=True)


def _memory(name: str, batch_size: int) -> dict[str, float]:
    """Runs the memory worker of `name` in a fresh process."""
    env = dict(os.environ, MALLOC_MMAP_THRESHOLD_="65536")
    args = [sys.executable, __file__, f"--memory_of={name}", f"--space={FLAGS.space}",
            f"--batch_sizes={batch_size}", f"--steps={FLAGS.steps}",
            f"--methods={','.join(FLAGS.methods)}", f"--nodes={FLAGS.nodes}",
            f"--path_select={FLAGS.path_select}"]
    args += [f"--{k}={FLAGS[k].value}" for k in ("cells", "init_channels")
             if FLAGS[k].value is not None]
    with tempfile.TemporaryDirectory() as dump:
        if _xla(name):  # XLA writes its buffer assignment of every module it compiles
            env["XLA_FLAGS"] = f"{env.get('XLA_FLAGS', '')} --xla_dump_to={dump}".strip()
        out = subprocess.run(args, capture_output=True, text=True, env=env)
        if out.returncode != 0:
            raise RuntimeError(f"memory worker of {name} failed:\n{out.stderr[-2000:]}")
        return {**json.loads(out.stdout.strip().splitlines()[-1]),
                **(_xla_plan(Path(dump)) if _xla(name) else {})}


def _xla_plan(dump: Path) -> dict[str, float]:
    """XLA's own memory plan of the largest module it compiled (the step): `plan_mib`, every
    buffer its buffer assignment allocates (parameters, outputs and the temporaries' heap), and
    `temp_mib`, the heap of temporaries (activations kept for the gradient, workspace). The
    plan is the CPU backend's; a TPU's compiler plans the same graph with its own layouts."""
    best = {"plan_mib": 0.0, "temp_mib": 0.0}
    for assignment in dump.glob("*buffer-assignment.txt"):
        text = assignment.read_text()
        total = re.search(r"^Total bytes used: (\d+)", text, re.M)
        if total and int(total.group(1)) / 2**20 > best["plan_mib"]:
            temps = re.findall(r"^allocation \d+: size (\d+), preallocated-temp", text, re.M)
            best = {"plan_mib": int(total.group(1)) / 2**20,
                    "temp_mib": sum(map(int, temps)) / 2**20}
    return best


def _table(batch_size: int) -> None:
    """Time (round-robin, one process) and memory (one process each) of every method and the
    largest child at one batch size, printed as a table."""
    methods = [n for n in FLAGS.methods if not _xla(n) or FLAGS.xla_batch_sizes is None
               or batch_size in map(int, FLAGS.xla_batch_sizes)]
    names = methods + [CHILD] + ([CHILD_XLA] if any(_xla(n) for n in methods) else [])
    print(f"\nspace {FLAGS.space}, batch {batch_size}, {FLAGS.steps} timed steps each"
          + "".join(f", {k} {FLAGS[k].value}" for k in ("cells", "init_channels")
                    if FLAGS[k].value is not None), flush=True)
    with tempfile.TemporaryDirectory() as folder:
        steps = {}
        for name in names:
            start = time.perf_counter()
            steps[name] = _step(name, folder, batch_size)
            _timed(steps[name])
            print(f"  built and compiled {name} in {time.perf_counter() - start:.0f} s",
                  flush=True)
        # warm-up rounds after every build: building a search (its random seeds) makes the
        # steps compiled before it trace again once
        for _ in range(3):
            for name in names:
                _timed(steps[name])
        times: dict[str, list[float]] = {name: [] for name in names}
        for _ in range(FLAGS.steps):  # round-robin: drifts of the host hit every method alike
            for name in names:
                times[name].append(_timed(steps[name]))
        del steps
    medians = {name: float(np.median(t)) * 1e3 for name, t in times.items()}
    print("  measuring memory, one process per method", flush=True)
    memory = {name: _memory(name, batch_size) for name in names}
    ref = names[0]
    plans = any(_xla(n) for n in names)
    wide = max(16, len(ref) + 4)  # the ratio columns, named by the reference
    label_width = max(34, max(len(n) for n in names) + 12)
    print(f"\n{'step':<{label_width}}{'median ms':>10}{'x ' + ref:>{wide}}{'x child':>9}"
          f"{'step MiB':>10}{'x ' + ref:>{wide}}{'peak MiB':>10}{'x child':>9}"
          + (f"{'XLA plan':>10}{'x child':>9}{'XLA temp':>10}{'x child':>9}" if plans else ""))
    for name in names:
        child = _reference_child(name)  # (ratios to the child compiled the same way)
        label = (f"largest child (train{', XLA' if _xla(name) else ''})"
                 if _child_xla(name) is not None else f"{name} (search)")
        mib, total = memory[name]["step_mib"], memory[name]["total_mib"]
        line = (f"{label:<{label_width}}{medians[name]:>10.1f}"
                f"{medians[name] / medians[ref]:>{wide}.2f}{medians[name] / medians[child]:>9.2f}"
                f"{mib:>10.1f}{mib / max(memory[ref]['step_mib'], 1e-9):>{wide}.2f}"
                f"{total:>10.1f}{total / max(memory[child]['total_mib'], 1e-9):>9.2f}")
        if plans and _xla(name):
            line += "".join(f"{memory[name][k]:>10.1f}"
                            f"{memory[name][k] / max(memory[child][k], 1e-9):>9.2f}"
                            for k in ("plan_mib", "temp_mib"))
        print(line, flush=True)


def _quickstart_command(tree: Path) -> str:
    """The quickstart command of `tree`'s README, without its `pip install ... &&`."""
    for line in (tree / "README.md").read_text().splitlines():
        if line.startswith("pip install -e . && python -m tfnas.search"):
            return line.split("&&", 1)[1].strip()
    raise RuntimeError(f"no quickstart command in {tree / 'README.md'}")


def _tree(revision: str | None, into: Path) -> Path:
    """A copy of this repository's tree at `revision` (git archive), or of the working tree
    (tracked and untracked files, ignored ones left out) when None."""
    repo = Path(__file__).resolve().parents[1]
    into.mkdir(parents=True)
    if revision is not None:
        archive = subprocess.run(["git", "-C", str(repo), "archive", revision],
                                 capture_output=True, check=True).stdout
        subprocess.run(["tar", "-x", "-C", str(into)], input=archive, check=True)
        return into
    files = subprocess.run(["git", "-C", str(repo), "ls-files", "-z", "--cached", "--others",
                            "--exclude-standard"], capture_output=True, check=True,
                           text=True).stdout.split("\0")
    for name in filter(None, files):
        source = repo / name
        if source.is_file():
            (into / name).parent.mkdir(parents=True, exist_ok=True)
            (into / name).write_bytes(source.read_bytes())
    return into


def _time_quickstart(revision: str | None, folder: Path) -> float:
    """Wall time (s) of the quickstart of `revision` (None: this tree), run in a copy."""
    tree = _tree(revision, folder / (revision or "this_tree"))
    command = _quickstart_command(tree)
    env = dict(os.environ, PYTHONPATH=str(tree))
    start = time.perf_counter()
    out = subprocess.run(command, shell=True, cwd=tree, env=env, capture_output=True,
                         text=True)
    seconds = time.perf_counter() - start
    if out.returncode != 0:
        raise RuntimeError(f"the quickstart of {revision or 'this tree'} failed:\n"
                           f"{out.stderr[-2000:]}")
    said = [line for line in (out.stdout + out.stderr).splitlines()
            if line.startswith(("latency:", "trained", "search took"))]
    print(f"  quickstart of {revision or 'this tree'}: {seconds:.1f} s", flush=True)
    for line in said:
        print(f"    {line}", flush=True)
    return seconds


def main(argv: list[str]) -> None:
    batch_sizes = [int(b) for b in FLAGS.batch_sizes]
    first = batch_sizes[0] if batch_sizes else 64
    if FLAGS.memory_of:
        _measure_memory(FLAGS.memory_of, first)
        return
    if FLAGS.phases:
        _phases(FLAGS.phases, first)
        return
    for batch_size in batch_sizes:
        _table(batch_size)
    if FLAGS.quickstart or FLAGS.quickstart_before:
        print("\nquickstart (the README's command, without pip install)", flush=True)
        with tempfile.TemporaryDirectory() as folder:
            before = (_time_quickstart(FLAGS.quickstart_before, Path(folder))
                      if FLAGS.quickstart_before else None)
            after = _time_quickstart(None, Path(folder))
        if before is not None:
            print(f"  this tree / {FLAGS.quickstart_before}: {after / before:.2f}x")


if __name__ == "__main__":
    cli.run(main)
