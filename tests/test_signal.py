"""The learner's signal (issue 13): reward transform and lost lives, the same rule for PPO and
IQL, hand-computed; recorded data stays raw; the flags are checked before any work."""

from __future__ import annotations

import os
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
    ("train_blenderl.py", ["--life_loss_terminal"], "--life_loss_terminal: environment cartpole has no lives"),
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


@pytest.mark.parametrize("script", ["train_neuralppo.py", "train_blenderl.py", "train_iql.py",
                                    "train_blendrl_iql.py"])
def test_help_names_the_protocol_choices(script):
    """``--help`` shows what the two string flags accept, not tyro's bare ``STR``."""
    proc = subprocess.run([sys.executable, str(ROOT / script), "--help"], capture_output=True,
                          text=True, timeout=120, env={**os.environ, "COLUMNS": "200"})
    assert proc.returncode == 0, proc.stderr
    assert "--reward-transform {none,sign}" in proc.stdout
    assert "--eval-policy {sample,greedy}" in proc.stdout


@pytest.mark.parametrize("argv,expected", [
    ([], None), (["--life_loss_terminal"], True), (["--life_loss_terminal", "False"], False),
    (["--life_loss_terminal", "--seed", "3"], True), (["--life_loss_terminal", "true"], True),
    (["--life_loss_terminal", "None"], None),
])
def test_life_loss_terminal_is_a_flag_or_takes_a_value(argv, expected):
    import tyro

    from blendrl.offline import OfflineArgs
    from blendrl.online import OnlineArgs

    for cls in (OnlineArgs, OfflineArgs):
        assert tyro.cli(cls, args=argv).life_loss_terminal is expected


def _tiny_dataset(path: Path, metadata: dict, steps: int = 40) -> Path:
    import numpy as np

    from dataset_utils import DatasetWriter

    rng = np.random.default_rng(0)
    with DatasetWriter(path, env="cartpole", num_envs=2, logic_shape=(2, 2), neural_shape=(4,),
                       neural_dtype=np.float32, n_actions=2, chunk_size=40, metadata=metadata) as w:
        for t in range(steps):
            s, n = rng.normal(size=(2, 4)).astype(np.float32), rng.normal(size=(2, 4)).astype(np.float32)
            w.add(s.reshape(2, 2, 2), s, rng.integers(0, 2, 2), rng.normal(size=2) * 50,
                  n.reshape(2, 2, 2), n, rng.random(2) < 0.1, np.zeros(2, bool))
        w.mark(2 * steps)
        w.finish()
    return path


@pytest.mark.parametrize("given,expected", [({}, "sign"), ({"reward_transform": "none"}, "none")])
def test_offline_run_adopts_the_datasets_online_signal(tmp_path, given, expected):
    """An offline run left at the default takes the online run's reward transform from the
    dataset's manifest (so IQL optimises what PPO did); an explicit flag wins; run.json records
    the resolved values; the trainer really uses them."""
    import json

    from blendrl import offline
    from blendrl.offline import OfflineArgs, run_offline

    ds = _tiny_dataset(tmp_path / "ds", {"method": "ppo", "run_id": "src", "exp_id": "e", "seed": 0,
                                         "reward_transform": "sign", "life_loss_terminal": False})
    seen = []
    real = offline.IQLTrainer.for_spec

    def spy(actor, spec, config, *a, **kw):
        seen.append(config.signal)
        return real(actor, spec, config, *a, **kw)

    offline.IQLTrainer.for_spec = spy
    try:
        args = OfflineArgs(dataset=ds, run_id="off", runs_dir=tmp_path / "runs", epochs=1, batch_size=16,
                           eval_episodes=1, eval_envs=1, threads=1, device="cpu", hidden=8,
                           critic_hidden=8, **given)
        assert run_offline(args, "iql") == 0
    finally:
        offline.IQLTrainer.for_spec = real
    assert seen == [LearnerSignal(expected, False)]
    run_args = json.loads((tmp_path / "runs" / "off" / "run.json").read_text())["args"]
    assert (run_args["reward_transform"], run_args["life_loss_terminal"]) == (expected, False)
    assert run_args["eval_policy"] == "sample"


def test_life_loss_terminal_needs_a_dataset_that_records_lost_lives(tmp_path, capsys):
    """A Kangaroo dataset written without life_lost cannot give the default lost-life signal:
    the offline run is refused before any work, saying how to go on; classic control has no
    lives at all."""
    import numpy as np

    from blendrl.envs import get_spec
    from blendrl.offline import OfflineArgs, main
    from dataset_utils import DatasetWriter

    spec = get_spec("kangaroo")
    ds = tmp_path / "atari"
    with DatasetWriter(ds, env="kangaroo", num_envs=2, logic_shape=spec.logic_shape,
                       neural_shape=spec.neural_shape, neural_dtype=np.uint8, n_actions=18,
                       metadata={"method": "ppo", "run_id": "src", "exp_id": "e", "seed": 0}) as w:
        logic = np.zeros((2, *spec.logic_shape), np.float32)
        frames = np.zeros((2, *spec.neural_shape), np.uint8)
        for _ in range(3):
            w.add(logic, frames, np.zeros(2, np.int64), np.zeros(2), logic, frames,
                  np.zeros(2, bool), np.zeros(2, bool))
        w.finish()
    assert main(OfflineArgs(dataset=ds, run_id="off", runs_dir=tmp_path / "runs", device="cpu"), "iql") == 2
    err = capsys.readouterr().err
    assert "does not record lost lives" in err and "--life_loss_terminal False" in err
    assert not (tmp_path / "runs").exists()

    classic = _tiny_dataset(tmp_path / "ds", {"method": "ppo", "run_id": "src", "exp_id": "e", "seed": 0})
    args = OfflineArgs(dataset=classic, run_id="off", runs_dir=tmp_path / "runs", life_loss_terminal=True)
    assert main(args, "iql") == 2
    assert "environment cartpole has no lives" in capsys.readouterr().err
    assert not (tmp_path / "runs").exists()


def test_online_learner_sees_the_transform_while_dataset_and_logs_stay_raw(tmp_path, monkeypatch):
    """CartPole with every reward scaled to 37 and --reward_transform sign: PPO's rollout rewards
    are 1.0, the dataset holds 37.0 for every transition and the training log's episode returns
    are 37 times the episode lengths."""
    import numpy as np

    from blendrl import online
    from blendrl.algos.ppo import RolloutStorage
    from blendrl.envs import make_vec_env as real_make
    from blendrl.online import OnlineArgs, run_online
    from blendrl.file_io import load_training_log
    from dataset_utils import DatasetReader

    class Scaled:
        def __init__(self, env):
            self.env, self.num_envs, self.spec = env, env.num_envs, env.spec

        def reset(self, seed=None):
            return self.env.reset(seed=seed)

        def step(self, actions):
            b = self.env.step(actions)
            return b._replace(reward=b.reward * 37.0, episode_return=b.episode_return * 37.0)

        def close(self):
            self.env.close()

    monkeypatch.setattr(online, "make_vec_env", lambda name, n: Scaled(real_make(name, n)))
    seen = []
    real_finish = RolloutStorage.finish

    def finish(self, *a, **kw):
        seen.append(self.rewards.clone())
        return real_finish(self, *a, **kw)

    monkeypatch.setattr(RolloutStorage, "finish", finish)
    args = OnlineArgs(env="cartpole", total_timesteps=1024, num_envs=2, num_steps=128, intervals=1,
                      eval_episodes=1, eval_envs=1, threads=1, run_id="raw", runs_dir=tmp_path / "runs",
                      dataset_dir=tmp_path / "data", save_dataset=True, reward_transform="sign",
                      device="cpu")
    assert run_online(args, "ppo") == 0
    assert seen and all(bool((r == 1.0).all()) for r in seen)
    reader = DatasetReader(tmp_path / "data" / "raw")
    assert np.all(reader.get(list(range(len(reader)))).reward == 37.0)
    log = load_training_log(tmp_path / "runs" / "raw" / "training_log.pkl")
    assert log["episode_returns"] and all(r == 37.0 * n for r, n in zip(log["episode_returns"],
                                                                        log["episode_lengths"]))
