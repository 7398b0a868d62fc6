"""A run directory that one command owns: what made it, who writes it, files written whole.

A search or training run keeps everything in its `--model_dir`, and running the same command
again resumes it. That is only safe when "the same command" is checked, so a run directory
records what made it and is held by one process at a time:

- `run.json`: the settings that decide the run's result (the command's flags that matter,
  by name), a fingerprint of the input files they name (latency table, predictor, dataset
  file, architecture: size and SHA-256), the tfnas version, and whether the run finished.
  `claim` compares a rerun's settings with it: the same settings resume (or, for a finished
  run, report it); other settings stop with one line naming what differs, unless `overwrite`
  moves the old run aside (`MODEL_DIR.old-YYYYmmdd-HHMMSS`) and starts afresh.
- `.lock`: an exclusive `flock` on a file in the directory, taken for the life of the run. The
  operating system releases it when the process dies, however it dies, so a dead process's
  lock is taken over without a word; a live holder stops a second writer at once, with its pid.
- files are written whole (`tfnas.run.files.write_text`: temporary file, fsync, rename).
- What a search and a training share as runs: `StopOnSignal` (SIGTERM / SIGINT ask the loop
  to save and stop), `Interrupted` (raised once it has; `exit_when_interrupted` turns it into
  exit code 143 in entry points), `Stopwatch` (seconds over resumes).
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime
import json
import os
import signal
import time
from pathlib import Path
from typing import Any, Iterator, Mapping

from tfnas.run.files import write_text
from tfnas.errors import TfnasError

RUN_FILE = "run.json"
LOCK_FILE = ".lock"


class Interrupted(Exception):
    """A run saved its progress and stopped on request: the same command resumes it."""


@contextlib.contextmanager
def exit_when_interrupted() -> Iterator[None]:
    """Around a run in an entry point: once it has saved and raised `Interrupted`, print its
    line (how to resume) and exit with 143, as a process stopped by SIGTERM does."""
    try:
        yield
    except Interrupted as stop:
        print(stop, flush=True)
        raise SystemExit(143) from None


class StopOnSignal:
    """SIGTERM / SIGINT set a flag that a run's loop polls between steps: it then saves and
    raises `Interrupted` (a second signal does not kill it mid-save)."""

    def __init__(self) -> None:
        self.requested = False
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, self._handle)

    def _handle(self, signum: int, frame: Any) -> None:
        self.requested = True

    def __call__(self) -> bool:
        return self.requested


class Stopwatch:
    """Seconds a run has spent, over resumes: what earlier processes saved in `path`, plus
    this one's time since it started."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.before = float(self.path.read_text()) if self.path.exists() else 0.0
        self.began = time.time()

    def seconds(self) -> float:
        return self.before + time.time() - self.began

    def save(self) -> None:
        write_text(self.path, f"{self.seconds():.3f}\n")


@dataclasses.dataclass
class Run:
    """A claimed run directory (see the module doc); `release()` (or process exit) frees it."""

    path: Path
    settings: dict[str, Any]
    finished: bool
    resumed: bool
    _lock: Any = None

    def finish(self) -> None:
        """Marks the run finished (a rerun then reports it instead of running again)."""
        self.finished = True
        _write_record(self.path, self.settings, finished=True)

    def release(self) -> None:
        if self._lock is not None:
            self._lock.close()
            self._lock = None

    def __enter__(self) -> "Run":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.release()


def lock(path: str | Path, name: str = LOCK_FILE, wait: bool = False) -> Any:
    """Takes the directory's lock `name` (creating the directory); returns the open lock file,
    which holds the lock until it is closed or the process ends. A live holder: one
    TfnasError, or with `wait`, the call waits for it. The file names the holder (pid and
    host: directories on a shared disk are locked across hosts)."""
    import fcntl  # POSIX (Linux, macOS): imported here so tfnas itself loads anywhere
    import socket

    path = Path(path)
    check_output(path, "--model_dir", kind="dir")
    path.mkdir(parents=True, exist_ok=True)
    handle = (path / name).open("a+")
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
    except OSError:
        handle.seek(0)
        holder = handle.read().strip() or "unknown"
        handle.close()
        raise TfnasError(f"{path} is in use by process {holder} (another run writes there): "
                         "wait for it to end, or pick another --model_dir") from None
    handle.seek(0)
    handle.truncate()
    handle.write(f"{os.getpid()} on {socket.gethostname()}\n")
    handle.flush()
    return handle


def claim(path: str | Path, settings: Mapping[str, Any], *, overwrite: bool = False,
          what: str = "run") -> Run:
    """Locks `path` and checks `settings` (plain JSON values, flag names as keys) against the
    run it holds (see the module doc). Returns the Run; other settings raise one TfnasError
    naming them, unless `overwrite` (the old run is moved aside first)."""
    from tfnas.run import checkpoints  # checkpoints writes with this module

    path = Path(path)
    settings = _comparable(settings)
    handle = lock(path)
    try:
        has_files = any(not (p.name.startswith(".") and p.name.endswith(".lock"))
                        for p in path.iterdir())  # (this run's lock, a sweep worker's)
        if overwrite and has_files:  # whatever is there, a damaged record included
            handle.close()
            aside = _move_aside(path)
            print(f"--overwrite: moved the old {what} in {path} to {aside}", flush=True)
            handle = lock(path)
            has_files = False
        record = _read_record(path)
        _check_same(path, record, settings, what)
        if record is None and has_files and checkpoints.on_disk(path):
            raise TfnasError(f"{path} holds checkpoints of a {what} whose settings were not "
                             "recorded (an older tfnas): pass --overwrite to start afresh, or "
                             "pick another --model_dir")
        if record is None:
            _write_record(path, settings, finished=False)
        return Run(path, settings, finished=bool(record and record.get("finished")),
                   resumed=record is not None, _lock=handle)
    except BaseException:
        handle.close()
        raise


def peek(path: str | Path, settings: Mapping[str, Any] | None, what: str = "run"
         ) -> dict[str, Any] | None:
    """The run record of `path` without taking its lock (None if there is none yet), checked
    against `settings` as `claim` does (None: not checked, e.g. under --overwrite): for a
    worker that reads the run its chief owns (`tfnas.run.distribute`), which then stops with
    the chief's line instead of waiting for a chief that has stopped."""
    record = _read_record(Path(path)) if Path(path).is_dir() else None
    if settings is not None:
        _check_same(Path(path), record, _comparable(settings), what)
    return record


def _comparable(settings: Mapping[str, Any]) -> dict[str, Any]:
    """Plain JSON, as it is compared; the code's version is a setting too."""
    from tfnas import __version__

    return json.loads(json.dumps({**settings, "tfnas": __version__}))


def _check_same(path: Path, record: dict[str, Any] | None, settings: dict[str, Any],
                what: str) -> None:
    if record is not None and record["settings"] != settings:
        raise TfnasError(
            f"{path} holds a {what} made with other settings ("
            + ", ".join(differences(record["settings"], settings))
            + "): rerun with those settings to resume it, pass --overwrite to start "
            "afresh (the old run is moved aside), or pick another --model_dir")


def differences(old: Mapping[str, Any], new: Mapping[str, Any], prefix: str = "") -> list[str]:
    """`name: old → new` for every setting that differs (nested values by dotted names)."""
    out = []
    for key in sorted(set(old) | set(new), key=str):
        a, b = old.get(key, "unset"), new.get(key, "unset")
        if a == b:
            continue
        if isinstance(a, dict) and isinstance(b, dict):
            out += differences(a, b, f"{prefix}{key}.")
        else:
            out.append(f"{prefix}{key}: {_short(a)} → {_short(b)}")
    return out


def _short(value: Any) -> str:
    text = json.dumps(value) if not isinstance(value, str) else value
    return text if len(text) <= 40 else text[:37] + "..."


def check_output(path: str | Path, flag: str, kind: str = "file") -> None:
    """One TfnasError for an output that cannot be written where `flag` puts it: a directory
    where a file is wanted (`kind="file"`) or a file where a directory is (`kind="dir"`), a
    parent that is a file, a folder that is not writable. Call it before any work starts."""
    path = Path(path)
    if kind == "file" and path.is_dir():
        raise TfnasError(f"{flag}={path} is a directory: give a file path")
    if kind == "dir" and path.exists() and not path.is_dir():
        raise TfnasError(f"{flag}={path} is a file, not a directory")
    probe = path if kind == "dir" and path.exists() else path.parent
    while not probe.exists():
        probe = probe.parent
    if not probe.is_dir():
        raise TfnasError(f"{flag}={path}: {probe} is a file, not a directory")
    if not os.access(probe, os.W_OK | os.X_OK):
        raise TfnasError(f"{flag}={path}: {probe} is not writable")
    if kind == "file" and path.exists() and not os.access(path, os.W_OK):
        raise TfnasError(f"{flag}={path} is not writable")


def _read_record(path: Path) -> dict[str, Any] | None:
    file = path / RUN_FILE
    if not file.exists():
        return None
    try:
        record = json.loads(file.read_text())
        if not isinstance(record, dict) or "settings" not in record:
            raise ValueError("no settings")
        return record
    except ValueError:
        raise TfnasError(f"{file} is not a run record (damaged?): pass --overwrite to start "
                         "afresh, or pick another --model_dir") from None


def _write_record(path: Path, settings: Mapping[str, Any], finished: bool) -> None:
    record = {"settings": dict(settings), "finished": finished}
    write_text(path / RUN_FILE, json.dumps(record, indent=1) + "\n")


def _move_aside(path: Path) -> Path:
    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    aside = path.with_name(f"{path.name}.old-{stamp}")
    n = 1
    while aside.exists():
        n += 1
        aside = path.with_name(f"{path.name}.old-{stamp}-{n}")
    os.replace(path, aside)
    return aside
