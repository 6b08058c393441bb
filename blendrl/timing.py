"""A run's cumulative train / eval / wall seconds (``timing.json``)."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from blendrl.file_io import atomic_write_json, now_iso

if TYPE_CHECKING:
    from blendrl.run_dir import RunDir


class Timer:
    """Cumulative train / eval / wall seconds of a run, carried across resumes via timing.json."""

    def __init__(self, run: RunDir, state: dict | None = None):
        self.run = run
        state = state or {}
        self.started_at = state.get("started_at", now_iso())
        self.train_seconds = float(state.get("train_seconds", 0.0))
        self.eval_seconds = float(state.get("eval_seconds", 0.0))
        self._wall_before = float(state.get("wall_seconds", 0.0))
        self._t0 = time.perf_counter()

    @property
    def wall_seconds(self) -> float:
        return self._wall_before + time.perf_counter() - self._t0

    def state(self, finished: bool = False) -> dict:
        return {"started_at": self.started_at, "updated_at": now_iso(),
                "wall_seconds": self.wall_seconds, "train_seconds": self.train_seconds,
                "eval_seconds": self.eval_seconds, "finished": finished}

    def save(self, finished: bool = False) -> None:
        atomic_write_json(self.run.timing_json, self.state(finished))
