"""The job registry ``logs/{exp}/registry.json``: every job of an experiment with its command,
dependencies, SLURM id or pid and process group, state, exit code and timestamps.

The file is replaced atomically (temp file + ``os.replace``) so a reader never sees half of it,
and every read-modify-write holds an exclusive ``flock`` on ``registry.lock`` beside it, because
the launcher, the local runner, ``--status`` and ``kill_experiments.sh`` all update it.

Layout::

    {"format_version": 1, "exp_id": ..., "mode": "local" | "slurm", "work_dir": ...,
     "created_at": ..., "updated_at": ..., "plots_dir": ...,
     "knobs": {...},              # what the runs compute (--resume refuses to change it)
     "resumed_from": ...,         # set by --resume: the archived registry it continues
     "kill_requested": false, "kill_requested_at": ..., "kill_grace": ...,   # set by kill
     "max_parallel": 2,                                   # local mode
     "runner": {"pid": ..., "pgid": ..., "start_time": ..., "state": ...},   # local mode
     "jobs": [{"name", "kind", "command", "depends_on", "dependency", "method", "seed",
               "run_id", "run_dir", "dataset_dir", "resumable", "threads", "request", "log",
               "state", "exit_code", "reason", "pid", "pgid", "start_time", "slurm_id",
               "sbatch_script", "submit_command", "submitted_at", "started_at", "ended_at",
               "restarts", "slurm_times", "slurm_reason", "resume"}, ...]}

``request`` (cluster mode) is what the job asked SLURM for and the knob of each part
(``{"cpus": 4, "mem": "16G", "gpus": "1", "knobs": {"cpus": "CLUSTER_CPUS", "mem": ...,
"gpus": "CLUSTER_OFFLINE_GPUS"}}``; None locally): a pending reason names those knobs.
``slurm_times`` (cluster mode) is SLURM's ``{"start", "end", "submit"}`` of the job's latest
attempt, as ``scontrol show job`` reported it when the job was last seen; ``slurm_reason`` its
``Reason`` then (why a pending job waits: ``Priority``, ``PartitionConfig``, ...). ``resume``
(set by ``--resume``) says how the job continues: ``"checkpoint"`` (its command ends with
``--resume``), ``"clean"`` (started afresh) or ``"kept"`` (done before, not run again).

A job's states and the record of its end are :mod:`blendrl.launch.states`; which jobs may start
now, :mod:`blendrl.launch.scheduling`.
"""

from __future__ import annotations

import fcntl
import json
import os
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from blendrl.file_io import atomic_write_json, now_iso
from blendrl.launch.states import PENDING

_FORMAT_VERSION = 1
FILE_NAME = "registry.json"


class RegistryError(RuntimeError):
    """A registry that is missing or unreadable."""


class Registry:
    """The registry file of one experiment."""

    def __init__(self, exp_logs_dir: Path):
        self.dir = Path(exp_logs_dir)
        self.path = self.dir / FILE_NAME
        self.lock_path = self.dir / "registry.lock"

    @classmethod
    def of(cls, logs_dir: Path, exp_id: str) -> "Registry":
        return cls(Path(logs_dir) / exp_id)

    def exists(self) -> bool:
        return self.path.is_file()

    @contextmanager
    def _lock(self) -> Iterator[None]:
        self.dir.mkdir(parents=True, exist_ok=True)
        with open(self.lock_path, "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)

    def _load(self) -> dict:
        try:
            with open(self.path) as f:
                data = json.load(f)
        except FileNotFoundError:
            raise RegistryError(f"no job registry at {self.path}") from None
        except (OSError, json.JSONDecodeError) as e:
            raise RegistryError(f"cannot read the job registry {self.path}: {e}") from e
        if not isinstance(data, dict) or data.get("format_version") != _FORMAT_VERSION:
            raise RegistryError(f"{self.path} is not a job registry of format {_FORMAT_VERSION}")
        return data

    def read(self) -> dict:
        """A consistent snapshot (no lock needed: the file is replaced atomically)."""
        return self._load()

    def create(self, data: dict) -> Path | None:
        """Start a new registry; a previous one is kept as ``registry.{its creation time}.json``
        (never overwriting an archived one), whose path is returned."""
        archived = None
        with self._lock():
            if self.path.is_file():
                try:
                    old = self._load().get("created_at", "old")
                except RegistryError:
                    old = "unreadable"
                stamp = "".join(c for c in str(old) if c.isalnum()) or "old"
                archived = self.dir / f"registry.{stamp}.json"
                n = 1
                while archived.exists():
                    n += 1
                    archived = self.dir / f"registry.{stamp}.{n}.json"
                os.replace(self.path, archived)
            data = {"format_version": _FORMAT_VERSION, "created_at": now_iso(), **data}
            data["updated_at"] = now_iso()
            atomic_write_json(self.path, data)
        return archived

    @contextmanager
    def update(self) -> Iterator[dict]:
        """Read under the lock, let the caller change the dict, write it back atomically
        (only if it changed)."""
        with self._lock():
            data = self._load()
            before = json.dumps(data, sort_keys=True)
            yield data
            if json.dumps(data, sort_keys=True) != before:  # nothing changed: no write
                data["updated_at"] = now_iso()
                atomic_write_json(self.path, data)


def new_job_entry(job: dict, log: Path) -> dict:
    """A registry entry for a planned job (``Job.to_dict()``), not started yet."""
    return {**job, "log": str(log), "state": PENDING, "exit_code": None, "reason": None,
            "pid": None, "pgid": None, "start_time": None, "slurm_id": None,
            "submitted_at": None, "started_at": None, "ended_at": None, "restarts": 0,
            "slurm_times": None}
