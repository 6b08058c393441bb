"""A run's folder ``{runs_dir}/{run_id}/`` and the files written in it (docs/FORMATS.md):
``run.json``, ``results.json``, ``timing.json``, ``training_log.pkl``, the checkpoints' folder;
the run id that names it, and the lock that lets one job write it."""

from __future__ import annotations

import fcntl
import os
import pickle
import re
import sys
from pathlib import Path
from typing import Any

import numpy as np
import torch

from blendrl.checkpoints import args_to_dict
from blendrl.contract import (BEST_CHECKPOINT, CHECKPOINTS_DIR, LATEST_CHECKPOINT, RESULTS_JSON,
                              RUN_FORMAT_VERSION, RUN_JSON, TIMING_JSON, TRAINING_LOG)
from blendrl.file_io import atomic_write_bytes, atomic_write_json, load_training_log, now_iso, read_json
from blendrl.methods import METHODS
from blendrl.exits import RunError
from blendrl.machine import platform_change, platform_info, versions

_SAFE_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")


def validate_run_id(run_id: str) -> str:
    """A run id is one path component of safe characters (it names folders and shell arguments)."""
    if not isinstance(run_id, str) or not _SAFE_ID.match(run_id) or run_id in (".", ".."):
        raise RunError(f"invalid run id {run_id!r}: use 1-128 letters, digits, '.', '_' or '-', "
                       "starting with a letter or digit (it must not leave the runs folder)")
    return run_id


def _plain(obj: Any) -> Any:
    """Convert numpy scalars/arrays inside a structure into plain Python values."""
    if isinstance(obj, dict):
        return {str(k): _plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_plain(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, torch.Tensor):
        return obj.detach().cpu().tolist()
    return obj


RUN_LOCK = ".run.lock"
"""The lock file of a run folder, held by the one job that writes it."""



def no_checkpoint(path: Path) -> str:
    """What ``--resume`` of a run without a latest checkpoint says."""
    return (f"--resume: no checkpoint at {path}: nothing to resume (a run that stopped before its "
            "first checkpoint starts again without --resume, once its folder and any dataset it "
            "began are removed)")

class RunDir:
    """``{runs_dir}/{run_id}/`` and its files."""

    def __init__(self, runs_dir: str | Path, run_id: str):
        self.run_id = validate_run_id(run_id)
        self.root = Path(runs_dir).resolve()
        self.path = self.root / run_id
        if self.path.parent != self.root:
            raise RunError(f"run id {run_id!r} would escape {self.root}")
        self._lock_fd: int | None = None

    # paths
    @property
    def run_json(self) -> Path:
        return self.path / RUN_JSON

    @property
    def results_json(self) -> Path:
        return self.path / RESULTS_JSON

    @property
    def timing_json(self) -> Path:
        return self.path / TIMING_JSON

    @property
    def training_log_path(self) -> Path:
        return self.path / TRAINING_LOG

    @property
    def checkpoints(self) -> Path:
        return self.path / CHECKPOINTS_DIR

    @property
    def latest_checkpoint(self) -> Path:
        return self.checkpoints / LATEST_CHECKPOINT

    @property
    def best_checkpoint(self) -> Path:
        return self.checkpoints / BEST_CHECKPOINT

    def exists(self) -> bool:
        return self.run_json.exists()

    def prepare(self, resume: bool) -> None:
        """Create the folder and take its lock (one writer per run folder, held until the process
        ends). Starting afresh over an existing run is an error (nothing is overwritten
        silently); resuming needs a latest checkpoint."""
        if resume:
            if not self.latest_checkpoint.exists():
                raise RunError(no_checkpoint(self.latest_checkpoint))
        elif self.path.exists() and any(p.name != RUN_LOCK for p in self.path.iterdir()):
            raise RunError(f"run folder {self.path} already exists and is not empty: choose another "
                           "--run_id, remove it, or pass --resume to continue it")
        self.path.mkdir(parents=True, exist_ok=True)
        self.lock()
        self.checkpoints.mkdir(parents=True, exist_ok=True)

    def lock(self) -> None:
        """Hold ``{run}/.run.lock`` (an advisory flock, released when the process dies): a second
        job on the same run folder is a RunError before it writes anything."""
        if self._lock_fd is not None:
            return
        path = self.path / RUN_LOCK
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 32, 0).decode("ascii", "replace").strip()
            os.close(fd)
            raise RunError(f"another job is writing run folder {self.path}"
                           f"{f' (pid {holder})' if holder else ''}: only one job may write a run; "
                           "wait for it to end or stop it first") from None
        except OSError:  # a file system without flock: go on unlocked
            pass
        os.ftruncate(fd, 0)
        os.pwrite(fd, str(os.getpid()).encode(), 0)
        self._lock_fd = fd

    def unlock(self) -> None:
        """Release the run folder's lock (when the job ends; a dead process releases it too)."""
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None

    def write_run_json(self, *, exp_id: str, method: str, env: str, seed: int, args: Any,
                       dataset_source: dict | None, device: torch.device | str = "cpu",
                       extra: dict | None = None) -> None:
        """``extra``: further top-level entries (an offline run's ``dataset_partial``)."""
        if method not in METHODS:
            raise RunError(f"unknown method {method!r}")
        atomic_write_json(self.run_json, {
            "format_version": RUN_FORMAT_VERSION, "run_id": self.run_id, "exp_id": exp_id,
            "method": method, "kind": METHODS[method], "env": env, "seed": seed,
            "args": args_to_dict(args), "dataset_source": dataset_source, "versions": versions(),
            "platform": platform_info(device), "created_at": now_iso(), **(extra or {}),
        })

    def record_partial(self, partial: bool) -> None:
        """Record in ``run.json`` whether the run trained on a dataset its online run did not
        finish (``dataset_partial``: the report lists a partial run); rewritten only on a change."""
        meta = self.read_run_json()
        if meta.get("dataset_partial") != partial:
            meta["dataset_partial"] = partial
            atomic_write_json(self.run_json, meta)

    def read_run_json(self) -> dict:
        return read_json(self.run_json)

    def say_if_resumed_elsewhere(self, device: torch.device | str = "cpu") -> None:
        """On ``--resume``: a note on stderr when this machine, the device or the thread count is
        not what the run started with."""
        try:
            recorded = self.read_run_json().get("platform")
        except (OSError, ValueError):
            return
        note = platform_change(recorded, device)
        if note:
            print(f"[{self.run_id}] {note}", file=sys.stderr, flush=True)

    def read_results(self) -> list[dict]:
        return read_json(self.results_json) if self.results_json.exists() else []

    def write_results(self, results: list[dict]) -> None:
        atomic_write_json(self.results_json, _plain(results))

    def write_training_log(self, log: dict) -> None:
        atomic_write_bytes(self.training_log_path, pickle.dumps(_plain(log), protocol=4))

    def read_training_log(self) -> dict:
        return load_training_log(self.training_log_path)
