"""Cluster mode's checks against a real single-node SLURM cluster (the fixture of
test_launch_slurm.py starts it; it needs root): a request above the node's CPUs, or one the
cluster refuses otherwise, is refused before anything is submitted; a pending job's reason is
shown while following, and one that waiting cannot clear stops the following at once."""

from __future__ import annotations

import subprocess

import pytest

from blendrl.launch import slurm
from test_launch_slurm import _cycle
from test_launch_support import ROOT, registry_of, wait_for

pytestmark = [pytest.mark.slurm, pytest.mark.slow]


def _node_cpus() -> int:
    out = subprocess.run(["sinfo", "-h", "-N", "-o", "%c"], capture_output=True, text=True,
                         check=True).stdout
    return max(int(c) for c in out.split())


def _queued_names() -> list[str]:
    return subprocess.run(["squeue", "-h", "-o", "%j"], capture_output=True, text=True,
                          check=True).stdout.split()


def test_a_request_above_the_nodes_cpus_is_refused_before_submission(cluster, tmp_path):
    cpus = _node_cpus()
    work = tmp_path / "work"
    for mode in ("--dry_run", "--detach"):
        res = _cycle(work, "scpu", mode, CLUSTER_CPUS=str(cpus + 1))
        assert res.returncode == 2, res.stdout + res.stderr
        errors = [ln for ln in res.stderr.splitlines() if ln.startswith("error: ")]
        assert len(errors) == 1 and errors[0].startswith(
            f"error: CLUSTER_CPUS={cpus + 1} is more than the {cpus} CPUs of any node of "
            "partition ")
        assert "set CLUSTER_CPUS to" in errors[0] and "nothing was started" in res.stderr
        assert not work.exists()
    assert not [n for n in _queued_names() if n.startswith("scpu.")]


def test_a_request_the_cluster_refuses_is_refused_with_its_knob(cluster, tmp_path):
    res = _cycle(tmp_path / "work", "sfeat", "--dry_run",
                 CLUSTER_EXTRA="--constraint=nosuchfeature")
    assert res.returncode == 2, res.stdout + res.stderr
    errors = [ln for ln in res.stderr.splitlines() if ln.startswith("error: ")]
    assert len(errors) == 1 and errors[0].startswith(
        "error: CLUSTER_EXTRA (--constraint): the cluster refuses the request of the online, "
        "offline and plot jobs (")
    assert "--constraint=nosuchfeature" in errors[0] and not (tmp_path / "work").exists()


def test_a_reason_waiting_cannot_clear_is_shown_with_the_knob_and_stops_the_wait(cluster, tmp_path):
    """The jobs are submitted held; the online one is then made to ask for more CPUs than the node
    has (as a job submitted before the checks existed could) and released: it pends with
    PartitionConfig for ever."""
    work = tmp_path / "work"
    res = _cycle(work, "sp", CLUSTER_EXTRA="--hold")
    assert res.returncode == 0, res.stdout + res.stderr
    try:
        on = registry_of(work, "sp")["jobs"][0]["slurm_id"]
        # SLURM applies both although it answers (exit 1) that the partition cannot take them
        subprocess.run(["scontrol", "update", f"JobId={on}", f"MinCPUsNode={_node_cpus() + 1}"],
                       capture_output=True)
        subprocess.run(["scontrol", "release", on], capture_output=True)
        wait_for(lambda: slurm.job_info(on)["Reason"] == "PartitionConfig", 30,
                 "the online job to pend with PartitionConfig", poll=0.5)
        res = _cycle(work, "sp", "--status", "sp", "--wait", timeout=120)
        assert res.returncode == 1, res.stdout + res.stderr
        out = res.stdout
        assert "sp_ppo_cartpole_s0 can never start (SLURM: PartitionConfig)" in out
        assert "lower CLUSTER_CPUS" in out and "stopped following: sp_ppo_cartpole_s0" in out
        assert "  sp_iql_on_ppo_cartpole_s0: pending (PENDING (" in out  # its own reason shown
        status = _cycle(work, "sp", "--status", "sp")
        assert "sp_ppo_cartpole_s0 can never start (SLURM: PartitionConfig)" in status.stdout
    finally:
        subprocess.run([str(ROOT / "kill_experiments.sh"), "sp", "--logs_dir", str(work / "logs")],
                       capture_output=True, timeout=60)
