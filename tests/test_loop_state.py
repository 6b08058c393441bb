"""The training loops' state is a typed record with defaults (blendrl/loop_state.py): checkpoints
written by the code of commit eb265fc (tests/data/loop_state_v1, a finished cartpole PPO run with
its dataset and an IQL run on it) still resume, and a checkpoint that lacks a field written by
later code loads with that field's default."""

from __future__ import annotations

import json
import math
import shutil
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Annotated

import pytest
import torch

from blendrl.offline import OfflineArgs, run_offline
from blendrl.online import OnlineArgs, run_online
from blendrl.checkpoints import (RESUME_FREE, load_checkpoint, resume_changes, resume_fixed_fields,
                                 save_checkpoint)
from blendrl.loop_state import OfflineLoopState, OnlineLoopState, state_from_checkpoint, state_items

FIXTURE = Path(__file__).resolve().parent / "data" / "loop_state_v1"


@pytest.fixture(autouse=True)
def _restore_threads():
    previous = torch.get_num_threads()
    yield
    torch.set_num_threads(previous)


@pytest.fixture
def work(tmp_path: Path) -> Path:
    shutil.copytree(FIXTURE, tmp_path / "w")
    return tmp_path / "w"


def online_args(work: Path) -> OnlineArgs:
    return OnlineArgs(env="cartpole", total_timesteps=1024, num_envs=2, num_steps=128, intervals=2,
                      eval_episodes=1, eval_envs=1, hidden=8, threads=1, run_id="on1",
                      runs_dir=work / "runs", dataset_dir=work / "data", save_dataset=True,
                      resume=True, device="cpu", progress_seconds=100)


def test_state_defaults_fill_fields_a_checkpoint_lacks():
    st = state_from_checkpoint(OnlineLoopState, {"global_step": 64, "agent": "not state"})
    assert (st.global_step, st.iteration, st.next_mark, st.results, st.timing) == (64, 0, 0, [], None)
    assert st.best_return == -math.inf and set(st.training_log) >= {"episode_returns", "updates"}
    off = state_from_checkpoint(OfflineLoopState, {"interval": 1, "grad_steps": 8})
    assert (off.interval, off.step_in_interval, off.grad_steps) == (1, 0, 8)
    assert list(state_items(off)) == ["best_return", "results", "training_log", "timing", "interval",
                                      "step_in_interval", "interval_train_seconds", "grad_steps"]


def test_online_checkpoint_of_earlier_code_resumes(work):
    before = json.loads((work / "runs" / "on1" / "results.json").read_text())
    assert run_online(online_args(work), "ppo") == 0
    ckpt = load_checkpoint(work / "runs" / "on1" / "checkpoints" / "latest.pt")
    assert ckpt["global_step"] == 1024 and ckpt["iteration"] == 4 and ckpt["next_mark"] == 2
    assert json.loads((work / "runs" / "on1" / "results.json").read_text()) == before


def test_checkpoint_missing_a_field_resumes_with_its_default(work):
    """An older checkpoint without ``timing`` (say, from before timing existed) still resumes."""
    path = work / "runs" / "on1" / "checkpoints" / "latest.pt"
    ckpt = load_checkpoint(path)
    del ckpt["timing"], ckpt["format_version"]
    save_checkpoint(path, ckpt)
    assert run_online(online_args(work), "ppo") == 0
    assert json.loads((work / "runs" / "on1" / "timing.json").read_text())["finished"] is True


def test_offline_checkpoint_of_earlier_code_resumes(work):
    before = json.loads((work / "runs" / "off1" / "results.json").read_text())
    args = OfflineArgs(dataset=work / "data" / "on1", run_id="off1", runs_dir=work / "runs", epochs=1,
                       batch_size=64, hidden=8, critic_hidden=8, eval_episodes=1, eval_envs=1,
                       threads=1, device="cpu", resume=True, progress_seconds=100)
    assert run_offline(args, "iql") == 0
    assert json.loads((work / "runs" / "off1" / "results.json").read_text()) == before
    ckpt = load_checkpoint(work / "runs" / "off1" / "checkpoints" / "latest.pt")
    assert ckpt["interval"] == 2 and ckpt["grad_steps"] == 24


def test_what_resume_may_change_comes_from_the_fields_own_marks(work, capsys):
    """A field is fixed on --resume unless its annotation says RESUME_FREE; a field that the
    checkpoint's args lack (added by later code) is no change."""
    from blendrl.online import main

    @dataclass
    class Toy:
        lr: float = 0.1
        threads: Annotated[int, RESUME_FREE] = 1
        new_flag: int = 3

    assert resume_fixed_fields(Toy) == ("lr", "new_flag")
    assert resume_changes(Toy, {"lr": 0.1, "threads": 1}, {"lr": 0.2, "threads": 4, "new_flag": 9}) == [
        "--lr 0.1 -> 0.2"]
    assert "gamma" in resume_fixed_fields(OnlineArgs) and "threads" not in resume_fixed_fields(OnlineArgs)
    # On the real script: more threads and another progress interval are fine, another gamma not.
    assert run_online(replace(online_args(work), threads=2, progress_seconds=50), "ppo") == 0
    assert main(replace(online_args(work), gamma=0.9), "ppo") == 2
    assert "--resume cannot change what the run computes: --gamma 0.99 -> 0.9" in capsys.readouterr().err
