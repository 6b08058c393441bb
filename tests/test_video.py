"""Evaluation videos (``--eval_video``, :mod:`blendrl.video`): the evaluation's results are the same
with and without a video, a video holds one frame per agent step of episode 0 (frames ==
episode length: the frame each action was taken on, not the state after the last step), a
BlendRL video has its text panel beside the native frame, the launcher's EVAL_VIDEO=1 gives all
four training jobs ``--eval_video``, report.md links the videos, and ``--eval_video`` on an
environment that cannot render is one line, exit 2, before any work."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import imageio.v2 as imageio
import numpy as np
import pytest
import torch

from blendrl.agents import BlendRLAgent, NeuralAgent
from blendrl.envs import env_module, get_spec
from blendrl.evaluation import evaluate
from blendrl.video import VIDEO_DIR, pad_even, panel_lines, video_name

CPU = torch.device("cpu")
ROOT = Path(__file__).resolve().parents[1]


def _frames(path: Path) -> list[np.ndarray]:
    reader = imageio.get_reader(str(path))
    try:
        return [np.asarray(f) for f in reader]
    finally:
        reader.close()


@pytest.mark.parametrize("agent_class", [NeuralAgent, BlendRLAgent])
def test_results_equal_with_and_without_video_and_one_frame_per_step(agent_class, tmp_path):
    """Same returns, lengths and blend weight; the MP4 has episode 0's length in frames, at
    CartPole's native 600x400 (BlendRL: wider, the panel beside the frame)."""
    torch.manual_seed(3)
    agent = agent_class(get_spec("cartpole"))
    torch.set_num_threads(1)
    plain = evaluate(agent, "cartpole", 3, seed=7, device=CPU, num_envs=2)
    path = tmp_path / "v" / video_name(2, 512)
    filmed = evaluate(agent, "cartpole", 3, seed=7, device=CPU, num_envs=2, video=path)
    assert np.array_equal(plain.returns, filmed.returns)
    assert np.array_equal(plain.lengths, filmed.lengths)
    assert plain.logic_weight == filmed.logic_weight
    frames = _frames(path)
    assert len(frames) == filmed.lengths[0]
    height, width = frames[0].shape[:2]
    assert height == 400
    assert width == 600 if agent_class is NeuralAgent else width > 600
    assert [p.name for p in path.parent.iterdir()] == [path.name]  # no temporary file left


def test_panel_text_and_even_padding():
    lines = panel_lines(0.25, [("a :- b.", 0.1), ("c :- d.", 0.9), ("e :- f.", 0.5)], top=2)
    assert lines == ["logic weight: 0.250", "top 2 clauses (value):", "0.900 c :- d.", "0.500 e :- f."]
    assert pad_even(np.ones((211, 161, 3), np.uint8)).shape == (212, 162, 3)
    assert video_name(3, 120000) == "eval_mark03_limit000120000.mp4"


def test_clause_values_leave_the_policy_unchanged():
    torch.manual_seed(0)
    agent = BlendRLAgent(get_spec("cartpole"))
    logic = torch.tensor([[[0.0, 0.1], [0.05, 0.3]]])
    before = agent.policy(logic, logic.view(1, 4)).log_probs
    values = agent.clause_values(logic[0])
    assert [text for text, _ in values] == ["right_push :- pole_falling_right(P).",
                                            "left_push :- pole_falling_left(P)."]
    assert all(0.0 <= v <= 1.0 for _, v in values) and values[0][1] > values[1][1]
    assert torch.equal(before, agent.policy(logic, logic.view(1, 4)).log_probs)
    assert NeuralAgent(get_spec("cartpole")).clause_values(logic[0]) is None


def test_runs_write_a_video_per_mark_and_report_links_them(tmp_path):
    """An online run and an offline run on its dataset: one video per mark, named by the mark and
    its data limit (the same x for both)."""
    from blendrl.offline import OfflineArgs, main as offline_main
    from blendrl.online import OnlineArgs, main
    from blendrl.plotting.report import make_plots

    runs = tmp_path / "out" / "runs"
    args = OnlineArgs(env="cartpole", total_timesteps=256, num_envs=2, num_steps=64, intervals=2,
                      eval_episodes=2, eval_envs=2, run_id="v1", exp_id="vid", runs_dir=runs,
                      device="cpu", threads=1, eval_video=True, progress_seconds=1e9,
                      save_dataset=True, dataset_dir=tmp_path / "ds")
    assert main(args, "ppo") == 0
    offline = OfflineArgs(dataset_run_id="v1", dataset_dir=tmp_path / "ds", run_id="o1",
                          exp_id="vid", runs_dir=runs, epochs=1, eval_episodes=2, eval_envs=2,
                          device="cpu", threads=1, eval_video=True, progress_seconds=1e9)
    assert offline_main(offline, "iql") == 0
    for run in ("v1", "o1"):
        videos = sorted(p.name for p in (runs / run / VIDEO_DIR).iterdir())
        assert videos == [video_name(1, 128), video_name(2, 256)], run
    assert make_plots("vid", runs, tmp_path / "plots", smooth_window=1, bootstrap_reps=100) == 0
    report = (tmp_path / "plots" / "vid" / "report.md").read_text()
    assert "## Evaluation videos" in report
    assert f"(<../../out/runs/v1/videos/{video_name(2, 256)}>)" in report
    assert (tmp_path / "plots" / "vid" / "../../out/runs/v1/videos" / video_name(2, 256)).exists()


def _tiny_dataset(path: Path) -> Path:
    from blendrl.datasets import DatasetWriter

    zeros = np.zeros((2, 2, 2), np.float32)
    with DatasetWriter(path, env="cartpole", num_envs=2, logic_shape=(2, 2), neural_shape=(4,),
                       neural_dtype=np.float32, n_actions=2, chunk_size=40,
                       metadata={"method": "ppo", "run_id": "src", "exp_id": "e", "seed": 0}) as w:
        for _ in range(4):
            w.add(zeros, zeros.reshape(2, 4), np.zeros(2, np.int64), np.zeros(2), zeros,
                  zeros.reshape(2, 4), np.zeros(2, bool), np.zeros(2, bool))
        w.mark(8)
        w.finish()
    return path


def test_eval_video_on_an_env_that_cannot_render_is_one_line_exit_2(tmp_path, monkeypatch, capsys):
    from blendrl.offline import OfflineArgs, main as offline_main
    from blendrl.online import OnlineArgs, main as online_main

    module = env_module("cartpole")
    monkeypatch.setattr(module, "SPEC", dataclasses.replace(module.SPEC, can_render=False))
    runs = tmp_path / "runs"
    assert online_main(OnlineArgs(env="cartpole", runs_dir=runs, eval_video=True), "ppo") == 2
    offline = OfflineArgs(dataset=_tiny_dataset(tmp_path / "ds"), runs_dir=runs, eval_video=True)
    assert offline_main(offline, "iql") == 2
    lines = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert len(lines) == 2 and all("--eval_video: environment 'cartpole' cannot render" in line
                                   for line in lines), lines
    assert not runs.exists()


def test_eval_video_knob_reaches_all_four_training_jobs(tmp_path):
    """EVAL_VIDEO=1: every online and offline command has --eval_video (the plan's check parses
    each with its script's own Args); EVAL_VIDEO=0 (the default): none has."""
    import run_full_cycle
    from blendrl.envs import ENV_NAMES
    from blendrl.launch.config import build_config
    from blendrl.launch.knob_values import knobs_from_env
    from blendrl.launch.plan import build_plan
    from blendrl.launch.plan_checks import check_plan
    from blendrl.launch.request import LaunchRequest

    assert knobs_from_env({"EVAL_VIDEO": "1"}) == {"eval_video": True}
    for on in (True, False):
        request = LaunchRequest.of(dataclasses.replace(
            run_full_cycle.Args(), eval_video=on, work_dir=str(tmp_path / "w")))
        cfg = build_config(request, project_root=ROOT, cwd=tmp_path, env_names=ENV_NAMES,
                           python=str(ROOT / ".venv" / "bin" / "python"))
        jobs = [j for j in build_plan(cfg, 1, lambda job, paths: True).jobs if j.kind != "plot"]
        assert sorted(j.method for j in jobs) == ["blendrl_iql", "blendrl_iql", "blendrl_ppo",
                                                  "iql", "iql", "ppo"]
        assert all(("--eval_video" in j.command) == on for j in jobs)
        if on:
            assert not check_plan(cfg, jobs, ROOT).problems
