"""The launcher checks the whole plan before starting anything (issue 28, item 6): plans that
cannot run (too few online steps for one rollout or for the intervals, pass-through flags a
script refuses, knobs set empty) are refused by ``--dry_run`` and by a real start alike, one
``error:`` line per problem, exit 2, nothing started and no folder made; a good plan still
passes. Also: what the job exit summary says of exits 2, 65 and 74, and what ``--wait`` says of
a pending job's SLURM reason (with a stand-in ``scontrol``; tests/test_launch_slurm_checks.py
asks a real cluster)."""

from __future__ import annotations

import io
from pathlib import Path

import pytest

from blendrl.methods import METHOD_TABLE
from blendrl.launch import monitor, slurm
from blendrl.launch.config import SlurmOptions
from blendrl.launch.outcomes import blocked_jobs, describe_exit
from blendrl.launch.registry import Registry, new_job_entry
from blendrl.launch.script_args import script_entry
from blendrl.launch.slurm_checks import Limits, limit_problems, mem_mb, pending_reason
from test_launch_support import (ROOT, clean_env, real_scripts_missing, registry_of, run_cycle,
                                 write_fake_scripts)

needs_scripts = pytest.mark.skipif(bool(real_scripts_missing()), reason="training scripts missing")

SMALL = {"ENVIRONMENT": "cartpole", "SEEDS": "0", "LOCAL": "1", "EXPERIMENT_ID": "chk"}


def _errors(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith("error: ")]


def _refused(tmp_path: Path, env: dict, args: tuple[str, ...] = (),
             script: str = "run_full_cycle.py") -> list[list[str]]:
    """Run the plan with --dry_run and for real: each is refused with exit 2, says nothing was
    started and leaves no work dir; the error lines of each."""
    work = tmp_path / "work"
    said = []
    for mode in (("--dry_run",), ("--detach",)):
        res = run_cycle(["--work_dir", str(work), *args, *mode], env=clean_env(**env),
                        script=script)
        assert res.returncode == 2, res.stdout + res.stderr
        assert "nothing was started" in res.stderr
        assert not work.exists(), f"{mode}: {sorted(p.name for p in work.rglob('*'))}"
        said.append(_errors(res.stderr))
    assert said[0] == said[1]  # the dry run says what the real start says
    return said


# --------------------------------------------------------------------------- bad plans

@needs_scripts
@pytest.mark.parametrize("knobs,expected", [
    ({"ONLINE_STEPS": "100"},
     "error: ONLINE_STEPS 100 is less than one rollout of the online script (512 transitions: "
     "num_envs 4 x num_steps 128): raise ONLINE_STEPS to 512 or more"),
    ({"INTERVALS_COUNT": "200"},
     "error: INTERVALS_COUNT 200 is more than the 97 rollouts of ONLINE_STEPS 50000 (512 "
     "transitions each: num_envs 4 x num_steps 128): lower INTERVALS_COUNT to 97 or less, or "
     "raise ONLINE_STEPS to 102400 or more"),
    ({"ONLINE_EXTRA_ARGS": "--learning_rate -1"},
     "error: ONLINE_EXTRA_ARGS: train_neuralppo.py and train_blenderl.py refused the arguments: "
     "--learning_rate must be in (0, inf), got -1.0"),
    ({"OFFLINE_EXTRA_ARGS": "--nonsense 1"},
     "error: OFFLINE_EXTRA_ARGS: train_iql.py and train_blendrl_iql.py refused the arguments: "
     "Unrecognized options: --nonsense"),
    # a rule set the offline BlendRL script would only look for once it has read its dataset
    ({"BLENDRL_OFFLINE_EXTRA_ARGS": "--rules nosuch"},
     "error: BLENDRL_OFFLINE_EXTRA_ARGS: train_blendrl_iql.py refused the arguments: --rules "
     "nosuch (env cartpole)"),
    # a rollout made bigger for the BlendRL script only: only its jobs are concerned
    ({"BLENDRL_ONLINE_EXTRA_ARGS": "--num_envs 64", "ONLINE_STEPS": "5000"},
     "error: ONLINE_STEPS 5000 is less than one rollout of the online script (8192 transitions: "
     "num_envs 64 x num_steps 128)"),
])
def test_a_plan_its_scripts_would_refuse_is_refused_before_anything_starts(tmp_path, knobs,
                                                                          expected):
    for errors in _refused(tmp_path, {**SMALL, **knobs}):
        assert len(errors) == 1 and errors[0].startswith(expected), errors
    if "BLENDRL_ONLINE_EXTRA_ARGS" in knobs:
        assert errors[0].endswith("[train_blenderl.py]")


@needs_scripts
def test_every_problem_is_one_line(tmp_path):
    errors = _refused(tmp_path, {**SMALL, "ONLINE_STEPS": "100",
                                 "OFFLINE_EXTRA_ARGS": "--beta -3 --nonsense 1"})[0]
    assert len(errors) == 2, errors
    assert errors[0].startswith("error: ONLINE_STEPS 100 is less than one rollout")
    assert errors[1].startswith("error: OFFLINE_EXTRA_ARGS: train_iql.py and train_blendrl_iql.py "
                                "refused the arguments: Unrecognized options: --nonsense")


@pytest.mark.parametrize("knobs,expected", [
    ({"EXPERIMENT_ID": ""}, ["error: EXPERIMENT_ID is set but empty: give a value, or leave it "
                             "unset for its default (default_cartpole)"]),
    ({"ONLINE_METHODS": ""}, ["error: ONLINE_METHODS is set but empty: give a value, none for no "
                              "method, or leave it unset for its default (ppo blendrl_ppo)"]),
    ({"ENVIRONMENT": " ", "SEEDS": "", "LOCAL": "", "ONLINE_STEPS": ""},
     ["error: ENVIRONMENT is set but empty", "error: ONLINE_STEPS is set but empty",
      "error: SEEDS is set but empty", "error: LOCAL is set but empty"]),
])
def test_knobs_set_empty_are_refused_by_the_shell_script_too(tmp_path, knobs, expected):
    """run_full_cycle.sh no longer turns an empty knob into its default (``${NAME=default}``)."""
    errors = _refused(tmp_path, {**SMALL, **knobs}, script="run_full_cycle.sh")[0]
    assert len(errors) == len(expected)
    for line, start in zip(errors, expected):
        assert line.startswith(start), (line, start)


def test_an_empty_list_flag_is_refused_and_none_means_no_method(tmp_path):
    errors = _refused(tmp_path, SMALL, ("--online_methods",))[0]
    assert errors == ["error: --online_methods (the knob ONLINE_METHODS) is given but empty: give "
                      "a value, none for no method, or leave it unset for its default "
                      "(ppo blendrl_ppo)"]
    errors = _refused(tmp_path, SMALL, ("--offline_methods", "none", "iql"))[0]
    assert errors == ["error: OFFLINE_METHODS: none means no method; it cannot be listed with "
                      "others (none iql)"]


@needs_scripts
def test_a_good_plan_still_passes_and_none_leaves_a_kind_out(tmp_path):
    work = tmp_path / "work"
    env = clean_env(**SMALL, ONLINE_METHODS="ppo", OFFLINE_METHODS="none", OFFLINE_DATASETS="none",
                    ONLINE_STEPS="1024", INTERVALS_COUNT="2",
                    ONLINE_EXTRA_ARGS="--learning_rate 1e-3 --num_steps 64")
    res = run_cycle(["--work_dir", str(work), "--dry_run"], env=env)
    assert res.returncode == 0, res.stdout + res.stderr
    assert not _errors(res.stderr) and "note:" not in res.stdout
    jobs = [line.split()[:2] for line in res.stdout.splitlines() if line.startswith("  ")]
    assert jobs == [["online", "chk_ppo_cartpole_s0"], ["plot", "plots"]]
    assert not work.exists()


# --------------------------------------------------------------------------- the scripts' Args

def test_each_training_script_names_its_args_class_and_method():
    expected = {("online", False): "OnlineArgs", ("online", True): "BlendRLOnlineArgs",
                ("offline", False): "OfflineArgs", ("offline", True): "BlendRLOfflineArgs"}
    for m in METHOD_TABLE:
        entry = script_entry(ROOT / m.script)
        assert entry is not None, m.script
        assert (entry.module, entry.args_class, entry.method) == \
            (f"blendrl.{m.kind}", expected[(m.kind, m.blendrl)], m.id)
    assert script_entry(ROOT / "no_such_script.py") is None


# --------------------------------------------------------------------------- exit statuses

def test_exit_statuses_in_words():
    assert "arguments were refused (exit 2)" in describe_exit(2)
    assert "dataset is broken (exit 65)" in describe_exit(65)
    assert "--resume cannot help" in describe_exit(65)
    assert "exit 74: disk full" in describe_exit(74) and "free space, then" in describe_exit(74)
    assert describe_exit(75).startswith("interrupted after checkpointing (exit 75)")
    assert describe_exit(3) == "exit 3" and describe_exit(-9) == "killed by SIGKILL"
    info = slurm.parse_show_job("JobId=4 JobState=FAILED Reason=NonZeroExitCode ExitCode=65:0 "
                                "Restarts=0")
    state, code, reason, _ = slurm.job_state(info)
    assert (state, code) == ("failed", 65)
    assert reason.startswith("FAILED (NonZeroExitCode): its dataset is broken (exit 65)")


def _entry(name: str, state: str, code: int | None, deps=(), dependency="afterok") -> dict:
    job = {"name": name, "kind": "online", "command": ["x"], "depends_on": list(deps),
           "dependency": dependency}
    return {**new_job_entry(job, Path(f"/l/{name}.log")), "state": state, "exit_code": code}


def test_only_jobs_resume_can_finish_get_the_resume_advice():
    jobs = [_entry("on", "failed", 2), _entry("off", "cancelled", None, ["on"]),
            _entry("plots", "done", 0, ["on", "off"], "afterany")]
    assert blocked_jobs(jobs) == {"on", "off"}
    text = monitor.summary_text({"exp_id": "e", "jobs": jobs}, Registry(Path("/l")))
    assert "on: its arguments were refused (exit 2)" in text and "log: /l/on.log" in text
    assert "--resume with the same knobs" not in text
    assert "--resume alone would end the same way" in text
    jobs[0]["exit_code"] = 74
    text = monitor.summary_text({"exp_id": "e", "jobs": jobs}, Registry(Path("/l")))
    assert "free space, then run_full_cycle.sh --resume" in text
    assert "--resume with the same knobs (EXPERIMENT_ID=e)" in text


@pytest.mark.parametrize("script,code,words,resume", [
    ("train_neuralppo.py", 2, "its arguments were refused (exit 2)", False),
    ("train_iql.py", 65, "its dataset is broken (exit 65)", False),
    ("train_neuralppo.py", 74, "it could not write (exit 74: disk full", True),
])
def test_the_summary_of_a_real_run_says_what_an_exit_means(tmp_path, script, code, words, resume):
    scripts = write_fake_scripts(tmp_path / "scripts")
    (scripts / script).write_text(f"import sys\nsys.exit({code})\n")
    work = tmp_path / "work"
    res = run_cycle(["--work_dir", str(work), "--scripts_dir", str(scripts), "--wait",
                     "--online_methods", "ppo", "--offline_methods", "iql",
                     "--offline_datasets", "ppo"], env=clean_env(**SMALL))
    assert res.returncode == 1, res.stdout + res.stderr
    failed = next(j for j in registry_of(work, "chk")["jobs"] if j["state"] == "failed")
    assert failed["exit_code"] == code and failed["reason"].startswith(words)
    assert f"{failed['name']}: {words}" in res.stdout and f"log: {failed['log']}" in res.stdout
    assert ("--resume with the same knobs" in res.stdout) == resume


# --------------------------------------------------------------------------- SLURM, unit level

def test_partition_limits_name_the_knob_to_change():
    opts = SlurmOptions(cpus=4, mem="32G", time="2-00:00:00")
    problems = limit_problems(opts, Limits("short", cpus=2, mem_mb=16000, time="1-00:00:00"))
    assert problems == [
        "CLUSTER_CPUS=4 is more than the 2 CPUs of any node of partition short: set CLUSTER_CPUS "
        "to 2 or less (the online and offline jobs follow it: CLUSTER_ONLINE_CPUS / "
        "CLUSTER_OFFLINE_CPUS are ''), or choose another CLUSTER_PARTITION",
        "CLUSTER_MEM=32G is more than the 16000 MB of memory of any node of partition short: set "
        "CLUSTER_MEM to 16000M or less, or '' for the cluster's default (the online and offline "
        "jobs follow it: CLUSTER_ONLINE_MEM / CLUSTER_OFFLINE_MEM are ''), or choose another "
        "CLUSTER_PARTITION",
        "CLUSTER_TIME=2-00:00:00 is longer than the time limit of partition short (1-00:00:00): "
        "set CLUSTER_TIME to 1-00:00:00 or less (longer runs checkpoint and requeue), or choose "
        "another CLUSTER_PARTITION"]
    assert limit_problems(opts, Limits("big", cpus=64, mem_mb=None, time=None)) == []
    assert (mem_mb("16G"), mem_mb("512"), mem_mb("2048M"), mem_mb("1T"), mem_mb("x")) == \
        (16384, 512, 2048, 1024 ** 2, None)


def test_pending_reasons_that_waiting_cannot_clear():
    assert pending_reason("PartitionConfig").final
    assert "CLUSTER_CPUS" in pending_reason("PartitionConfig").change
    assert "CLUSTER_TIME" in pending_reason("PartitionTimeLimit").change
    assert "CLUSTER_ACCOUNT" in pending_reason("InvalidAccount").change
    assert "CLUSTER_TIME" in pending_reason("QOSMaxWallDurationPerJobLimit").change
    assert not pending_reason("ReqNodeNotAvail").final  # may clear: only reported
    assert pending_reason("Priority") is None and pending_reason("Resources") is None
    assert pending_reason(None) is None


def test_wait_shows_a_pending_reason_and_stops_on_one_that_cannot_clear(tmp_path, monkeypatch):
    reg = Registry(tmp_path / "logs" / "e")
    jobs = [_entry("a", "pending", None), _entry("b", "pending", None, ["a"])]
    jobs[0]["slurm_id"], jobs[1]["slurm_id"] = "7", "8"
    reg.create({"exp_id": "e", "mode": "slurm", "work_dir": str(tmp_path), "jobs": jobs})
    answers = {"7": "JobId=7 JobState=PENDING Reason=PartitionConfig ExitCode=0:0 Restarts=0",
               "8": "JobId=8 JobState=PENDING Reason=Dependency ExitCode=0:0 Restarts=0"}
    monkeypatch.setattr(slurm, "job_info", lambda i: slurm.parse_show_job(answers[i]))
    out = io.StringIO()
    assert monitor.wait(reg, out, poll=0.05, timeout=30) == 1
    text = out.getvalue()
    assert "  a: pending (PENDING (PartitionConfig))" in text
    assert "  b: pending (PENDING (Dependency))" in text
    assert ("a can never start (SLURM: PartitionConfig): the request does not fit the partition"
            in text and "lower CLUSTER_CPUS" in text)
    assert "stopped following: a can never start" in text and "kill_experiments.sh e" in text
    assert "a can never start" in monitor.status_text(reg.read())  # --status says it too
