"""The online scripts as real processes: short runs on every classic env and one Atari game,
seed reproducibility, interrupt (SIGTERM) + resume computing what an uninterrupted run computes."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from blendrl.contract import EXIT_INTERRUPTED
from blendrl.file_io import load_training_log

ROOT = Path(__file__).resolve().parents[1]


def run_script(script: str, *args: str, timeout: float = 300, **popen) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(ROOT / script), *args], cwd=ROOT, capture_output=True,
                          text=True, timeout=timeout, **popen)


def common(tmp_path: Path, run_id: str, *extra: str) -> list[str]:
    return ["--run_id", run_id, "--runs_dir", str(tmp_path / "runs"), "--dataset_dir",
            str(tmp_path / "data"), *extra]


@pytest.mark.parametrize("script,env", [
    ("train_neuralppo.py", "cartpole"), ("train_neuralppo.py", "mountaincar"),
    ("train_blenderl.py", "cartpole"), ("train_blenderl.py", "mountaincar"),
])
def test_short_run_writes_every_output(tmp_path, script, env):
    r = run_script(script, "--env", env, "--total_timesteps", "1024", "--num_steps", "64",
                   "--intervals", "2", "--eval_episodes", "2", "--save_dataset",
                   *common(tmp_path, "r1"))
    assert r.returncode == 0, r.stderr
    run = tmp_path / "runs" / "r1"
    meta = json.loads((run / "run.json").read_text())
    assert meta["env"] == env and meta["exp_id"] == "default"
    assert meta["method"] == ("ppo" if script == "train_neuralppo.py" else "blendrl_ppo")
    results = json.loads((run / "results.json").read_text())
    assert [r["interval"] for r in results] == [1, 2]
    assert [r["data_limit"] for r in results] == [512, 1024]
    assert all(len(r["returns"]) == 2 == r["episodes"] for r in results)
    assert (run / "checkpoints" / "latest.pt").exists() and (run / "checkpoints" / "best.pt").exists()
    assert list(run.glob("events.out.tfevents.*"))
    log = load_training_log(run / "training_log.pkl")
    assert len(log["episode_returns"]) == len(log["episode_end_steps"]) > 0
    if script == "train_blenderl.py":
        assert log["blend"] and "logic_weight" in results[0]
    from dataset_utils import DatasetReader
    reader = DatasetReader(tmp_path / "data" / "r1")
    assert len(reader) == 1024 and reader.marks == [512, 1024]


def test_atari_short_run(tmp_path):
    r = run_script("train_neuralppo.py", "--env", "seaquest", "--total_timesteps", "256",
                   "--num_envs", "2", "--num_steps", "64", "--intervals", "1", "--eval_episodes", "1",
                   "--eval_envs", "1", "--threads", "1", "--save_dataset", *common(tmp_path, "a1"),
                   timeout=600)
    assert r.returncode == 0, r.stderr
    results = json.loads((tmp_path / "runs" / "a1" / "results.json").read_text())
    assert results[0]["data_limit"] == 256 and results[0]["episodes"] == 1
    # The Atari protocol's defaults, resolved in run.json and handed to the offline side through
    # the dataset, which records life_lost.
    run_json = json.loads((tmp_path / "runs" / "a1" / "run.json").read_text())
    args = run_json["args"]
    assert (args["reward_transform"], args["life_loss_terminal"], args["eval_policy"]) == ("sign", True, "sample")
    # what decides bit-for-bit reproduction: the Atari packages' versions and the machine
    import ale_py
    assert run_json["versions"]["ale_py"] == ale_py.__version__ and "ocatari" in run_json["versions"]
    assert run_json["platform"]["torch_cpu_capability"] == torch.backends.cpu.get_cpu_capability()
    from dataset_utils import DatasetReader
    reader = DatasetReader(tmp_path / "data" / "a1")
    assert reader.has_life_lost and len(reader) == 256
    assert reader.metadata["reward_transform"] == "sign" and reader.metadata["life_loss_terminal"] is True


def test_resume_on_another_kind_of_machine_says_so(tmp_path, capsys):
    from blendrl.online import OnlineArgs
    from blendrl.machine import platform_change, platform_info
    from blendrl.run_dir import RunDir

    here = platform_info()
    assert platform_change(here) is None and platform_change(None) is None
    run = RunDir(tmp_path / "runs", "r1")
    run.prepare(resume=False)
    run.write_run_json(exp_id="e", method="ppo", env="cartpole", seed=0, args=OnlineArgs(),
                       dataset_source=None)
    run.say_if_resumed_elsewhere()
    assert capsys.readouterr().err == ""
    recorded = json.loads(run.run_json.read_text())
    assert recorded["platform"] == here
    assert here["device"] == "cpu" and here["cuda_device"] is None
    recorded["platform"]["torch_cpu_capability"] = "AVX2" if here["torch_cpu_capability"] != "AVX2" else "DEFAULT"
    run.run_json.write_text(json.dumps(recorded))
    run.say_if_resumed_elsewhere()
    err = capsys.readouterr().err
    assert err.startswith("[r1] note: this run started on another kind of machine or setting "
                          "(torch_cpu_capability")
    assert "not bit for bit" in err
    # another thread count is a change too; a key an older run.json lacks is not
    recorded["platform"] = {**here, "torch_threads": here["torch_threads"] + 1}
    del recorded["platform"]["cpu"]
    run.run_json.write_text(json.dumps(recorded))
    run.say_if_resumed_elsewhere()
    err = capsys.readouterr().err
    assert "torch_threads" in err and "cpu " not in err
    # another CPU generation behind the same model name (a VM's "AMD EPYC") is a change
    if here["cpu_id"] is not None:
        assert here["cpu_id"].startswith("family ")
        recorded["platform"] = {**here, "cpu_id": "family 25 model 1 stepping 1"
                                if here["cpu_id"] != "family 25 model 1 stepping 1" else "family 6"}
        run.run_json.write_text(json.dumps(recorded))
        run.say_if_resumed_elsewhere()
        assert "(cpu_id " in capsys.readouterr().err


def test_same_seed_same_first_returns(tmp_path):
    returns = []
    for run_id in ("s1", "s2"):
        r = run_script("train_neuralppo.py", "--total_timesteps", "2048", "--intervals", "1",
                       "--eval_episodes", "2", "--seed", "3", *common(tmp_path, run_id))
        assert r.returncode == 0, r.stderr
        returns.append(load_training_log(tmp_path / "runs" / run_id / "training_log.pkl")["episode_returns"])
    assert len(returns[0]) > 10 and returns[0] == returns[1]


@pytest.mark.parametrize("bad,message", [
    (["--env", "pong"], "unknown environment"),
    (["--run_id", "../escape"], "invalid run id"),
    (["--total_timesteps", "0"], "--total_timesteps must be in [1, inf), got 0"),
    (["--intervals", "100", "--total_timesteps", "1024"], "too many"),
])
def test_bad_input_is_a_clear_error_before_any_work(tmp_path, bad, message):
    args = ["--runs_dir", str(tmp_path / "runs"), *bad]
    if "--run_id" not in bad:
        args += ["--run_id", "x"]
    r = run_script("train_neuralppo.py", *args)
    assert r.returncode == 2 and message in r.stderr
    assert not (tmp_path / "runs" / "x" / "run.json").exists()


def test_existing_run_is_not_overwritten(tmp_path):
    args = ["--total_timesteps", "512", "--intervals", "1", "--eval_episodes", "1", *common(tmp_path, "e1")]
    assert run_script("train_neuralppo.py", *args).returncode == 0
    r = run_script("train_neuralppo.py", *args)
    assert r.returncode == 2 and "already exists" in r.stderr


def _interrupt_once_results_exist(args: list[str], results: Path) -> str:
    """Start train_neuralppo.py, SIGTERM it once its first interval is recorded; its stderr."""
    proc = subprocess.Popen([sys.executable, str(ROOT / "train_neuralppo.py"), *args], cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 240
    while not results.exists() and time.time() < deadline and proc.poll() is None:
        time.sleep(0.05)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == EXIT_INTERRUPTED, err
    return err


DEVICES = ["cpu", pytest.param("cuda", marks=pytest.mark.skipif(not torch.cuda.is_available(),
                                                                 reason="needs a CUDA device"))]
"""Where the run computes: a resume on CUDA loads the checkpoint onto the GPU, whose snapshot
tensors must still reach the forked env workers as CPU tensors (bench/device_checks.sh runs it)."""


@pytest.mark.parametrize("device", DEVICES)
def test_sigterm_then_resume_computes_what_an_uninterrupted_run_computes(tmp_path, device):
    """Interrupted at a random moment (mid-episode) and resumed: every interval once, and the
    dataset, the evaluations and the final weights bit for bit those of a run never stopped:
    the checkpoint carries the environments' own states (blendrl.envs.snapshot)."""
    total, intervals = 12_288, 4
    base = ["--total_timesteps", str(total), "--intervals", str(intervals), "--eval_episodes", "2",
            "--save_dataset", "--chunk_size", "1000", "--device", device]
    args = [*base, *common(tmp_path, "i1")]
    results = tmp_path / "runs" / "i1" / "results.json"
    err = _interrupt_once_results_exist(args, results)
    assert "--resume" in err
    done_before = json.loads(results.read_text())
    assert 1 <= len(done_before) < intervals
    ckpt = torch.load(tmp_path / "runs" / "i1" / "checkpoints" / "latest.pt", weights_only=True)
    assert ckpt["environments"]["vec"]["env"] == "cartpole"
    # the episodes were cut mid-way: the snapshot is what carries them over
    assert (ckpt["environments"]["vec"]["episode_length"] > 0).any()

    r = run_script("train_neuralppo.py", *args, "--resume")
    assert r.returncode == 0, r.stderr
    assert "resuming at step" in r.stderr and "warning" not in r.stderr
    res = json.loads(results.read_text())
    assert [x["interval"] for x in res] == list(range(1, intervals + 1))
    assert res[-1]["data_limit"] == total

    straight = run_script("train_neuralppo.py", *base, *common(tmp_path, "i2"))
    assert straight.returncode == 0, straight.stderr
    res2 = json.loads((tmp_path / "runs" / "i2" / "results.json").read_text())
    assert [(x["returns"], x["lengths"], x["data_limit"]) for x in res] == \
        [(x["returns"], x["lengths"], x["data_limit"]) for x in res2]

    from dataset_utils import DatasetReader
    a, b = DatasetReader(tmp_path / "data" / "i1"), DatasetReader(tmp_path / "data" / "i2")
    assert len(a) == len(b) == total and a.marks == b.marks == [x["data_limit"] for x in res]
    ra, rb = a.get(np.arange(total)), b.get(np.arange(total))
    for field in ra._fields:
        assert np.array_equal(getattr(ra, field), getattr(rb, field)), field
    wa = torch.load(tmp_path / "runs" / "i1" / "checkpoints" / "latest.pt", weights_only=True)["agent"]
    wb = torch.load(tmp_path / "runs" / "i2" / "checkpoints" / "latest.pt", weights_only=True)["agent"]
    assert all(torch.equal(wa[k], wb[k]) for k in wb)


@pytest.mark.parametrize("device", DEVICES)
def test_atari_sigterm_then_resume_computes_what_an_uninterrupted_run_computes(tmp_path, device):
    """The same on Seaquest (sticky actions, no-op starts, lives, worker processes): evaluations,
    dataset and weights of the resumed run are those of the run never stopped."""
    base = ["--env", "seaquest", "--total_timesteps", "1024", "--num_envs", "2", "--num_steps", "64",
            "--intervals", "4", "--eval_episodes", "1", "--eval_envs", "1", "--threads", "1",
            "--save_dataset", "--device", device]
    results = tmp_path / "runs" / "s1" / "results.json"
    _interrupt_once_results_exist([*base, *common(tmp_path, "s1")], results)
    assert 1 <= len(json.loads(results.read_text())) < 4
    ckpt = torch.load(tmp_path / "runs" / "s1" / "checkpoints" / "latest.pt", weights_only=True)
    assert (ckpt["environments"]["vec"]["episode_length"] > 0).any()  # stopped mid-episode
    r = run_script("train_neuralppo.py", *base, *common(tmp_path, "s1"), "--resume", timeout=600)
    assert r.returncode == 0, r.stderr
    assert "warning" not in r.stderr
    straight = run_script("train_neuralppo.py", *base, *common(tmp_path, "s2"), timeout=600)
    assert straight.returncode == 0, straight.stderr
    res = [json.loads((tmp_path / "runs" / run / "results.json").read_text()) for run in ("s1", "s2")]
    assert [(x["returns"], x["lengths"]) for x in res[0]] == [(x["returns"], x["lengths"]) for x in res[1]]
    from dataset_utils import DatasetReader
    a, b = (DatasetReader(tmp_path / "data" / run) for run in ("s1", "s2"))
    ra, rb = a.get(np.arange(1024)), b.get(np.arange(1024))
    for field in ra._fields:
        assert np.array_equal(getattr(ra, field), getattr(rb, field)), field
    wa, wb = (torch.load(tmp_path / "runs" / run / "checkpoints" / "latest.pt", weights_only=True)["agent"]
              for run in ("s1", "s2"))
    assert all(torch.equal(wa[k], wb[k]) for k in wb)


@pytest.mark.parametrize("written_by", ["before snapshots", "another snapshot version"])
def test_resume_from_a_checkpoint_without_snapshot_restarts_the_episodes_and_says_so(tmp_path, written_by):
    """A checkpoint written before snapshots existed (or with a snapshot of another version)
    still resumes: the episodes restart from fresh states (the dataset has one break at the
    resume step, nothing lost or repeated) and stderr says the run is no longer the
    uninterrupted one."""
    total, intervals, num_envs = 12_288, 3, 4
    args = ["--total_timesteps", str(total), "--intervals", str(intervals), "--eval_episodes", "1",
            "--save_dataset", "--chunk_size", "1000", *common(tmp_path, "o1")]
    results = tmp_path / "runs" / "o1" / "results.json"
    _interrupt_once_results_exist(args, results)
    latest = tmp_path / "runs" / "o1" / "checkpoints" / "latest.pt"
    ckpt = torch.load(latest, weights_only=True)
    if written_by == "before snapshots":
        del ckpt["environments"]
    else:
        ckpt["environments"]["vec"]["version"] = 1
    torch.save(ckpt, latest)

    r = run_script("train_neuralppo.py", *args, "--resume")
    assert r.returncode == 0, r.stderr
    assert "holds no usable environment snapshot" in r.stderr
    assert ("snapshot is of version 1" in r.stderr) == (written_by == "another snapshot version")
    from dataset_utils import DatasetReader
    reader = DatasetReader(tmp_path / "data" / "o1")
    assert len(reader) == total
    b = reader.get(np.arange(total))
    cont = ~(b.terminated | b.truncated)[:-num_envs]
    same = np.all(b.next_logic_state[:-num_envs] == b.logic_state[num_envs:], axis=(1, 2))
    breaks = np.flatnonzero(cont & ~same)
    assert 1 <= len(breaks) <= num_envs
    step_rows = set((breaks // num_envs).tolist())
    assert len(step_rows) == 1  # all at one step: the checkpoint the run resumed from
    assert ((breaks[0] // num_envs + 1) * num_envs) == ckpt["global_step"]


def test_resume_refuses_to_change_what_the_run_computes(tmp_path):
    args = ["--total_timesteps", "1024", "--intervals", "1", "--eval_episodes", "1", *common(tmp_path, "c1")]
    assert run_script("train_neuralppo.py", *args).returncode == 0
    r = run_script("train_neuralppo.py", *args, "--resume", "--learning_rate", "0.1")
    assert r.returncode == 2 and "--learning_rate" in r.stderr and "cannot change" in r.stderr


def test_minibatches_must_divide_the_batch(tmp_path):
    r = run_script("train_neuralppo.py", "--num_minibatches", "3", *common(tmp_path, "m1"))
    assert r.returncode == 2 and "does not divide" in r.stderr


def test_sigterm_to_the_process_group_with_atari_workers_checkpoints(tmp_path):
    """kill_experiments.sh and SLURM signal the whole process group, env workers included: the
    workers must survive it so the training process can checkpoint and exit 75."""
    proc = subprocess.Popen(
        [sys.executable, str(ROOT / "train_neuralppo.py"), "--env", "seaquest", "--num_envs", "2",
         "--num_steps", "16", "--total_timesteps", "1000000", "--intervals", "1", "--threads", "1",
         "--progress_seconds", "0", *common(tmp_path, "pg1")],
        cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, start_new_session=True)
    for line in proc.stderr:  # the first progress line: the workers run and one update is done
        if " SPS " in line:
            break
    os.killpg(proc.pid, signal.SIGTERM)
    try:
        err = proc.communicate(timeout=120)[1]
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert proc.returncode == EXIT_INTERRUPTED, err
    assert (tmp_path / "runs" / "pg1" / "checkpoints" / "latest.pt").exists()
