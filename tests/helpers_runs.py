"""Run folders written by hand (docs/FORMATS.md): ``run.json``, ``results.json``, ``timing.json``,
``training_log.pkl`` with chosen numbers, for the plotting and statistics tests."""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import numpy as np


def evaluation(interval: int, data_limit: int, returns: list[float], train_s: float, eval_s: float,
               logic_weight: float | None = None) -> dict:
    e = {"interval": interval, "data_limit": data_limit, "mean_return": float(np.mean(returns)),
         "std_return": float(np.std(returns)), "episodes": len(returns), "returns": returns,
         "lengths": [10] * len(returns), "train_seconds": train_s, "eval_seconds": eval_s,
         "global_step": data_limit}
    if logic_weight is not None:
        e["logic_weight"] = logic_weight
    return e


def training_log(steps: list[int], returns: list[float], blend: list[tuple[int, float]] = ()) -> dict:
    return {"episode_returns": returns, "episode_lengths": [10] * len(returns),
            "episode_end_steps": steps, "updates": [],
            "blend": [{"global_step": s, "logic_weight_mean": w, "logic_weight_std": 0.05}
                      for s, w in blend]}


def write_run(runs_dir: Path, folder: str, *, exp_id: str, method: str, seed: int,
              results: list | None = None, timing: dict | None = None, log: dict | None = None,
              source: str | None = None, env: str = "cartpole", args: dict | None = None,
              source_run_id: str | None = None) -> Path:
    """A run folder with run.json and whichever other files are given."""
    d = runs_dir / folder
    d.mkdir(parents=True)
    online = method in ("ppo", "blendrl_ppo")
    dataset = ({"role": "written", "path": f"offline_dataset/{folder}", "run_id": folder} if online
               else {"role": "read", "path": f"offline_dataset/{exp_id}_{source}_s{seed}",
                     "run_id": source_run_id or f"{exp_id}_{source}_s{seed}", "method": source})
    (d / "run.json").write_text(json.dumps({
        "format_version": 1, "run_id": folder, "exp_id": exp_id, "method": method,
        "kind": "online" if online else "offline", "env": env, "seed": seed, "args": args or {},
        "dataset_source": dataset, "versions": {}, "created_at": "2026-01-01T00:00:00+00:00"}))
    if results is not None:
        (d / "results.json").write_text(json.dumps(results))
    if timing is not None:
        (d / "timing.json").write_text(json.dumps(timing))
    if log is not None:
        (d / "training_log.pkl").write_bytes(pickle.dumps(log))
    return d


def timing(wall: float, finished: bool = True) -> dict:
    return {"started_at": "2026-01-01T00:00:00+00:00", "updated_at": "2026-01-01T00:01:00+00:00",
            "wall_seconds": wall, "train_seconds": 0.0, "eval_seconds": 0.0, "finished": finished}
