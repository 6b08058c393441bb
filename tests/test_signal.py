"""The learner's signal (issue 13): reward transform and lost lives, the same rule for PPO and
IQL, hand-computed; recorded data stays raw; the flags are checked before any work."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch

from blendrl.algos.ppo import RolloutStorage
from blendrl.algos.signal import LearnerSignal, SignalError, default_signal, resolve_signal

ROOT = Path(__file__).resolve().parents[1]


def test_sign_transform_and_raw_by_hand():
    raw = torch.tensor([-3.0, 0.0, 0.5, 200.0], dtype=torch.float64)
    assert LearnerSignal("sign").reward(raw).tolist() == [-1.0, 0.0, 1.0, 1.0]
    assert LearnerSignal("none").reward(raw).tolist() == [-3.0, 0.0, 0.5, 200.0]
    assert LearnerSignal("sign").reward_np(raw.numpy()).tolist() == [-1.0, 0.0, 1.0, 1.0]
    assert LearnerSignal("sign").reward(raw).dtype == torch.float32


def test_lost_life_stops_the_bootstrap_only_when_terminal():
    term = torch.tensor([0.0, 0.0, 1.0, 0.0])
    life = torch.tensor([1.0, 0.0, 0.0, 0.0])
    assert LearnerSignal("none", True).no_bootstrap(term, life).tolist() == [1.0, 0.0, 1.0, 0.0]
    assert LearnerSignal("none", False).no_bootstrap(term, life).tolist() == [0.0, 0.0, 1.0, 0.0]
    assert LearnerSignal("none", True).no_bootstrap(term, None).tolist() == [0.0, 0.0, 1.0, 0.0]
    on = LearnerSignal("none", True).no_bootstrap_np(term.numpy() > 0, life.numpy() > 0)
    assert on.tolist() == [True, False, True, False]


def test_defaults_and_bad_settings():
    assert default_signal(True, True) == LearnerSignal("sign", True)
    assert default_signal(False, False) == LearnerSignal("none", False)
    assert resolve_signal(None, None, env="kangaroo", has_lives=True, is_atari=True) == LearnerSignal("sign", True)
    assert resolve_signal("none", False, env="kangaroo", has_lives=True, is_atari=True) == LearnerSignal("none", False)
    assert resolve_signal("sign", None, env="cartpole", has_lives=False, is_atari=False) == LearnerSignal("sign", False)
    with pytest.raises(SignalError, match="cartpole has no lives"):
        resolve_signal(None, True, env="cartpole", has_lives=False, is_atari=False)
    with pytest.raises(SignalError, match="'clip'"):
        resolve_signal("clip", None, env="kangaroo", has_lives=True, is_atari=True)
    with pytest.raises(SignalError):
        LearnerSignal("log")


def test_gae_does_not_cross_a_lost_life():
    """Life lost at step 1 (the game goes on): no bootstrap there, and the GAE chain is cut.
    gamma 0.9, lambda 0.8, V = 0.5, 0.6, 0.7, V(last) = 0.9, rewards 1:
    t2: delta = 1 + 0.9 * 0.9 - 0.7 = 1.11            A2 = 1.11
    t1: delta = 1 - 0.6 = 0.4 (no bootstrap)          A1 = 0.4 (chain cut)
    t0: delta = 1 + 0.9 * 0.6 - 0.5 = 1.04            A0 = 1.04 + 0.72 * 0.4 = 1.328"""
    st = RolloutStorage(3, 1, (2, 2), (4,), torch.float32, torch.device("cpu"))
    st.rewards[:] = 1.0
    st.values[:] = torch.tensor([[0.5], [0.6], [0.7]])
    sig = LearnerSignal("none", True)
    term = torch.zeros(3, 1, dtype=torch.bool)
    done = torch.zeros(3, 1, dtype=torch.bool)
    life = torch.tensor([[False], [True], [False]])
    st.terminated[:] = torch.as_tensor(sig.no_bootstrap_np(term.numpy(), life.numpy()), dtype=torch.float32)
    st.chain_ends[:] = torch.as_tensor(sig.no_bootstrap_np(done.numpy(), life.numpy()), dtype=torch.float32)
    batch = st.finish(torch.tensor([0.9]), 0.9, 0.8)
    assert batch.advantages.tolist() == pytest.approx([1.328, 0.4, 1.11], abs=1e-6)
    # Off: the same rollout bootstraps through the lost life (one chain, no cut).
    st.terminated.zero_()
    st.chain_ends.zero_()
    off = st.finish(torch.tensor([0.9]), 0.9, 0.8).advantages.tolist()
    # t1: delta = 1 + 0.9 * 0.7 - 0.6 = 1.03, A1 = 1.03 + 0.72 * 1.11 = 1.8292
    assert off[1] == pytest.approx(1.8292, abs=1e-6)


def test_iql_targets_use_the_same_signal():
    from blendrl.agents import NeuralAgent
    from blendrl.algos.iql import IQLConfig, IQLTrainer
    from blendrl.envs import get_spec
    from dataset_utils import Batch

    spec = get_spec("cartpole")
    logic, neural = torch.zeros(3, *spec.logic_shape), torch.zeros(3, 4)
    batch = Batch(logic_state=logic, neural_state=neural, action=torch.zeros(3, dtype=torch.int64),
                  reward=torch.tensor([200.0, -5.0, 0.0]), next_logic_state=logic,
                  next_neural_state=neural, terminated=torch.tensor([0.0, 0.0, 1.0]),
                  truncated=torch.zeros(3), life_lost=torch.tensor([0.0, 1.0, 0.0]))
    next_v = torch.tensor([2.0, 2.0, 2.0])

    def targets(signal: LearnerSignal) -> list[float]:
        trainer = IQLTrainer.for_spec(NeuralAgent(spec), spec, IQLConfig(gamma=0.5, signal=signal))
        return trainer.q_targets(batch, next_v).tolist()

    assert targets(LearnerSignal("none", False)) == pytest.approx([201.0, -4.0, 0.0])
    assert targets(LearnerSignal("sign", False)) == pytest.approx([2.0, 0.0, 0.0])
    # the lost life of row 1 stops its bootstrap: -1 + 0
    assert targets(LearnerSignal("sign", True)) == pytest.approx([2.0, -1.0, 0.0])


@pytest.mark.parametrize("script,flags,message", [
    ("train_neuralppo.py", ["--reward_transform", "clip"], "--reward_transform 'clip' is not one of none, sign"),
    ("train_blenderl.py", ["--eval_policy", "best"], "--eval_policy 'best' is not one of sample, greedy"),
    ("train_neuralppo.py", ["--life_loss_terminal", "True"], "--life_loss_terminal: environment cartpole has no lives"),
    ("train_iql.py", ["--dataset", "nowhere", "--eval_policy", "argmax"], "--eval_policy 'argmax'"),
])
def test_bad_protocol_flags_exit_2_with_one_line(script, flags, message, tmp_path):
    proc = subprocess.run([sys.executable, str(ROOT / script), "--env", "cartpole", *flags,
                           "--runs_dir", str(tmp_path / "runs"), "--dataset_dir", str(tmp_path / "ds")],
                          capture_output=True, text=True, cwd=tmp_path, timeout=120)
    assert proc.returncode == 2, proc.stderr
    lines = [l for l in proc.stderr.splitlines() if l.strip()]
    assert len(lines) == 1 and message in lines[0], proc.stderr
    assert not (tmp_path / "runs").exists()
