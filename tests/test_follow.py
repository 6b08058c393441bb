"""Offline runs that follow their online run (``--follow``, issue 31): they start before or while
the online run writes, train each interval once its mark is durable, and compute exactly what a run
started after the online run ended computes (the golden rule). Real processes where the online run
writes; a writer held in the test where the online run must stop at a chosen mark."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from blendrl.datasets import DatasetWriter
from blendrl.exits import EXIT_PARTIAL
from blendrl.offline import OfflineArgs, main as offline_main

ROOT = Path(__file__).resolve().parents[1]


def script(name: str, *args: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, str(ROOT / name), *args], cwd=ROOT, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def results(runs: Path, run_id: str) -> list[tuple]:
    """What a run computed at each interval (its timings aside)."""
    return [(r["data_limit"], r["grad_steps"], r["returns"], r["lengths"])
            for r in json.loads((runs / run_id / "results.json").read_text())]


def weights(runs: Path, run_id: str) -> dict:
    ckpt = torch.load(runs / run_id / "checkpoints" / "latest.pt", weights_only=True)
    return {k: v for net in ("q1", "q2", "value", "actor") for k, v in ckpt["trainer"][net].items()}


def same_weights(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


OFFLINE = ["--epochs", "2", "--batch_size", "64", "--eval_episodes", "2", "--eval_envs", "2",
           "--threads", "1", "--hidden", "16", "--critic_hidden", "32", "--device", "cpu"]


def test_a_follower_started_before_its_online_run_equals_one_started_after(tmp_path):
    data, runs = tmp_path / "data", tmp_path / "runs"
    follower = script("train_iql.py", "--dataset_run_id", "on", "--dataset_dir", str(data),
                      "--runs_dir", str(runs), "--run_id", "followed", "--follow",
                      "--follow_poll", "0.1", *OFFLINE)
    online = script("train_neuralppo.py", "--total_timesteps", "4096", "--intervals", "4",
                    "--eval_episodes", "2", "--save_dataset", "--chunk_size", "300", "--run_id",
                    "on", "--dataset_dir", str(data), "--runs_dir", str(runs), "--threads", "1")
    _, online_err = online.communicate(timeout=600)
    assert online.returncode == 0, online_err
    _, err = follower.communicate(timeout=600)
    assert follower.returncode == 0, err
    assert "waiting for dataset" in err and "Traceback" not in err
    after = subprocess.run([sys.executable, str(ROOT / "train_iql.py"), "--dataset_run_id", "on",
                            "--dataset_dir", str(data), "--runs_dir", str(runs), "--run_id", "after",
                            *OFFLINE], cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert after.returncode == 0, after.stderr
    assert [r[0] for r in results(runs, "followed")] == [1024, 2048, 3072, 4096]
    assert results(runs, "followed") == results(runs, "after")
    assert same_weights(weights(runs, "followed"), weights(runs, "after"))
    assert json.loads((runs / "followed" / "run.json").read_text())["dataset_partial"] is False


def _writer(path: Path, resume_at: int | None = None, **kw) -> DatasetWriter:
    return DatasetWriter(path, env="cartpole", num_envs=2, logic_shape=(2, 2), neural_shape=(4,),
                         neural_dtype=np.float32, n_actions=2, chunk_size=20, resume_at=resume_at,
                         **kw,
                         metadata={"method": "ppo", "run_id": "src", "exp_id": "e", "seed": 0,
                                   "planned_marks": 4, "planned_transitions": 160})


def _write(w: DatasetWriter, steps: range, marks: tuple[int, ...]) -> None:
    rng = np.random.default_rng(steps.start)
    for t in steps:
        s, n = rng.normal(size=(2, 4)).astype(np.float32), rng.normal(size=(2, 4)).astype(np.float32)
        w.add(s.reshape(2, 2, 2), s, rng.integers(0, 2, 2), np.ones(2), n.reshape(2, 2, 2), n,
              rng.random(2) < 0.1, np.zeros(2, bool))
        if 2 * (t + 1) in marks:
            w.mark(2 * (t + 1))


def _args(tmp_path: Path, data: Path, run_id: str, **kw) -> OfflineArgs:
    base = dict(dataset=data, run_id=run_id, runs_dir=tmp_path / "runs", epochs=1, batch_size=16,
                eval_episodes=1, eval_envs=1, device="cpu", threads=1, hidden=16, critic_hidden=16,
                log_every=5, follow_poll=0.05)
    return OfflineArgs(**{**base, **kw})


def test_a_follower_whose_online_run_stops_is_partial_and_resumes_when_it_writes_again(tmp_path, capsys):
    data = tmp_path / "ds"
    w = _writer(data)
    _write(w, range(0, 40), (40, 80))  # 2 of the 4 planned marks, then the online run stops
    w.close()
    status = offline_main(_args(tmp_path, data, "f", follow=True, follow_timeout=1.0), "iql")
    assert status == EXIT_PARTIAL
    err = capsys.readouterr().err
    assert "waiting for mark 3 of 4; online at 80 of 160 transitions" in err
    assert "partial: 2 of 4 marks trained" in err
    run = tmp_path / "runs" / "f"
    assert [r["data_limit"] for r in json.loads((run / "results.json").read_text())] == [40, 80]
    assert json.loads((run / "run.json").read_text())["dataset_partial"] is True

    w = _writer(data, resume_at=80)  # the online run is resumed, and finishes this time
    _write(w, range(40, 80), (120, 160))
    w.finish()
    assert offline_main(_args(tmp_path, data, "f", follow=True, resume=True), "iql") == 0
    assert [r["data_limit"] for r in json.loads((run / "results.json").read_text())] == [40, 80, 120, 160]
    assert json.loads((run / "run.json").read_text())["dataset_partial"] is False
    # the same as a run started once the dataset was finished
    assert offline_main(_args(tmp_path, data, "after"), "iql") == 0
    assert results(tmp_path / "runs", "f") == results(tmp_path / "runs", "after")
    assert same_weights(weights(tmp_path / "runs", "f"), weights(tmp_path / "runs", "after"))


def test_follow_on_a_finished_dataset_just_runs(tmp_path):
    data = tmp_path / "ds"
    w = _writer(data)
    _write(w, range(0, 80), (40, 80, 120, 160))
    w.finish()
    assert offline_main(_args(tmp_path, data, "f", follow=True), "iql") == 0
    assert offline_main(_args(tmp_path, data, "a"), "iql") == 0
    assert results(tmp_path / "runs", "f") == results(tmp_path / "runs", "a")


def test_follow_on_a_dataset_that_never_appears_is_one_line_and_exit_2(tmp_path, capsys):
    status = offline_main(_args(tmp_path, tmp_path / "nowhere", "f", follow=True,
                                follow_timeout=0.3), "iql")
    assert status == 2
    lines = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error:")]
    assert len(lines) == 1 and "did not appear within 0.3 s (--follow_timeout)" in lines[0]
    assert not (tmp_path / "runs").exists()


def test_a_launcher_ends_the_wait_of_a_follower_whose_online_job_failed(tmp_path, capsys):
    import threading
    import time

    data = tmp_path / "ds"
    w = _writer(data)
    _write(w, range(0, 20), (40,))  # 1 of 4 marks; the online job then fails
    w.close()
    run = tmp_path / "runs" / "f"
    seen: list[str] = []

    def launcher() -> None:  # what the launcher does when the online job fails
        deadline = time.monotonic() + 60
        while not (run / ".waiting").exists() and time.monotonic() < deadline:
            time.sleep(0.02)
        seen.append((run / ".waiting").read_text())
        (run / ".online_ended").write_text("")

    t = threading.Thread(target=launcher)
    t.start()
    start = time.monotonic()
    status = offline_main(_args(tmp_path, data, "f", follow=True, follow_timeout=600), "iql")
    t.join()
    assert status == EXIT_PARTIAL and time.monotonic() - start < 60  # not the 600 s timeout
    assert seen and "waiting for mark 2 of 4" in seen[0]
    assert not (run / ".waiting").exists()
    assert "launcher says the online job ended without finishing" in capsys.readouterr().err
    assert [r["data_limit"] for r in json.loads((run / "results.json").read_text())] == [40]


def test_an_online_run_that_fails_records_it_and_its_follower_ends_at_once(tmp_path, monkeypatch,
                                                                            capsys):
    """No launcher watching (a SLURM follower on its own): the failing online run writes
    ``writer_stopped`` into its manifest; the follower ends partial at once, not after its
    timeout; the online run's resume removes the note."""
    import time

    import blendrl.online as online
    from blendrl.datasets import read_manifest, writer_stopped

    real_update, calls = online.ppo_update, []

    def failing_update(*args, **kwargs):
        calls.append(1)
        if len(calls) == 3:
            raise RuntimeError("boom in the third update")
        return real_update(*args, **kwargs)

    monkeypatch.setattr(online, "ppo_update", failing_update)
    args = online.OnlineArgs(env="cartpole", total_timesteps=4 * 2 * 32, num_envs=2, num_steps=32,
                             intervals=4, eval_episodes=1, eval_envs=1, run_id="src",
                             runs_dir=tmp_path / "runs", save_dataset=True,
                             dataset_dir=tmp_path / "data", device="cpu", threads=1, hidden=16)
    with pytest.raises(RuntimeError, match="boom"):
        online.main(args, "ppo")
    data = tmp_path / "data" / "src"
    m = read_manifest(data)
    assert writer_stopped(m) == "RuntimeError: boom in the third update"
    assert m["marks"] == [64, 128] and not m["writer_finished"]

    start = time.monotonic()
    status = offline_main(_args(tmp_path, data, "f", follow=True, follow_timeout=600), "iql")
    assert status == EXIT_PARTIAL and time.monotonic() - start < 60
    assert "the online run failed (RuntimeError: boom in the third update)" in capsys.readouterr().err
    # an offline run started after it names the failure too
    assert offline_main(_args(tmp_path, data, "after"), "iql") == 2
    assert "it failed: RuntimeError: boom in the third update" in capsys.readouterr().err

    monkeypatch.setattr(online, "ppo_update", real_update)
    assert online.main(args.__class__(**{**vars(args), "resume": True}), "ppo") == 0
    m = read_manifest(data)
    assert m["writer_finished"] and "writer_stopped" not in m
    assert offline_main(_args(tmp_path, data, "f", follow=True, resume=True), "iql") == 0


def test_an_online_runs_dataset_states_lost_lives_before_its_first_transition(tmp_path):
    """A follower reads the dataset as soon as its online run has opened it (an empty manifest),
    and checks --life_loss_terminal against its has_life_lost. That used to be decided by the
    first transition, so a follower of a real Kangaroo run was refused (exit 2: "does not record
    lost lives"); the online run now states it when it opens the dataset."""
    import blendrl.online as online
    from blendrl.datasets import has_life_lost, read_manifest
    from blendrl.loop_state import OnlineLoopState

    for env, lives in (("kangaroo", True), ("cartpole", False)):
        args = online.OnlineArgs(env=env, total_timesteps=256, num_envs=2, num_steps=32,
                                 run_id=f"src_{env}")
        w = online._dataset_writer(args, "ppo", tmp_path / env, 4, 4, OnlineLoopState())
        m = read_manifest(tmp_path / env)
        assert m["count"] == 0 and has_life_lost(m) is lives, env
        w.close()
    # a writer told so refuses a step without life_lost, and records it from the first step
    w = _writer(tmp_path / "ds", life_lost=True)
    assert has_life_lost(read_manifest(tmp_path / "ds"))
    s = np.zeros((2, 4), np.float32)
    with pytest.raises(Exception, match="life_lost"):
        w.add(s.reshape(2, 2, 2), s, np.zeros(2, int), np.ones(2), s.reshape(2, 2, 2), s,
              np.zeros(2, bool), np.zeros(2, bool))
    w.close()
