"""The offline interval loop (blendrl/offline.py) and its scripts (train_iql.py,
train_blendrl_iql.py): the prefix rule, one results.json entry per dataset mark, resume after an
interruption (in-process and with a real process and SIGTERM), bad datasets and arguments.

Datasets are tiny cartpole-shaped datasets written with ``DatasetWriter``; their reward is the
transition's index in the dataset, so a sampled batch shows which rows it came from.
"""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from blendrl.offline import (BlendRLOfflineArgs, OfflineArgs, grad_steps_for, iql_config, main,
                             run_offline)
from blendrl.checkpoints import load_checkpoint
from blendrl.contract import EXIT_INTERRUPTED
from blendrl.file_io import load_training_log
from dataset_utils import DatasetReader, DatasetWriter

ROOT = Path(__file__).resolve().parents[1]
NUM_ENVS = 2
MARKS = [30, 70, 100]


@pytest.fixture(autouse=True)
def _restore_threads():
    """run_offline sets torch's thread count (--threads); give the next test back its own."""
    previous = torch.get_num_threads()
    yield
    torch.set_num_threads(previous)


def write_dataset(path: Path, steps: int = 50, marks: list[int] | None = MARKS, chunk_size: int = 40,
                  env: str = "cartpole", seed: int = 0, finish: bool = True) -> Path:
    """``steps * NUM_ENVS`` cartpole-shaped transitions; reward = transition index (``finish``:
    the writer marks it finished, as an online run does at its end)."""
    rng = np.random.default_rng(seed)
    meta = {"method": "ppo", "run_id": "src_run", "exp_id": "e", "seed": 0}
    with DatasetWriter(path, env=env, num_envs=NUM_ENVS, logic_shape=(2, 2), neural_shape=(4,),
                       neural_dtype=np.float32, n_actions=2, chunk_size=chunk_size, metadata=meta) as w:
        state = rng.normal(size=(NUM_ENVS, 4)).astype(np.float32)
        for t in range(steps):
            nxt = rng.normal(size=(NUM_ENVS, 4)).astype(np.float32)
            term = rng.random(NUM_ENVS) < 0.1
            trunc = ~term & (rng.random(NUM_ENVS) < 0.05)
            reward = np.arange(t * NUM_ENVS, (t + 1) * NUM_ENVS, dtype=np.float64)
            w.add(state.reshape(NUM_ENVS, 2, 2), state, rng.integers(0, 2, NUM_ENVS), reward,
                  nxt.reshape(NUM_ENVS, 2, 2), nxt, term, trunc)
            state = np.where((term | trunc)[:, None], rng.normal(size=(NUM_ENVS, 4)), nxt).astype(np.float32)
            for m in marks or []:
                if m == (t + 1) * NUM_ENVS:
                    w.mark(m)
        if finish:
            w.finish()
    return path


class RecordingReader:
    """Wraps a real DatasetReader: records (limit, rewards of each sampled batch) and can send a
    signal to this process at the given (limit, n-th sample)."""

    def __init__(self, log: list, path: Path, limit: int, kill_at: tuple[int, int] | None = None,
                 signum: int = signal.SIGTERM):
        self.inner = DatasetReader(path, limit=limit)
        self.manifest = self.inner.manifest
        self.log, self.limit, self.kill_at, self.signum = log, limit, kill_at, signum

    def extend(self, limit):
        self.inner.extend(limit)
        self.limit = limit

    def sample(self, batch_size, rng):
        batch = self.inner.sample(batch_size, rng)
        self.log.append((self.limit, batch.reward.copy()))
        n_here = sum(1 for lim, _ in self.log if lim == self.limit)
        if self.kill_at == (self.limit, n_here):
            os.kill(os.getpid(), self.signum)
        return batch


def recorder(log: list, kill_at: tuple[int, int] | None = None, signum: int = signal.SIGTERM):
    return lambda path, limit, manifest: RecordingReader(log, path, limit, kill_at, signum)


def make_args(tmp_path: Path, dataset: Path, cls=OfflineArgs, **kw) -> OfflineArgs:
    base = dict(dataset=dataset, run_id="off", runs_dir=tmp_path / "runs", epochs=2, batch_size=8,
                eval_episodes=1, eval_envs=1, threads=1, device="cpu", hidden=8, critic_hidden=16,
                log_every=5)
    base.update(kw)
    return cls(**base)


def read_results(tmp_path: Path, run_id: str = "off") -> list[dict]:
    return json.loads((tmp_path / "runs" / run_id / "results.json").read_text())


# --------------------------------------------------------------------------- intervals

def test_prefix_rule_and_one_result_per_mark(tmp_path):
    data = write_dataset(tmp_path / "ds")
    log: list = []
    assert run_offline(make_args(tmp_path, data), "iql", recorder(log)) == 0

    expected_steps = [grad_steps_for(m, 2, 8) for m in MARKS]
    assert expected_steps == [math.ceil(2 * m / 8) for m in MARKS] == [8, 18, 25]
    for mark, steps in zip(MARKS, expected_steps):
        rows = np.concatenate([r for lim, r in log if lim == mark])
        assert len(rows) == steps * 8
        assert rows.max() < mark  # only the first `mark` transitions were sampled
        assert rows.min() >= 0 and rows.max() >= 0.8 * mark  # ... and from all over the prefix
    assert [lim for lim, _ in log] == sorted(lim for lim, _ in log)  # intervals in order

    results = read_results(tmp_path)
    assert [r["interval"] for r in results] == [1, 2, 3]
    assert [r["data_limit"] for r in results] == MARKS
    assert [r["grad_steps"] for r in results] == expected_steps
    for r in results:
        assert r["episodes"] == 1 == len(r["returns"]) == len(r["lengths"])
        assert r["mean_return"] == r["returns"][0] and r["std_return"] == 0.0
        assert r["train_seconds"] > 0 and r["eval_seconds"] > 0
        assert "logic_weight" not in r

    run_dir = tmp_path / "runs" / "off"
    run = json.loads((run_dir / "run.json").read_text())
    assert (run["method"], run["kind"], run["env"], run["exp_id"]) == ("iql", "offline", "cartpole", "default")
    assert run["dataset_source"] == {"role": "read", "path": str(data), "run_id": "src_run", "method": "ppo"}
    timing = json.loads((run_dir / "timing.json").read_text())
    assert timing["finished"] is True and timing["train_seconds"] > 0
    log_pkl = load_training_log(run_dir / "training_log.pkl")
    assert log_pkl["updates"] and log_pkl["updates"][-1]["global_step"] == sum(expected_steps)
    assert {"losses/value", "losses/q", "losses/actor"} <= set(log_pkl["updates"][0])
    assert any(p.name.startswith("events.out.tfevents") for p in run_dir.iterdir())
    ckpt = load_checkpoint(run_dir / "checkpoints" / "latest.pt")
    assert ckpt["trainer"]["num_updates"] == sum(expected_steps)  # training continued across intervals
    assert ckpt["interval"] == 3 and ckpt["limits"] == MARKS
    assert (run_dir / "checkpoints" / "best.pt").is_file()


def test_without_marks_intervals_are_evenly_spaced(tmp_path):
    data = write_dataset(tmp_path / "ds", marks=None)
    log: list = []
    assert run_offline(make_args(tmp_path, data, intervals=4, epochs=1), "iql", recorder(log)) == 0
    assert [r["data_limit"] for r in read_results(tmp_path)] == [25, 50, 75, 100]
    assert sorted({lim for lim, _ in log}) == [25, 50, 75, 100]


def test_reset_per_interval_starts_every_interval_afresh(tmp_path):
    data = write_dataset(tmp_path / "ds")
    assert run_offline(make_args(tmp_path, data, reset_per_interval=True), "iql") == 0
    ckpt = load_checkpoint(tmp_path / "runs" / "off" / "checkpoints" / "latest.pt")
    assert ckpt["trainer"]["num_updates"] == grad_steps_for(MARKS[-1], 2, 8)  # last interval only


# --------------------------------------------------------------------------- resume

def test_resume_after_an_interrupted_interval_gives_every_interval_once(tmp_path):
    data = write_dataset(tmp_path / "ds")
    log: list = []
    # SIGUSR1 (SLURM's warning signal) at the 5th minibatch of interval 2: a checkpoint
    # mid-interval, exit 75 (the real-process test below uses SIGTERM)
    status = run_offline(make_args(tmp_path, data), "iql", recorder(log, (70, 5), signal.SIGUSR1))
    assert status == EXIT_INTERRUPTED
    assert [r["data_limit"] for r in read_results(tmp_path)] == [30]
    ckpt = load_checkpoint(tmp_path / "runs" / "off" / "checkpoints" / "latest.pt")
    assert (ckpt["interval"], ckpt["step_in_interval"]) == (1, 5)

    assert run_offline(make_args(tmp_path, data, resume=True), "iql", recorder(log)) == 0
    results = read_results(tmp_path)
    assert [r["interval"] for r in results] == [1, 2, 3]
    assert [r["data_limit"] for r in results] == MARKS
    for mark in MARKS:  # no gradient step lost or repeated across the interruption
        assert sum(1 for lim, _ in log if lim == mark) == grad_steps_for(mark, 2, 8)

    # the interrupted-and-resumed run computed exactly what an uninterrupted one computes
    assert run_offline(make_args(tmp_path, data, run_id="straight"), "iql") == 0
    straight = load_checkpoint(tmp_path / "runs" / "straight" / "checkpoints" / "latest.pt")
    resumed = load_checkpoint(tmp_path / "runs" / "off" / "checkpoints" / "latest.pt")
    for name, tensor in straight["trainer"]["actor"].items():
        assert torch.equal(tensor, resumed["trainer"]["actor"][name]), name
    assert [r["returns"] for r in read_results(tmp_path, "straight")] == [r["returns"] for r in results]

    # resuming a finished run does nothing more
    assert run_offline(make_args(tmp_path, data, resume=True), "iql", recorder(log)) == 0
    assert len(read_results(tmp_path)) == 3


def test_resume_refuses_changed_hyperparameters(tmp_path, capsys):
    data = write_dataset(tmp_path / "ds")
    assert run_offline(make_args(tmp_path, data, epochs=1), "iql") == 0
    assert main(make_args(tmp_path, data, epochs=1, expectile=0.9, resume=True), "iql") == 2
    assert "--expectile 0.7 -> 0.9" in capsys.readouterr().err


def test_bf16_run_records_its_precision_and_resume_cannot_change_it(tmp_path, capsys):
    data = write_dataset(tmp_path / "ds")
    assert run_offline(make_args(tmp_path, data, epochs=1, precision="bf16"), "iql") == 0
    run = json.loads((tmp_path / "runs" / "off" / "run.json").read_text())
    assert run["args"]["precision"] == "bf16"
    assert iql_config(make_args(tmp_path, data, precision="bf16"), None).precision == "bf16"
    results = read_results(tmp_path)
    assert len(results) == 3 and all(math.isfinite(r["mean_return"]) for r in results)
    assert main(make_args(tmp_path, data, epochs=1, resume=True), "iql") == 2
    assert "--precision 'bf16' -> 'fp32'" in capsys.readouterr().err


def test_signal_to_a_real_process_then_resume(tmp_path):
    """train_iql.py as a process: SIGTERM once it has started -> exit 75; --resume -> exit 0."""
    data = write_dataset(tmp_path / "ds", steps=200, marks=[200, 400])
    cmd = [sys.executable, str(ROOT / "train_iql.py"), "--dataset", str(data), "--run_id", "p",
           "--runs_dir", str(tmp_path / "runs"), "--epochs", "8", "--batch_size", "16",
           "--eval_episodes", "1", "--eval_envs", "1", "--device", "cpu", "--critic_hidden", "16"]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen(cmd, cwd=tmp_path, env=env, stderr=subprocess.PIPE, text=True)
    run_json = tmp_path / "runs" / "p" / "run.json"
    deadline = time.monotonic() + 120
    while not run_json.exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == EXIT_INTERRUPTED, err
    assert "rerun with --resume" in err
    done = subprocess.run(cmd + ["--resume"], cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr
    results = read_results(tmp_path, "p")
    assert [(r["interval"], r["data_limit"]) for r in results] == [(1, 200), (2, 400)]
    assert [r["grad_steps"] for r in results] == [100, 200]


# --------------------------------------------------------------------------- bad input

def test_bad_datasets_are_refused_naming_the_path(tmp_path, capsys):
    good = write_dataset(tmp_path / "good")
    empty_dir = tmp_path / "empty_dir"
    empty_dir.mkdir()
    no_rows = tmp_path / "no_rows"
    DatasetWriter(no_rows, env="cartpole", num_envs=2, logic_shape=(2, 2), neural_shape=(4,),
                  neural_dtype=np.float32, n_actions=2).close()
    corrupt = write_dataset(tmp_path / "corrupt")
    first_chunk = sorted(corrupt.glob("chunk_*.pkl"))[0]
    raw = bytearray(first_chunk.read_bytes())
    raw[len(raw) // 2] ^= 0xFF  # same size, different content
    first_chunk.write_bytes(bytes(raw))
    truncated = write_dataset(tmp_path / "truncated")
    last_chunk = sorted(truncated.glob("chunk_*.pkl"))[-1]
    last_chunk.write_bytes(last_chunk.read_bytes()[:-10])
    mountain = write_dataset(tmp_path / "mountain", env="mountaincar_like")

    # a dataset that is not there or does not fit: bad arguments (2); a broken file: a data fault (65)
    cases = [(tmp_path / "missing", "does not exist", 2), (empty_dir, "no manifest.json", 2),
             (no_rows, "is empty", 2), (corrupt, "CRC", 65), (truncated, "truncated", 65),
             (mountain, "not a known environment", 2)]
    for i, (path, words, status) in enumerate(cases):
        assert main(make_args(tmp_path, path, run_id=f"bad{i}"), "iql") == status
        err = capsys.readouterr().err
        assert str(path) in err and words in err, err
        assert not (tmp_path / "runs" / f"bad{i}").exists()  # no work done

    assert main(make_args(tmp_path, good, env="mountaincar"), "iql") == 2
    assert "--env mountaincar does not match" in capsys.readouterr().err
    assert not (tmp_path / "runs" / "off").exists()


@pytest.mark.parametrize("change,words", [
    ({"dataset": None}, "exactly one of --dataset"),
    ({"dataset_run_id": "x"}, "exactly one of --dataset"),
    ({"epochs": 0}, "--epochs must be in [1, inf), got 0"),
    ({"batch_size": -1}, "--batch_size must be in [1, inf), got -1"),
    ({"expectile": 1.5}, "expectile"),
    ({"learning_rate": 0.0}, "--learning_rate"),
    ({"env": "pong"}, "unknown environment 'pong'"),
    ({"run_id": "../escape"}, "invalid run id"),
    ({"resume": True}, "no checkpoint"),
])
def test_bad_arguments_exit_2(tmp_path, capsys, change, words):
    data = write_dataset(tmp_path / "ds")
    assert main(replace(make_args(tmp_path, data), **change), "iql") == 2
    assert words in capsys.readouterr().err


def test_existing_run_folder_is_not_overwritten(tmp_path, capsys):
    data = write_dataset(tmp_path / "ds")
    assert run_offline(make_args(tmp_path, data, epochs=1), "iql") == 0
    before = (tmp_path / "runs" / "off" / "results.json").read_bytes()
    assert main(make_args(tmp_path, data, epochs=1), "iql") == 2
    assert "already exists" in capsys.readouterr().err
    assert (tmp_path / "runs" / "off" / "results.json").read_bytes() == before


def test_script_reports_a_missing_dataset_with_exit_2(tmp_path):
    out = subprocess.run([sys.executable, str(ROOT / "train_blendrl_iql.py"), "--dataset_run_id",
                          "nothing", "--dataset_dir", str(tmp_path)], cwd=tmp_path,
                         env={**os.environ, "PYTHONPATH": str(ROOT)}, capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 2
    assert f"{tmp_path / 'nothing'} does not exist" in out.stderr


# --------------------------------------------------------------------------- BlendRL

def test_blendrl_iql_trains_all_three_parameter_groups(tmp_path):
    data = write_dataset(tmp_path / "ds")
    args = make_args(tmp_path, data, cls=BlendRLOfflineArgs, logic_lr=1e-2, blender_lr=5e-2)
    assert run_offline(args, "blendrl_iql") == 0
    results = read_results(tmp_path)
    assert [r["data_limit"] for r in results] == MARKS
    assert all(0.0 <= r["logic_weight"] <= 1.0 for r in results)
    run_dir = tmp_path / "runs" / "off"
    assert load_training_log(run_dir / "training_log.pkl")["blend"]
    ckpt = load_checkpoint(run_dir / "checkpoints" / "latest.pt")
    groups = ckpt["trainer"]["actor_optimizer"]["param_groups"]
    assert [(g["name"], g["lr"]) for g in groups] == [("neural", 3e-4), ("logic", 1e-2), ("blender", 5e-2)]
    # every group has Adam state: each received gradients from the AWR loss
    state = ckpt["trainer"]["actor_optimizer"]["state"]
    for g in groups:
        assert any(int(p) in state and float(state[int(p)]["exp_avg_sq"].abs().sum()) > 0
                   for p in g["params"]), g["name"]
    assert json.loads((run_dir / "run.json").read_text())["method"] == "blendrl_iql"
