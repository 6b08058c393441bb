"""Cluster mode against a real single-node SLURM cluster (../shared/slurm/setup.sh installs and
starts it; it needs root), with the REAL training and plotting scripts: the tiny cycle as
dependent sbatch jobs; a failing online job; kill_experiments.sh; a job that outlives its time
limit by checkpointing and being requeued under the same id; --resume after a kill. The cluster
fixture is tests/conftest.py's."""

from __future__ import annotations

import json
import re
import subprocess
import time
from pathlib import Path

import pytest

from blendrl.launch import slurm
from test_launch_support import (PY, ROOT, all_files, clean_env, registry_of,
                                 run_cycle, wait_for)

pytestmark = [pytest.mark.slurm, pytest.mark.slow]


TINY = {"ENVIRONMENT": "cartpole", "ONLINE_METHODS": "ppo", "OFFLINE_METHODS": "iql",
        "OFFLINE_DATASETS": "ppo", "ONLINE_STEPS": "2048", "INTERVALS_COUNT": "2",
        "EVAL_EPISODES": "2", "OFFLINE_EPOCHS": "1", "SEEDS": "0", "LOCAL": "0",
        "CLUSTER_CPUS": "1", "CLUSTER_MEM": "", "CLUSTER_TIME": "10", "CLUSTER_SIGNAL_MARGIN": "60"}


def _cycle(work: Path, exp: str, *args: str, timeout: float = 300, **env) -> subprocess.CompletedProcess:
    return run_cycle(["--work_dir", str(work), *args],
                     env=clean_env(EXPERIMENT_ID=exp, **{**TINY, **env}), timeout=timeout)


def _slurm_time(text: str) -> float:
    return time.mktime(time.strptime(text, "%Y-%m-%dT%H:%M:%S"))


def test_tiny_cycle_as_dependent_sbatch_jobs_completes_in_order(cluster, tmp_path):
    work = tmp_path / "work"
    res = _cycle(work, "sc", "--wait")
    assert res.returncode == 0, res.stdout + res.stderr
    jobs = registry_of(work, "sc")["jobs"]
    assert [(j["name"], j["state"]) for j in jobs] == [
        ("sc_ppo_cartpole_s0", "done"), ("sc_iql_on_ppo_cartpole_s0", "done"), ("plots", "done")]
    on, off, plots = jobs
    assert off["submit_command"][:4] == ["sbatch", "--parsable", f"--dependency=afterok:{on['slurm_id']}",
                                         "--kill-on-invalid-dep=yes"]
    assert plots["submit_command"][2] == f"--dependency=afterany:{on['slurm_id']}:{off['slurm_id']}"
    # SLURM's own clock: each job started after its upstream had ended
    assert _slurm_time(off["slurm_times"]["start"]) >= _slurm_time(on["slurm_times"]["end"])
    assert _slurm_time(plots["slurm_times"]["start"]) >= _slurm_time(off["slurm_times"]["end"])
    for j in jobs:
        assert Path(j["sbatch_script"]).read_text().startswith("#!/bin/bash\n#SBATCH --job-name=sc.")
        assert f"=== {j['name']}: job {j['slurm_id']} attempt 1" in Path(j["log"]).read_text()
    results = json.loads((work / "out/runs/sc_iql_on_ppo_cartpole_s0/results.json").read_text())
    assert len(results) == 2
    assert (work / "plots" / "sc" / "interval_comparison.png").is_file()


def test_failing_online_job_leaves_its_offline_job_cancelled(cluster, tmp_path):
    work = tmp_path / "work"
    res = _cycle(work, "sf", "--wait", ONLINE_EXTRA_ARGS="--device nonsense")
    assert res.returncode == 1
    jobs = {j["name"]: j for j in registry_of(work, "sf")["jobs"]}
    on, off = jobs["sf_ppo_cartpole_s0"], jobs["sf_iql_on_ppo_cartpole_s0"]
    assert (on["state"], on["exit_code"]) == ("failed", 2)
    assert off["state"] == "cancelled" and "DependencyNeverSatisfied" in off["reason"]
    info = slurm.job_info(off["slurm_id"])
    assert info["JobState"] == "CANCELLED" and info["Reason"] == "DependencyNeverSatisfied"
    assert not Path(off["log"]).exists()  # it never ran
    assert not (work / "out" / "runs" / "sf_iql_on_ppo_cartpole_s0").exists()


def test_kill_experiments_cancels_running_and_pending_jobs(cluster, tmp_path):
    work = tmp_path / "work"
    res = _cycle(work, "sk", ONLINE_STEPS="5000000")
    assert res.returncode == 0, res.stdout + res.stderr
    jobs = registry_of(work, "sk")["jobs"]
    ids = [j["slurm_id"] for j in jobs]
    wait_for(lambda: slurm.job_info(ids[0])["JobState"] == "RUNNING", 60, "the online job to run")
    assert [slurm.job_info(i)["JobState"] for i in ids[1:]] == ["PENDING", "PENDING"]
    before = all_files(work)
    res = subprocess.run([str(ROOT / "kill_experiments.sh"), "sk", "--logs_dir", str(work / "logs")],
                         capture_output=True, text=True, timeout=60)
    assert res.returncode == 0, res.stderr
    for i, j in zip(ids, jobs):
        assert f"scancel {i} ({j['name']})" in res.stdout
    wait_for(lambda: all(slurm.job_info(i)["JobState"] == "CANCELLED" for i in ids), 60,
             "SLURM to cancel every job")
    assert [j["state"] for j in registry_of(work, "sk")["jobs"]] == ["cancelled"] * 3
    assert before <= all_files(work)
    # nothing left in the queue from this experiment
    queue = subprocess.run(["squeue", "-h", "-o", "%i"], capture_output=True, text=True).stdout.split()
    assert not set(ids) & set(queue)


def _measured_sps(tmp_path: Path) -> float:
    """Steps per second of the online script here and now (its own progress line)."""
    res = subprocess.run([PY, str(ROOT / "train_neuralppo.py"), "--env", "cartpole",
                          "--total_timesteps", "4096", "--run_id", "cal", "--runs_dir",
                          str(tmp_path / "cal"), "--intervals", "1", "--eval_episodes", "1",
                          "--threads", "1"], capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr
    return max(float(x) for x in re.findall(r"SPS (\d+(?:\.\d+)?)", res.stdout + res.stderr))


def test_job_past_its_time_limit_checkpoints_requeues_under_the_same_id_and_finishes(cluster, tmp_path):
    """--time=1 with --signal=B:USR1@45: SLURM signals the batch shell 15-45 s into the job (its
    time-limit check runs about every 30 s). The
    run is sized (from the measured speed) to need about a minute of training, so it cannot
    finish before the signal. Once it has been requeued, the test lifts the time limit to
    save the minute-long windows a long job would otherwise go through again."""
    sps = _measured_sps(tmp_path)
    steps = int(sps * 60)
    work = tmp_path / "work"
    res = _cycle(work, "sq", ONLINE_STEPS=str(steps), OFFLINE_METHODS="none", OFFLINE_DATASETS="none",
                 CLUSTER_TIME="1", CLUSTER_SIGNAL_MARGIN="45")
    assert res.returncode == 0, res.stdout + res.stderr
    on = registry_of(work, "sq")["jobs"][0]
    job_id = on["slurm_id"]
    script = Path(on["sbatch_script"]).read_text()
    assert "#SBATCH --time=1\n" in script and "#SBATCH --signal=B:USR1@45\n" in script

    def restarted() -> bool:
        info = slurm.job_info(job_id)
        return int(info.get("Restarts", "0")) >= 1 and info["JobState"] in ("PENDING", "RUNNING")
    wait_for(restarted, 150, f"job {job_id} to be requeued", poll=1.0)
    subprocess.run(["scontrol", "update", f"JobId={job_id}", "TimeLimit=10"], check=True)
    wait_for(lambda: slurm.job_info(job_id)["JobState"] == "COMPLETED", 400,
             f"job {job_id} to complete", poll=1.0)
    info = slurm.job_info(job_id)
    assert info["JobId"] == job_id and int(info["Restarts"]) >= 1 and info["ExitCode"] == "0:0"
    log = Path(on["log"]).read_text()
    assert "SIGUSR1 to the job" in log and "with exit status 75" in log
    assert f"requeueing job {job_id} under the same id" in log
    assert f"=== sq_ppo_cartpole_s0: job {job_id} attempt 2" in log
    assert "continuing with --resume" in log
    # the dataset is whole: every transition once, in order, readable
    ds = work / "offline_dataset" / "sq_ppo_cartpole_s0"
    check = subprocess.run([PY, str(ROOT / "dataset_utils.py"), "verify", str(ds)],
                           capture_output=True, text=True, timeout=300)
    assert check.returncode == 0, check.stdout + check.stderr
    manifest = json.loads((ds / "manifest.json").read_text())
    batch = 4 * 128  # cartpole: 4 envs x 128 steps per PPO iteration
    assert manifest["count"] == -(-steps // batch) * batch
    results = json.loads((work / "out/runs/sq_ppo_cartpole_s0/results.json").read_text())
    assert [r["interval"] for r in results] == [1, 2]
    assert json.loads((work / "out/runs/sq_ppo_cartpole_s0/timing.json").read_text())["finished"]
    # the registry, refreshed, agrees
    status = _cycle(work, "sq", "--status", "sq")
    assert re.search(r"sq_ppo_cartpole_s0\s+online\s+done\s+0\s+slurm " + job_id + r"\s+restarts=\d", status.stdout)


def test_resume_after_a_kill_resubmits_under_new_ids_and_continues_the_online_run(cluster, tmp_path):
    work = tmp_path / "work"
    steps = 16384  # 4 intervals: marks at 4096, 8192, 12288, 16384
    knobs = dict(ONLINE_STEPS=str(steps), INTERVALS_COUNT="4")
    res = _cycle(work, "sr", **knobs)
    assert res.returncode == 0, res.stdout + res.stderr
    old = registry_of(work, "sr")["jobs"]
    run = work / "out" / "runs" / "sr_ppo_cartpole_s0"
    wait_for(lambda: (run / "results.json").exists()
             and len(json.loads((run / "results.json").read_text())) >= 1, 300,
             "the online run's first evaluation (and checkpoint)", poll=0.5)
    res = subprocess.run([str(ROOT / "kill_experiments.sh"), "sr", "--logs_dir", str(work / "logs")],
                         capture_output=True, text=True, timeout=60)
    assert res.returncode == 0, res.stderr
    wait_for(lambda: all(slurm.job_info(j["slurm_id"])["JobState"] == "CANCELLED" for j in old), 60,
             "SLURM to cancel every job")
    res = _cycle(work, "sr", "--resume", "--wait", timeout=600, **knobs)
    assert res.returncode == 0, res.stdout + res.stderr
    on, off, plots = registry_of(work, "sr")["jobs"]
    assert [(j["state"], j["resume"]) for j in (on, off, plots)] == [
        ("done", "checkpoint"), ("done", "start"), ("done", "start")]
    assert not {j["slurm_id"] for j in (on, off, plots)} & {j["slurm_id"] for j in old}  # new ids
    assert off["submit_command"][2] == f"--dependency=afterok:{on['slurm_id']}"
    assert plots["submit_command"][2] == f"--dependency=afterany:{on['slurm_id']}:{off['slurm_id']}"
    assert "--resume" in Path(on["sbatch_script"]).read_text()
    log = Path(on["log"]).read_text()
    resumed = [int(x) for x in re.findall(r"resuming at step (\d+)", log)]
    assert len(resumed) == 1 and 4096 <= resumed[0] < steps, log  # not restarted from 0
    assert f"=== sr_ppo_cartpole_s0: job {on['slurm_id']} attempt 1" in log
    ds = work / "offline_dataset" / "sr_ppo_cartpole_s0"
    check = subprocess.run([PY, str(ROOT / "dataset_utils.py"), "verify", str(ds)],
                           capture_output=True, text=True, timeout=300)
    assert check.returncode == 0, check.stdout + check.stderr
    manifest = json.loads((ds / "manifest.json").read_text())
    assert manifest["count"] == steps and manifest["marks"] == [4096, 8192, 12288, 16384]
    results = json.loads((run / "results.json").read_text())
    assert [r["interval"] for r in results] == [1, 2, 3, 4]
    off_results = json.loads((work / "out/runs/sr_iql_on_ppo_cartpole_s0/results.json").read_text())
    assert [r["data_limit"] for r in off_results] == manifest["marks"]
