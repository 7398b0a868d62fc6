"""Resuming from the newest readable checkpoint of a run directory.

TensorFlow writes a checkpoint's files and then its `checkpoint` state file (atomically), so
a process killed at any point leaves the previous checkpoint whole. A disk or a person can
still damage files: random bytes in `ckpt-N.index`, a truncated data file, garbage in the
state file (which TensorFlow then ignores, silently restarting the run from scratch).
`open_manager` therefore finds checkpoints by their files, not by the state file; restores the
newest one that reads; moves a damaged newer one aside (`*.damaged`) with one line saying so;
and rewrites the state file to name what is really there.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Callable

from tfnas.errors import TfnasError, error_line
from tfnas.run.files import write_text

PREFIX = "ckpt"


def track_children(owner: Any, name: str, children: Any) -> None:
    """Makes the layers or variables in `children` (a list, a list of lists or a dict) part of
    `owner`'s TensorFlow checkpoint, as `name_KEY`. Keras 3 tracks the lists and dicts a layer
    holds for its own bookkeeping (weights, saving to .keras) but TensorFlow's object graph
    does not see through them: without this, `tf.train.Checkpoint` silently leaves out every
    layer a list holds (a mixed op's paths, a search cell's edges) and a resumed search would
    go on with freshly initialised weights. A child listed twice (a shared op) is tracked once."""
    import keras

    items = children.items() if isinstance(children, dict) else enumerate(children)
    seen = getattr(owner, "_tfnas_tracked_ids", set())
    for key, child in items:
        if isinstance(child, (list, tuple)):
            track_children(owner, f"{name}_{key}", child)
            continue
        if id(child) in seen:
            continue
        seen.add(id(child))
        if isinstance(child, keras.Variable):  # (TensorFlow tracks the tf.Variable inside)
            child = child.value
        owner._track_trackable(child, name=f"{name}_{key}", overwrite=True)
    object.__setattr__(owner, "_tfnas_tracked_ids", seen)


def rng_states(model: Any) -> list[Any]:
    """The model's random-generator states (dropout, kernel-subset dropout). Keras keeps them
    out of the model's checkpoint: a run adds them to its own, or a resumed run would draw
    other masks than an uninterrupted one."""
    return [v.value for v in model.non_trainable_variables if v.name == "seed_generator_state"]


def on_disk(directory: Path) -> list[Path]:
    """Checkpoint prefixes (ckpt-N) with an index file, newest first (none: an empty list,
    also for a directory that does not exist)."""
    found = []
    for index in directory.glob(f"{PREFIX}-*.index"):
        match = re.fullmatch(rf"{PREFIX}-(\d+)\.index", index.name)
        if match:
            found.append((int(match.group(1)), directory / index.name[:-len(".index")]))
    return [prefix for _, prefix in sorted(found, reverse=True)]


def _state_names(state: Path) -> str | None:
    """The checkpoint the state file names as the latest (its file name), None if unreadable
    (read here: TensorFlow's reader logs parse errors and carries on)."""
    try:
        match = re.search(r'^model_checkpoint_path: "([^"]*)"', state.read_text(), re.M)
    except (OSError, UnicodeDecodeError):
        return None
    return Path(match.group(1)).name if match else None


def _restore_newest(checkpoint: Any, directory: Path
                    ) -> tuple[Path | None, list[tuple[Path, str]]]:
    """(the newest checkpoint of `directory` that `checkpoint` restored from, or None; the
    newer ones that did not read, with why)."""
    damaged: list[tuple[Path, str]] = []
    for prefix in on_disk(directory):
        try:
            checkpoint.restore(str(prefix)).assert_existing_objects_matched()
        except Exception as err:  # OpError, IndexError, ValueError, AssertionError: unreadable
            damaged.append((prefix, error_line(err)))
            continue
        return prefix, damaged
    return None, damaged


def open_manager(checkpoint: Any, directory: str | Path, max_to_keep: int = 2,
                 say: Callable[[str], None] = print,
                 source: str | Path | None = None) -> tuple[Any, str | None]:
    """(a CheckpointManager of `directory`, the checkpoint restored or None for a fresh run).

    Every object of `checkpoint` must be in the restored checkpoint. Damaged checkpoints are
    moved aside with one line through `say`; none readable among several: one TfnasError.
    With `source` (a worker other than the chief: `tfnas.run.distribute`), the newest readable
    checkpoint of `source` is restored and nothing there is touched (the chief, reading the
    same files, sets them right); the manager saves into `directory`, keeping one."""
    import tensorflow as tf

    if source is not None:  # (a damaged one: the chief reports it and moves it aside)
        restored, _ = _restore_newest(checkpoint, Path(source))
        manager = tf.train.CheckpointManager(checkpoint, str(directory), max_to_keep=1,
                                             checkpoint_name=PREFIX)
        return manager, None if restored is None else str(restored)
    directory = Path(directory)
    restored, damaged = _restore_newest(checkpoint, directory)
    for prefix, reason in damaged:
        for part in directory.glob(prefix.name + ".*"):
            if not part.name.endswith(".damaged"):
                part.rename(part.with_name(part.name + ".damaged"))
        say(f"warning: checkpoint {prefix} is unreadable ({reason}): moved aside as "
            f"{prefix.name}.*.damaged; "
            + (f"resuming from {restored.name}" if restored else "starting afresh"))
    if damaged and restored is None:
        raise TfnasError(f"no readable checkpoint in {directory} (the newest, {damaged[0][0]}: "
                         f"{damaged[0][1]}): pass --overwrite to start afresh")
    # the state file names what is on disk (TensorFlow ignores an unreadable one silently)
    state = directory / "checkpoint"
    kept = [p.name for p in reversed(on_disk(directory))]
    named = _state_names(state)
    if restored is not None and named != restored.name:
        if state.exists() and named is None:
            say(f"warning: {state} was unreadable: rewritten from the checkpoints on disk")
        write_text(state, f'model_checkpoint_path: "{restored.name}"\n' + "".join(
            f'all_model_checkpoint_paths: "{Path(p).name}"\n' for p in kept))
    manager = tf.train.CheckpointManager(checkpoint, str(directory), max_to_keep=max_to_keep,
                                         checkpoint_name=PREFIX)
    return manager, None if restored is None else str(restored)


class EpochCheckpoints:
    """When an epoch's end is checkpointed: so that saving costs at most `share` of the run.

    Every epoch's end was saved; a save of a small network's search state takes 0.15-0.2 s
    here (TensorFlow reads every variable eagerly and walks the object graph), against 1.4-2.3
    s epochs in the quickstart: 5-10% of its search and training. An epoch's end is now saved
    when the time since the last save is at least that save's duration divided by `share`;
    always at a process's first epoch end (before it, a save's duration is not known) and at
    the run's last; `save` (a stop request, a step count) saves whatever the time. Epochs of
    minutes or hours are all saved as before; a killed run redoes at most about `1/share`
    times a save's duration of work, plus the epoch under way. `saved_epochs` is how many
    epochs the newest checkpoint holds.

    `share=None` saves every epoch's end: runs over several workers, whose clocks would not
    agree on a save that all of them must make together."""

    def __init__(self, manager: Any, saved_epochs: int, share: float | None = 0.05,
                 clock: Callable[[], float] | None = None) -> None:
        import time

        self.manager, self.saved_epochs, self.share = manager, saved_epochs, share
        self._clock = clock or time.monotonic
        self._last_end = self._clock()
        self._cost: float | None = None  # the last save's duration (none yet: save)

    def save(self, epochs: int | None = None) -> None:
        """Saves now; `epochs`: the epochs it holds, when it is an epoch's end."""
        start = self._clock()
        self.manager.save()
        self._last_end = self._clock()
        self._cost = self._last_end - start
        if epochs is not None:
            self.saved_epochs = epochs

    def due(self, last: bool = False) -> bool:
        """Whether an epoch's end (the run's `last`?) is to be saved now."""
        return (last or self._cost is None or self.share is None
                or self._clock() - self._last_end >= self._cost / self.share)
