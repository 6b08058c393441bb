"""Per-kind cluster resources (issue 29, item 10): online jobs ask SLURM for the CPUs and memory of
their environments and no GPU unless CLUSTER_ONLINE_GPUS says, offline jobs for their own CPUs,
memory and GPUs (CLUSTER_OFFLINE_*), the plot job for one CPU, CLUSTER_PLOT_MEM and no GPU; a
per-kind knob left '' follows the shared CLUSTER_CPUS / CLUSTER_MEM / CLUSTER_GPUS. The checks
before submission and the pending reasons name the knob that set each part of a request.

The first part needs no cluster; the tests marked ``slurm`` use the real single-node cluster of
test_launch_slurm.py (2 CPUs, no GPU): a submitted experiment carries each kind's request and
runs to the end with no GPU; a per-kind request above the node, and a GPU, are refused before
anything is submitted, naming the knob."""

from __future__ import annotations

import dataclasses
import io
import os
import re
import subprocess
from pathlib import Path

import pytest

import run_full_cycle
from blendrl.envs import ENV_NAMES
from blendrl.launch import cli, monitor, slurm, slurm_checks
from blendrl.launch.config import SlurmOptions, build_config
from blendrl.launch.knob_values import ConfigError, knobs_from_env
from blendrl.launch.knobs import KNOB_BY_VAR
from blendrl.launch.plan import build_plan
from blendrl.launch.registry import Registry, new_job_entry
from blendrl.launch.request import LaunchRequest
from test_launch_support import (PY, ROOT, clean_env, read_trace, registry_of, run_cycle,
                                 write_fake_scripts)

KINDS = ("online", "offline", "plot")


def _request(**over) -> LaunchRequest:
    """The request of run_full_cycle.py's defaults, with overrides (flag field names)."""
    return LaunchRequest.of(dataclasses.replace(run_full_cycle.Args(), **over))


def _config(tmp_path: Path, **over):
    r = _request(**{"work_dir": str(tmp_path / "work"), "scripts_dir": str(tmp_path / "scripts"),
                    **over})
    return build_config(r, project_root=ROOT, cwd=tmp_path, env_names=ENV_NAMES, python=PY)


def _directives(opts: SlurmOptions, kind: str) -> list[str]:
    job = {"name": kind, "kind": kind, "command": ["/py", "x.py"], "resumable": kind != "plot"}
    return [d for d in slurm.directives(job, "e", Path("/w"), Path("/w/l.log"), opts)
            if d.startswith(("--cpus-per-task=", "--mem=", "--gpus="))]


# --------------------------------------------------------------------------- no cluster needed

def test_each_kind_asks_for_its_own_resources_and_empty_follows_the_shared_knob(tmp_path):
    # the defaults: the training jobs 4 CPUs and 16G, no GPU anywhere; the plot job 1 CPU, 2G
    cfg = _config(tmp_path, local=False)
    assert {k: _directives(cfg.slurm, k) for k in KINDS} == {
        "online": ["--cpus-per-task=4", "--mem=16G"], "offline": ["--cpus-per-task=4", "--mem=16G"],
        "plot": ["--cpus-per-task=1", "--mem=2G"]}
    # CLUSTER_GPUS reaches the offline jobs only (online: CLUSTER_ONLINE_GPUS=0; plot: never)
    cfg = _config(tmp_path, local=False, cluster_gpus="1")
    assert [d for k in KINDS for d in _directives(cfg.slurm, k) if "gpus" in d] == ["--gpus=1"]
    assert "--gpus=1" in _directives(cfg.slurm, "offline")
    # each kind its own; '' follows the shared knob (CLUSTER_ONLINE_GPUS='': CLUSTER_GPUS)
    cfg = _config(tmp_path, local=False, cluster_cpus=2, cluster_mem="8G", cluster_gpus="1",
                  cluster_online_cpus=8, cluster_online_gpus="", cluster_offline_mem="64G",
                  cluster_offline_gpus="a100:2", cluster_plot_mem="")
    assert {k: _directives(cfg.slurm, k) for k in KINDS} == {
        "online": ["--cpus-per-task=8", "--mem=8G", "--gpus=1"],
        "offline": ["--cpus-per-task=2", "--mem=64G", "--gpus=a100:2"],
        "plot": ["--cpus-per-task=1", "--mem=8G"]}
    r = cfg.slurm.request("offline")
    assert (r.cpus_from, r.mem_from, r.gpus_from) == ("CLUSTER_CPUS", "CLUSTER_OFFLINE_MEM",
                                                      "CLUSTER_OFFLINE_GPUS")
    # 0 (of any type) is none; CLUSTER_MEM='' leaves memory to the cluster
    cfg = _config(tmp_path, local=False, cluster_gpus="2", cluster_offline_gpus="a100:0",
                  cluster_mem="")
    assert _directives(cfg.slurm, "offline") == ["--cpus-per-task=4"]
    assert cfg.slurm.unused_gpus().startswith("note: CLUSTER_GPUS=2 reaches no job")
    # the shell script's defaults, and a knob set empty there (it follows the shared one)
    assert knobs_from_env({"CLUSTER_ONLINE_GPUS": "", "CLUSTER_ONLINE_CPUS": "",
                           "CLUSTER_OFFLINE_CPUS": "6"}) == {
        "cluster_online_gpus": "", "cluster_online_cpus": None, "cluster_offline_cpus": 6}
    assert (KNOB_BY_VAR["CLUSTER_ONLINE_GPUS"].default, KNOB_BY_VAR["CLUSTER_OFFLINE_GPUS"].default,
            KNOB_BY_VAR["CLUSTER_PLOT_MEM"].default) == ("0", "", "2G")


def test_a_job_without_a_gpu_runs_with_none_visible_and_the_registry_records_each_request(tmp_path):
    cfg = _config(tmp_path, local=False, cluster_offline_gpus="1")
    jobs = build_plan(cfg, {"online": 4, "offline": 4}, lambda j, p: True).jobs
    for job in jobs:
        text = slurm.render_script(job.to_dict(), exp_id="e", work_dir=Path("/w"),
                                   log=Path("/w/l.log"), opts=cfg.slurm, venv_activate=None)
        hidden = "\nexport CUDA_VISIBLE_DEVICES=  #" in text
        assert hidden == (job.kind != "offline"), job.name
        assert ("#SBATCH --gpus=1\n" in text) == (job.kind == "offline")
        assert job.request == cfg.slurm.request(job.kind).to_dict()
    assert jobs[0].request == {"cpus": 4, "mem": "16G", "gpus": "", "knobs": {
        "cpus": "CLUSTER_CPUS", "mem": "CLUSTER_MEM", "gpus": "CLUSTER_ONLINE_GPUS"}}
    assert jobs[-1].kind == "plot" and jobs[-1].threads == 1
    assert jobs[-1].request["knobs"] == {"cpus": None, "mem": "CLUSTER_PLOT_MEM", "gpus": None}
    # local mode asks SLURM for nothing
    assert all(j.request is None for j in build_plan(_config(tmp_path), 1, lambda j, p: True).jobs)


def _dry_run(tmp_path: Path, local: bool, **knobs) -> str:
    """The output of a dry run of seaquest (4 jobs at once when local), away from any cluster."""
    scripts = write_fake_scripts(tmp_path / "scripts")
    out = io.StringIO()
    old_path = os.environ["PATH"]
    os.environ["PATH"] = str(tmp_path)  # no sbatch: no request is tested
    try:
        r = _request(work_dir=str(tmp_path / "w"), scripts_dir=str(scripts), environment="seaquest",
                     local=local, max_parallel=2, dry_run=True, online_methods=("ppo",),
                     offline_methods=("iql",), offline_datasets=("ppo",), **knobs)
        code = cli.main(r, project_root=ROOT, cwd=tmp_path, python=PY, env_names=ENV_NAMES,
                        vector_envs=("cartpole", "mountaincar"),
                        console=cli.Console(out=out, interactive=False), cores=8)
    finally:
        os.environ["PATH"] = old_path
    assert code == 0, out.getvalue()
    return out.getvalue()


def test_threads_per_kind_follow_the_kinds_cpus_on_slurm_and_the_cores_locally(tmp_path):
    knobs = dict(cluster_online_cpus=6, cluster_offline_cpus=3, cluster_offline_gpus="1")
    text = _dry_run(tmp_path / "slurm", False, **knobs)
    assert ("SLURM: online jobs 6 CPU(s), 16G, no GPU, 6 thread(s); offline jobs 3 CPU(s), 16G, "
            "--gpus=1, 3 thread(s); plot job 1 CPU(s), 2G, no GPU, 1 thread(s)") in text
    scripts = dict(re.findall(r"----- \S+/(\w+)\.sbatch\n(.*?)# submitted with", text, re.S))
    on, off, plot = (scripts[n] for n in ("default_cartpole_ppo_seaquest_s0",
                                          "default_cartpole_iql_on_ppo_seaquest_s0", "plots"))
    assert "#SBATCH --cpus-per-task=6\n" in on and " --threads 6 " in on
    assert "OMP_NUM_THREADS=6 " in on and "--gpus" not in on
    assert "#SBATCH --cpus-per-task=3\n" in off and " --threads 3 " in off
    assert "#SBATCH --gpus=1\n" in off and "OMP_NUM_THREADS=3 " in off
    assert "#SBATCH --cpus-per-task=1\n" in plot and "OMP_NUM_THREADS=1 " in plot
    # locally the CLUSTER_* knobs are the cluster's, not this machine's: cores / jobs at once
    text = _dry_run(tmp_path / "local", True, **knobs)
    assert "local: 2 job(s) at once, 4 thread(s) each (8 cores)" in text


def test_local_jobs_threads_per_kind_in_a_real_run(tmp_path):
    """A local run (stand-in scripts): every training job gets cores / jobs at once as --threads
    and OMP_NUM_THREADS, whatever the per-kind cluster knobs say; the plot job one."""
    scripts = write_fake_scripts(tmp_path / "scripts")
    work, trace = tmp_path / "work", tmp_path / "trace.jsonl"
    env = clean_env(FAKE_TRACE=str(trace), ONLINE_METHODS="ppo", OFFLINE_METHODS="iql",
                    OFFLINE_DATASETS="ppo", ENVIRONMENT="seaquest", MAX_PARALLEL="1",
                    CLUSTER_ONLINE_CPUS="7", CLUSTER_OFFLINE_CPUS="5")
    try:
        res = run_cycle(["--work_dir", str(work), "--scripts_dir", str(scripts),
                         "--experiment_id", "lt", "--wait"], env=env)
    finally:
        subprocess.run([str(ROOT / "kill_experiments.sh"), "lt", "--logs_dir", str(work / "logs"),
                        "--grace", "1"], capture_output=True, timeout=60)
    assert res.returncode == 0, res.stdout + res.stderr
    cores = str(len(os.sched_getaffinity(0)))
    starts = {e["script"]: e for e in read_trace(trace) if e["event"] == "start"}
    assert set(starts) == {"train_neuralppo.py", "train_iql.py", "plot_results.py"}
    for name in ("train_neuralppo.py", "train_iql.py"):
        argv = starts[name]["argv"]
        assert (argv[argv.index("--threads") + 1], starts[name]["omp"]) == (cores, cores)
    assert starts["plot_results.py"]["omp"] == "1"
    assert all(j.get("request") is None for j in registry_of(work, "lt")["jobs"])


@pytest.mark.parametrize("env,errors", [
    ({"CLUSTER_ONLINE_CPUS": "0"},
     ["error: CLUSTER_ONLINE_CPUS must be a positive whole number, got 0"]),
    ({"CLUSTER_OFFLINE_CPUS": "many"},
     ["error: CLUSTER_OFFLINE_CPUS: expected a whole number, got 'many'"]),
    ({"CLUSTER_OFFLINE_GPUS": "two", "CLUSTER_PLOT_MEM": "2 GB", "CLUSTER_EXTRA": "--gres=gpu:1",
      "CLUSTER_ONLINE_MEM": "lots"},
     ["error: CLUSTER_ONLINE_MEM 'lots' is not an amount of memory: write e.g. 16G, 500M or 16000 "
      "(MB), or '' for CLUSTER_MEM",
      "error: CLUSTER_OFFLINE_GPUS 'two' is not a number of GPUs: write COUNT or TYPE:COUNT, e.g. "
      "1 or a100:1 (0 = none)",
      "error: CLUSTER_PLOT_MEM '2 GB' is not an amount of memory: write e.g. 16G, 500M or 16000 "
      "(MB), or '' for CLUSTER_MEM",
      "error: CLUSTER_EXTRA: --gres=gpu:1 would set GPUs for every job, the plot job's included; "
      "set CLUSTER_ONLINE_GPUS / CLUSTER_OFFLINE_GPUS (or CLUSTER_GPUS) instead"]),
])
def test_knob_range_checks_one_line_each_and_exit_2(tmp_path, env, errors):
    res = run_cycle(["--work_dir", str(tmp_path / "w"), "--dry_run"],
                    env=clean_env(LOCAL="0", **env), timeout=60)
    assert res.returncode == 2, res.stdout + res.stderr
    assert [ln for ln in res.stderr.splitlines() if ln.startswith("error: ")] == errors
    assert "nothing was started" in res.stderr and not (tmp_path / "w").exists()


def test_cluster_extra_may_not_ask_for_what_the_per_kind_knobs_ask(tmp_path):
    cpus = "CLUSTER_ONLINE_CPUS / CLUSTER_OFFLINE_CPUS (or CLUSTER_CPUS)"
    mem = "CLUSTER_ONLINE_MEM / CLUSTER_OFFLINE_MEM / CLUSTER_PLOT_MEM (or CLUSTER_MEM)"
    gpus = "CLUSTER_ONLINE_GPUS / CLUSTER_OFFLINE_GPUS (or CLUSTER_GPUS)"
    for extra, knobs in (("--cpus-per-task=8", cpus), ("-c8", cpus), ("--mem=4G", mem),
                         ("--gpus-per-node=1", gpus), ("-G1", gpus)):
        with pytest.raises(ConfigError) as e:
            _config(tmp_path, cluster_extra=extra)
        assert len(e.value.problems) == 1
        assert e.value.problems[0].startswith(f"CLUSTER_EXTRA: {extra} would set ")
        assert e.value.problems[0].endswith(f"; set {knobs} instead")
    # other options, other generic resources and --mem-per-cpu are the user's business
    assert _config(tmp_path, cluster_extra="--qos=short --gres=tmpfs:10G --mem-per-cpu=2G")


def test_pending_reasons_name_the_knobs_of_the_jobs_own_request(tmp_path):
    opts = SlurmOptions(cpus=4, mem="16G", gpus="1", online_cpus=8, offline_gpus="a100:1")
    entries = []
    for kind, reason in (("online", "PartitionConfig"), ("offline", "PartitionConfig"),
                         ("offline", "QOSMaxGRESPerJob"), ("plot", "QOSMaxMemoryPerJob"),
                         ("online", "BadConstraints")):
        entry = new_job_entry({"name": f"{kind}-{reason}", "kind": kind,
                               "request": opts.request(kind).to_dict()}, tmp_path / "x.log")
        entry.update(slurm_reason=reason)
        entries.append(entry)
    lines = [slurm_checks.pending_line(e) for e in entries]
    assert lines[0].endswith(
        "lower CLUSTER_ONLINE_CPUS / CLUSTER_MEM (or CLUSTER_ONLINE_MEM for the online jobs "
        "alone), or choose another CLUSTER_PARTITION")  # it asks for no GPU: none named
    assert lines[1].endswith(
        "lower CLUSTER_CPUS (or CLUSTER_OFFLINE_CPUS for the offline jobs alone) / CLUSTER_MEM (or "
        "CLUSTER_OFFLINE_MEM for the offline jobs alone) / CLUSTER_OFFLINE_GPUS, or choose another "
        "CLUSTER_PARTITION")
    assert "lower CLUSTER_OFFLINE_GPUS, or change the --qos" in lines[2]
    assert "lower CLUSTER_PLOT_MEM, or change the --qos" in lines[3]
    assert lines[4].endswith("change the --constraint of CLUSTER_EXTRA")
    # a registry written before requests were recorded: the kind's knobs and the shared ones
    old = {"name": "o", "kind": "offline", "state": "pending", "slurm_reason": "PartitionConfig"}
    assert ("lower CLUSTER_CPUS (or CLUSTER_OFFLINE_CPUS for the offline jobs alone) / "
            "CLUSTER_MEM (or CLUSTER_OFFLINE_MEM" in slurm_checks.pending_line(old))
    # --status says it, from the registry
    reg = Registry(tmp_path / "logs" / "e")
    reg.create({"exp_id": "e", "mode": "slurm", "work_dir": str(tmp_path), "jobs": entries[:2]})
    text = monitor.status_text(reg.read())
    assert "offline-PartitionConfig can never start (SLURM: PartitionConfig)" in text
    assert "/ CLUSTER_OFFLINE_GPUS, or choose another CLUSTER_PARTITION" in text


def test_partition_gpus_from_sinfo_and_the_gpu_limits():
    from blendrl.launch.slurm_checks import Limits, limit_problems, node_gpus

    assert node_gpus("(null)") == {} and node_gpus("gpu:2(S:0,1)") == {"": 2}
    assert node_gpus("gpu:a100:4(S:0-1),mps:400") == {"a100": 4, "": 4}
    assert node_gpus("gpu:a100:2,gpu:v100:1") == {"a100": 2, "v100": 1, "": 3}
    assert node_gpus("gpu:weird:x") is None
    opts = SlurmOptions(offline_gpus="a100:2", online_gpus="1")
    big = Limits("gpu", cpus=64, mem_mb=None, time=None, gpus={"a100": 4, "": 4})
    assert limit_problems(opts, big) == []
    assert limit_problems(opts, dataclasses.replace(big, gpus={"v100": 4, "": 4})) == [
        "CLUSTER_OFFLINE_GPUS=a100:2 asks for a100 GPUs, but no node of partition gpu has any "
        "(they have v100): set CLUSTER_OFFLINE_GPUS to another type, or to a count alone, or "
        "choose another CLUSTER_PARTITION"]
    assert limit_problems(opts, dataclasses.replace(big, gpus={"a100": 1, "": 1})) == [
        "CLUSTER_OFFLINE_GPUS=a100:2 is more than the 1 a100 GPUs of any node of partition gpu: "
        "set CLUSTER_OFFLINE_GPUS to a100:1 or less, or choose another CLUSTER_PARTITION"]
    # only the kinds the plan has are checked
    assert limit_problems(opts, dataclasses.replace(big, gpus={}), ("online",)) == [
        "CLUSTER_ONLINE_GPUS=1 asks for GPUs, but no node of partition gpu has any: set "
        "CLUSTER_ONLINE_GPUS to 0 for none, or choose another CLUSTER_PARTITION"]
    assert limit_problems(opts, dataclasses.replace(big, gpus=None)) == []  # not known: not checked


# --------------------------------------------------------------------------- the real cluster

from test_launch_slurm import _cycle  # noqa: E402

def _node() -> tuple[int, int]:
    out = subprocess.run(["sinfo", "-h", "-N", "-o", "%c %m"], capture_output=True, text=True,
                         check=True).stdout.split()
    return int(out[0]), int(out[1])


def _errors(res: subprocess.CompletedProcess) -> list[str]:
    return [ln for ln in res.stderr.splitlines() if ln.startswith("error: ")]


def _queued(prefix: str) -> list[str]:
    names = subprocess.run(["squeue", "-h", "-o", "%j"], capture_output=True, text=True,
                           check=True).stdout.split()
    return [n for n in names if n.startswith(prefix)]


@pytest.mark.slurm
@pytest.mark.slow
def test_submitted_jobs_carry_their_kinds_request_and_run_with_no_gpu(cluster, tmp_path):
    """CLUSTER_GPUS=1 would once have given every job a GPU this node does not have; now it
    reaches the offline jobs only, and CLUSTER_OFFLINE_GPUS=0 takes it from them too: every job
    runs, each with its kind's CPUs and memory."""
    work = tmp_path / "work"
    res = _cycle(work, "sres", CLUSTER_ONLINE_CPUS="2", CLUSTER_OFFLINE_CPUS="1",
                 CLUSTER_ONLINE_MEM="3G", CLUSTER_OFFLINE_MEM="2500M", CLUSTER_GPUS="1",
                 CLUSTER_OFFLINE_GPUS="0")
    assert res.returncode == 0, res.stdout + res.stderr
    assert "note: CLUSTER_GPUS=1 reaches no job" in res.stdout
    jobs = registry_of(work, "sres")["jobs"]
    assert [j["kind"] for j in jobs] == ["online", "offline", "plot"]
    asked = {}
    for j in jobs:  # what SLURM itself holds for each job
        info = slurm.job_info(j["slurm_id"])
        asked[j["kind"]] = (info["NumCPUs"], info["MinMemoryNode"], info.get("TresPerJob"))
        script = Path(j["sbatch_script"]).read_text()
        assert "--gpus" not in script and "\nexport CUDA_VISIBLE_DEVICES=  #" in script
    assert asked == {"online": ("2", "3G", None), "offline": ("1", "2500M", None),
                     "plot": ("1", "2G", None)}
    assert jobs[0]["request"]["knobs"] == {
        "cpus": "CLUSTER_ONLINE_CPUS", "mem": "CLUSTER_ONLINE_MEM", "gpus": "CLUSTER_ONLINE_GPUS"}
    done = _cycle(work, "sres", "--status", "sres", "--wait", timeout=400)
    assert done.returncode == 0, done.stdout + done.stderr
    assert [j["state"] for j in registry_of(work, "sres")["jobs"]] == ["done"] * 3
    assert (work / "plots" / "sres" / "interval_comparison.png").is_file()


@pytest.mark.slurm
@pytest.mark.slow
def test_a_per_kind_request_above_the_node_is_refused_naming_its_knob(cluster, tmp_path):
    cpus, mem = _node()
    work = tmp_path / "work"
    res = _cycle(work, "sbig", "--detach", CLUSTER_OFFLINE_CPUS=str(cpus + 1),
                 CLUSTER_ONLINE_MEM=f"{mem + 1000}M", CLUSTER_PLOT_MEM="", CLUSTER_MEM="1G")
    assert res.returncode == 2, res.stdout + res.stderr
    assert _errors(res) == [
        f"error: CLUSTER_OFFLINE_CPUS={cpus + 1} is more than the {cpus} CPUs of any node of "
        f"partition debug: set CLUSTER_OFFLINE_CPUS to {cpus} or less, or choose another "
        "CLUSTER_PARTITION",
        f"error: CLUSTER_ONLINE_MEM={mem + 1000}M is more than the {mem} MB of memory of any node "
        f"of partition debug: set CLUSTER_ONLINE_MEM to {mem}M or less, or choose another "
        "CLUSTER_PARTITION"]
    assert "nothing was started" in res.stderr and not work.exists() and not _queued("sbig.")


@pytest.mark.slurm
@pytest.mark.slow
def test_a_gpu_on_this_gpu_less_node_is_refused_naming_its_knob(cluster, tmp_path, monkeypatch):
    res = _cycle(tmp_path / "w1", "sgpu", "--dry_run", CLUSTER_OFFLINE_GPUS="1")
    assert res.returncode == 2, res.stdout + res.stderr
    assert _errors(res) == [
        "error: CLUSTER_OFFLINE_GPUS=1 asks for GPUs, but no node of partition debug has any: set "
        "CLUSTER_OFFLINE_GPUS to 0 for none, or choose another CLUSTER_PARTITION"]
    res = _cycle(tmp_path / "w2", "sgpu", "--detach", CLUSTER_GPUS="1")  # offline jobs follow it
    assert res.returncode == 2 and _errors(res) == [
        "error: CLUSTER_GPUS=1 asks for GPUs, but no node of partition debug has any: set "
        "CLUSTER_GPUS to 0 for none (the offline jobs follow it: CLUSTER_OFFLINE_GPUS is ''), or "
        "choose another CLUSTER_PARTITION"]
    assert not (tmp_path / "w2").exists() and not _queued("sgpu.")
    # where sinfo cannot say, sbatch --test-only refuses the request, and the knob is named
    monkeypatch.setattr(slurm_checks, "partition_limits", lambda partition: None)
    cfg = _config(tmp_path, local=False, scripts_dir=str(ROOT), experiment_id="sgpu",
                  cluster_mem="", cluster_cpus=1, cluster_online_gpus="2")
    jobs = [j.to_dict() for j in build_plan(cfg, 1, lambda j, p: True).jobs]
    problems = slurm_checks.request_problems(cfg, jobs, None)
    assert len(problems) == 1 and problems[0].startswith(
        "CLUSTER_ONLINE_GPUS: the cluster refuses the request of the online jobs (")
    assert "--gpus=2" in problems[0] and "gres" in problems[0]
