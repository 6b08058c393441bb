"""Unit tests of the launcher: knobs and validation, the plan, the job registry, process identity,
the sbatch scripts and SLURM states, and the command line's refusals. No job runs here."""

from __future__ import annotations

import dataclasses
import io
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from blendrl.envs import ENV_NAMES
from blendrl.launch import cli, monitor, procs, slurm
from blendrl.launch.config import (SlurmOptions, build_config, local_parallelism,
                                   slurm_time_seconds)
from blendrl.launch.knob_values import ConfigError, knobs_from_env
from blendrl.launch.knobs import KNOBS
from blendrl.launch.plan import AFTERANY, PLOT_JOB, build_plan
from blendrl.launch.registry import Registry, RegistryError, new_job_entry
from blendrl.launch.request import LaunchRequest
from blendrl.launch.resume import (ResumeError, command_key, knob_differences, plan_resume,
                                   recorded_knobs)
from blendrl.launch.scheduling import propagate_cancellations, ready_jobs
from blendrl.launch.states import (CANCELLED, DONE, FAILED, INTERRUPTED, PENDING, RUNNING,
                                   finish_job)

import run_full_cycle
from blendrl.methods import METHOD_INFO, METHOD_TABLE

ROOT = Path(__file__).resolve().parents[1]


def request(**over) -> LaunchRequest:
    """The request of run_full_cycle.py's defaults, with overrides (flag field names)."""
    return LaunchRequest.of(dataclasses.replace(run_full_cycle.Args(), **over))


def config(tmp_path: Path, **over):
    r = request(**{"work_dir": str(tmp_path / "work"), "scripts_dir": str(tmp_path / "scripts"),
                   **over})
    return build_config(r, project_root=ROOT, cwd=tmp_path, env_names=ENV_NAMES,
                        python="/usr/bin/python3")


# --------------------------------------------------------------------------- knobs

def test_knobs_from_env_parse_lists_ints_and_booleans():
    got = knobs_from_env({"SEEDS": "0, 1  2", "LOCAL": "no", "ONLINE_METHODS": "ppo,blendrl_ppo",
                          "ONLINE_STEPS": " 4096 ", "USE_LARGE_DATASET_PATH": "TRUE",
                          "UNRELATED": "x"})
    assert got == {"seeds": (0, 1, 2), "local": False, "online_methods": ("ppo", "blendrl_ppo"),
                   "online_steps": 4096, "use_large_dataset_path": True}


def test_knobs_from_env_names_every_bad_variable():
    with pytest.raises(ConfigError) as e:
        knobs_from_env({"ONLINE_STEPS": "ten", "LOCAL": "maybe", "SEEDS": "0 x"})
    assert len(e.value.problems) == 3
    text = str(e.value)
    assert "ONLINE_STEPS" in text and "'ten'" in text
    assert "LOCAL" in text and "1/0, true/false" in text
    assert "SEEDS" in text and "'x'" in text


def _sh_knobs() -> dict[str, tuple[str, str]]:
    """``NAME -> (default, comment)`` of every ``: "${NAME=default}"  # comment`` line."""
    text = (ROOT / "run_full_cycle.sh").read_text()
    return {m[1]: (m[2], m[3]) for m in
            re.finditer(r'^: "\$\{([A-Z_]+)=([^}]*)\}"\s*#\s*(\S.*)$', text, re.M)}


def test_shell_knobs_match_the_knob_table_the_flags_and_their_defaults():
    sh = _sh_knobs()
    assert list(sh) == [k.env_var for k in KNOBS]  # same knobs, same order, each commented
    text = (ROOT / "run_full_cycle.sh").read_text()
    exported = set(re.search(r"^export ((?:[A-Z_]+\s*\\?\s*)+)", text, re.M)[1].replace("\\", " ").split())
    assert exported == set(sh)
    # the script's default of each knob is the default of the flag it feeds
    assert knobs_from_env({name: default for name, (default, _) in sh.items()}) == \
        {k.field: getattr(run_full_cycle.Args(), k.field) for k in KNOBS}


def test_shell_script_holds_the_knob_table_verbatim():
    """The knob block of run_full_cycle.sh is what the table prints (``python -m
    blendrl.launch.knobs`` after a change of the table), and bash, running it in an empty
    environment, exports each knob's default as the flag's default."""
    from blendrl.launch.knobs import sh_block

    text = (ROOT / "run_full_cycle.sh").read_text()
    block = sh_block()
    assert block in text, "run_full_cycle.sh's knobs differ from blendrl/launch/knobs.py's table"
    out = subprocess.run(["bash", "-c", block + "env -0"], env={"PATH": os.environ["PATH"]},
                         capture_output=True, text=True, check=True).stdout
    exported = dict(item.split("=", 1) for item in out.split("\0") if "=" in item)
    assert knobs_from_env(exported) == {k.field: getattr(run_full_cycle.Args(), k.field) for k in KNOBS}
    assert len(knobs_from_env(exported)) == len(KNOBS)
    # a value set from outside wins over the default
    out = subprocess.run(["bash", "-c", block + "env -0"],
                         env={"PATH": os.environ["PATH"], "SEEDS": "3 4"},
                         capture_output=True, text=True, check=True).stdout
    assert "SEEDS=3 4" in out.split("\0")


def test_every_flag_the_plan_emits_parses_with_its_scripts_own_args(tmp_path):
    """Each training job's command, with --resume as SLURM's requeue adds it, parses with the
    tyro Args of the very script it runs (read from that script), and the knobs arrive as the
    fields they are meant to set; a flag renamed in a script, or a knob mapped to a wrong flag,
    fails here."""
    import runpy

    import tyro

    cfg = config(tmp_path, experiment_id="f", environment="mountaincar", online_steps=4096,
                 offline_epochs=3, intervals_count=4, eval_episodes=6, eval_policy="greedy",
                 seeds=(0, 7), blendrl_online_extra_args="--soft_or logsumexp",
                 blendrl_offline_extra_args="--offline_blend_ent_coef 0.01",
                 scripts_dir=str(ROOT))
    plan = build_plan(cfg, threads=2, decide=lambda job, paths: pytest.fail("nothing exists"))
    jobs = plan.training_jobs
    assert {j.method for j in jobs} == {m.id for m in METHOD_TABLE}
    for job in jobs:
        script = Path(job.command[1])
        args_name = re.search(r"main\(cli\((\w+)\)", script.read_text())[1]
        args_cls = runpy.run_path(str(script), run_name="plan_flags_check")[args_name]
        args = tyro.cli(args_cls, args=job.command[2:] + ["--resume"])
        assert (args.env, args.seed, args.run_id, args.exp_id) == \
            ("mountaincar", job.seed, job.run_id, "f")
        assert (args.intervals, args.eval_episodes, args.eval_policy, args.threads) == \
            (4, 6, "greedy", 2)
        assert args.resume
        if job.kind == "online":
            assert args.total_timesteps == 4096 and args.save_dataset
        else:
            assert args.epochs == 3 and args.dataset_run_id.startswith("f_")
        if METHOD_INFO[job.method].blendrl:
            assert ("--soft_or" in job.command) == (job.kind == "online")


def test_managed_flags_are_the_knob_and_job_flags():
    from blendrl.launch.flags import managed_flags

    assert set(managed_flags("online")) == {"env", "total_timesteps", "seed", "run_id", "exp_id",
                                            "save_dataset", "dataset_dir", "runs_dir", "intervals",
                                            "eval_episodes", "eval_policy", "eval_video", "threads",
                                            "resume"}
    assert set(managed_flags("offline")) == {"dataset_run_id", "dataset_dir", "env", "run_id",
                                             "exp_id", "epochs", "intervals", "eval_episodes",
                                             "eval_policy", "eval_video", "seed", "threads",
                                             "runs_dir", "resume", "follow"}


def test_shell_script_ends_by_setting_up_the_venv_and_exec_python():
    lines = [ln for ln in (ROOT / "run_full_cycle.sh").read_text().splitlines() if ln.strip()]
    assert "scripts/setup_venv.sh" in lines[-2]
    assert lines[-1].startswith("exec ") and 'run_full_cycle.py" "$@"' in lines[-1]


# --------------------------------------------------------------------------- validation

def test_valid_config_paths(tmp_path):
    cfg = config(tmp_path, seeds=(3, 1))
    assert cfg.work_dir == tmp_path / "work"
    assert cfg.runs_dir == tmp_path / "work" / "out" / "runs"
    assert cfg.dataset_dir == tmp_path / "work" / "offline_dataset"
    assert cfg.exp_logs_dir == tmp_path / "work" / "logs" / "default_cartpole"
    assert cfg.script("blendrl_ppo") == tmp_path / "scripts" / "train_blenderl.py"
    assert cfg.seeds == (3, 1)
    big = config(tmp_path, use_large_dataset_path=True, large_dataset_path="big/data")
    assert big.dataset_dir == tmp_path / "big" / "data"  # relative to the cwd given


def test_every_problem_is_reported_at_once_with_the_valid_values(tmp_path):
    with pytest.raises(ConfigError) as e:
        config(tmp_path, experiment_id="../x", environment="pong", online_methods=("ppo", "dqn"),
               offline_methods=("cql",), online_steps=0, eval_episodes=-1, seeds=(1, 1),
               use_large_dataset_path=True, large_dataset_path="", eval_policy="argmax")
    text = str(e.value)
    assert "'../x' is not safe" in text
    assert "unknown environment 'pong'; valid: " + ", ".join(ENV_NAMES) in text
    assert "unknown method 'dqn'; valid: ppo, blendrl_ppo" in text
    assert "unknown method 'cql'; valid: iql, blendrl_iql" in text
    assert "ONLINE_STEPS must be a positive whole number, got 0" in text
    assert "EVAL_EPISODES must be a positive whole number, got -1" in text
    assert "SEEDS lists a seed twice" in text
    assert "LARGE_DATASET_PATH is empty" in text
    assert "EVAL_POLICY 'argmax' is not one of sample, greedy" in text
    assert len(e.value.problems) == 9


@pytest.mark.parametrize("exp_id", ["a b", "x;rm -rf", "-x", "", "a/b", "é", "x" * 65, "$(id)"])
def test_unsafe_experiment_ids_are_refused(tmp_path, exp_id):
    with pytest.raises(ConfigError, match="EXPERIMENT_ID"):
        config(tmp_path, experiment_id=exp_id)


def test_pass_through_args_may_not_set_the_managed_flags(tmp_path):
    with pytest.raises(ConfigError) as e:
        config(tmp_path, online_extra_args="--learning_rate 1e-3 --run-id x",
               offline_extra_args="--epochs=3", cluster_extra="--qos=short stray")
    text = str(e.value)
    assert "ONLINE_EXTRA_ARGS: --run-id is set by the launcher" in text
    assert "OFFLINE_EXTRA_ARGS: --epochs is set by the launcher" in text
    assert "CLUSTER_EXTRA: 'stray' is not an sbatch option" in text
    ok = config(tmp_path, online_extra_args="--learning_rate 1e-3 --hidden 32")
    assert ok.online_extra_args == ("--learning_rate", "1e-3", "--hidden", "32")
    # nor undo them with tyro's negation of a boolean flag
    with pytest.raises(ConfigError) as e:
        config(tmp_path, online_extra_args="--no-save-dataset", offline_extra_args="--no_resume")
    assert "ONLINE_EXTRA_ARGS: --no-save-dataset is set by the launcher" in str(e.value)
    assert "OFFLINE_EXTRA_ARGS: --no_resume is set by the launcher" in str(e.value)
    assert config(tmp_path, online_extra_args="--no-anneal_lr").online_extra_args == ("--no-anneal_lr",)
    # following is OFFLINE_START's: the plan starts a follower with its online job
    with pytest.raises(ConfigError, match="OFFLINE_EXTRA_ARGS: --follow is set by the launcher"):
        config(tmp_path, offline_extra_args="--follow")


@pytest.mark.parametrize("knob", [k for k in KNOBS if k.minimum is not None], ids=lambda k: k.env_var)
def test_each_knob_with_a_minimum_refuses_less(tmp_path, knob):
    with pytest.raises(ConfigError, match=f"{knob.env_var} must be"):
        config(tmp_path, **{knob.field: knob.minimum - 1})
    assert getattr(config(tmp_path, **{knob.field: knob.minimum}), knob.config or "slurm") is not None


def test_the_environment_knob_names_every_environment():
    """The doc is the registry's names (the knob block of run_full_cycle.sh too, reprinted after
    an environment is added: test_shell_script_holds_the_knob_table_verbatim)."""
    from blendrl.launch.knobs import KNOB_BY_VAR

    doc = KNOB_BY_VAR["ENVIRONMENT"].doc
    assert doc.split(" | ") == list(ENV_NAMES)


def test_every_flag_the_launcher_sets_is_managed(tmp_path):
    """Pass-through arguments may not set again any flag the plan sets itself: each flag of a
    planned command without pass-through arguments is a managed flag of its kind."""
    from blendrl.launch.flags import managed_flags

    # a boolean knob's flag only when on; --follow only with OFFLINE_START=follow
    cfg = config(tmp_path, experiment_id="m", eval_video=True, offline_start="follow")
    for job in build_plan(cfg, threads=1, decide=lambda job, paths: True).training_jobs:
        flags = {w[2:] for w in job.command[2:] if w.startswith("--")}
        assert flags <= set(managed_flags(job.kind)) - {"resume"}, job.name
        assert set(managed_flags(job.kind)) - flags == {"resume"}  # --resume: added on requeue


def test_unbalanced_quotes_in_pass_through_args(tmp_path):
    with pytest.raises(ConfigError, match="ONLINE_EXTRA_ARGS: cannot split"):
        config(tmp_path, online_extra_args="--x 'unclosed")


def test_offline_methods_need_a_dataset_source_and_something_must_run(tmp_path):
    with pytest.raises(ConfigError, match="OFFLINE_DATASETS is empty"):
        config(tmp_path, offline_datasets=())
    with pytest.raises(ConfigError, match="both empty"):
        config(tmp_path, online_methods=(), offline_methods=())


@pytest.mark.parametrize("text,seconds", [("5", 300), ("1:30", 90), ("2:00:05", 7205),
                                          ("1-2", 93600), ("1-0:10", 87000), ("1-1:1:1", 90061)])
def test_slurm_time_formats(text, seconds):
    assert slurm_time_seconds(text) == seconds


def test_signal_margin_must_fit_in_the_time_limit(tmp_path):
    with pytest.raises(ConfigError, match="CLUSTER_SIGNAL_MARGIN 60 s is not shorter than CLUSTER_TIME 1 "):
        config(tmp_path, cluster_time="1", cluster_signal_margin=60)
    with pytest.raises(ConfigError, match="CLUSTER_TIME: invalid time '1h'"):
        config(tmp_path, cluster_time="1h")
    assert config(tmp_path, cluster_time="1", cluster_signal_margin=50).slurm.signal_margin == 50


@pytest.mark.parametrize("cores,setting,expected", [
    (2, 0, (2, 1)), (8, 2, (2, 4)), (8, 3, (3, 2)), (16, 1, (1, 16)), (2, 5, (2, 1)), (1, 0, (1, 1))])
def test_local_parallelism_never_oversubscribes(cores, setting, expected):
    parallel, threads, note = local_parallelism(cores, setting)
    assert (parallel, threads) == expected
    assert parallel * threads <= cores
    assert (note is not None) == (setting > cores)


# --------------------------------------------------------------------------- the plan

def test_plan_run_ids_commands_and_dependencies(tmp_path):
    cfg = config(tmp_path, experiment_id="e", seeds=(0, 1), online_methods=("ppo",),
                 offline_methods=("iql", "blendrl_iql"), offline_datasets=("ppo",),
                 online_steps=4096, offline_epochs=3, intervals_count=2, eval_episodes=7,
                 online_extra_args="--hidden 32")
    plan = build_plan(cfg, threads=2, decide=lambda job, paths: pytest.fail("nothing exists"))
    names = [j.name for j in plan.jobs]
    assert names == ["e_ppo_cartpole_s0", "e_ppo_cartpole_s1",
                     "e_iql_on_ppo_cartpole_s0", "e_iql_on_ppo_cartpole_s1",
                     "e_blendrl_iql_on_ppo_cartpole_s0", "e_blendrl_iql_on_ppo_cartpole_s1", PLOT_JOB]
    online, offline, plot = plan.jobs[0], plan.jobs[3], plan.jobs[-1]
    # the knob flags in the knob table's order, then the job's own, then the pass-through ones
    assert online.command == [
        "/usr/bin/python3", str(tmp_path / "scripts" / "train_neuralppo.py"), "--exp_id", "e",
        "--env", "cartpole", "--total_timesteps", "4096", "--intervals", "2",
        "--eval_episodes", "7", "--eval_policy", "sample", "--seed", "0",
        "--run_id", "e_ppo_cartpole_s0", "--save_dataset", "--dataset_dir", "offline_dataset",
        "--runs_dir", "out/runs", "--threads", "2", "--hidden", "32"]
    assert offline.command == [
        "/usr/bin/python3", str(tmp_path / "scripts" / "train_iql.py"), "--exp_id", "e",
        "--env", "cartpole", "--epochs", "3", "--intervals", "2", "--eval_episodes", "7",
        "--eval_policy", "sample", "--seed", "1", "--dataset_run_id", "e_ppo_cartpole_s1",
        "--dataset_dir", "offline_dataset", "--run_id", "e_iql_on_ppo_cartpole_s1",
        "--runs_dir", "out/runs", "--threads", "2"]
    assert offline.depends_on == ["e_ppo_cartpole_s1"] and offline.dependency == "afterok"
    assert online.depends_on == []
    assert plot.command[2:] == ["e", "--runs_dir", "out/runs", "--output_dir", "plots"]
    assert plot.dependency == AFTERANY and plot.depends_on == names[:-1]
    assert not plan.skipped and not plan.remove


def test_plan_datasets_outside_the_work_dir_are_absolute(tmp_path):
    cfg = config(tmp_path, use_large_dataset_path=True, large_dataset_path="/big/ds")
    job = build_plan(cfg, 1, lambda j, p: False).jobs[0]
    assert job.command[job.command.index("--dataset_dir") + 1] == "/big/ds"
    assert job.dataset_dir == "/big/ds/default_cartpole_ppo_cartpole_s0"


def _mkrun(path: Path, manifest: bool = False) -> None:
    path.mkdir(parents=True)
    (path / ("manifest.json" if manifest else "run.json")).write_text("{}")


def test_plan_offline_source_on_disk_planned_or_missing(tmp_path):
    work = tmp_path / "work"
    # blendrl_ppo's dataset of seed 0 exists from an earlier run; seed 1's does not.
    _mkrun(work / "offline_dataset" / "e_blendrl_ppo_cartpole_s0", manifest=True)
    cfg = config(tmp_path, experiment_id="e", seeds=(0, 1), online_methods=("ppo",),
                 offline_methods=("iql",), offline_datasets=("ppo", "blendrl_ppo"))
    plan = build_plan(cfg, 1, lambda j, p: pytest.fail("nothing exists"))
    jobs = {j.name: j for j in plan.jobs}
    assert jobs["e_iql_on_ppo_cartpole_s0"].depends_on == ["e_ppo_cartpole_s0"]
    assert jobs["e_iql_on_blendrl_ppo_cartpole_s0"].depends_on == []  # on disk: no dependency
    assert "e_iql_on_blendrl_ppo_cartpole_s1" not in jobs
    (name, reason), = plan.skipped
    assert name == "e_iql_on_blendrl_ppo_cartpole_s1"
    assert "neither exists nor is produced by this plan" in reason and "blendrl_ppo" in reason


def test_plan_existing_runs_overwrite_or_skip(tmp_path):
    work = tmp_path / "work"
    _mkrun(work / "out" / "runs" / "e_ppo_cartpole_s0")
    _mkrun(work / "offline_dataset" / "e_ppo_cartpole_s0", manifest=True)
    _mkrun(work / "out" / "runs" / "e_iql_on_ppo_cartpole_s0")
    cfg = config(tmp_path, experiment_id="e", online_methods=("ppo",), offline_methods=("iql",),
                 offline_datasets=("ppo",))
    asked = []

    def overwrite(job, paths):
        asked.append((job.name, paths))
        return True

    plan = build_plan(cfg, 1, overwrite)
    assert asked == [("e_ppo_cartpole_s0", [work / "out/runs/e_ppo_cartpole_s0",
                                            work / "offline_dataset/e_ppo_cartpole_s0"]),
                     ("e_iql_on_ppo_cartpole_s0", [work / "out/runs/e_iql_on_ppo_cartpole_s0"])]
    # overwriting the online run replaces its dataset too; the offline job now waits for it
    assert plan.remove == [work / "out/runs/e_ppo_cartpole_s0",
                           work / "offline_dataset/e_ppo_cartpole_s0",
                           work / "out/runs/e_iql_on_ppo_cartpole_s0"]
    assert [j.depends_on for j in plan.training_jobs] == [[], ["e_ppo_cartpole_s0"]]

    # skipping the online run: the offline job uses the dataset on disk, without dependency
    plan = build_plan(cfg, 1, lambda job, paths: job.kind == "offline")
    assert [j.name for j in plan.jobs] == ["e_iql_on_ppo_cartpole_s0", PLOT_JOB]
    assert plan.jobs[0].depends_on == []
    assert plan.skipped[0][0] == "e_ppo_cartpole_s0" and not plan.remove[1:]

    # skipping everything: nothing to run, not even the plots
    plan = build_plan(cfg, 1, lambda job, paths: False)
    assert plan.jobs == [] and len(plan.skipped) == 2


def test_interactive_decider_asks_until_it_gets_y_or_n(tmp_path):
    answers = iter(["maybe", "Y"])
    out = io.StringIO()
    console = cli.Console(out=out, interactive=True, ask=lambda prompt: next(answers))
    decide = cli._decider(request(), console)
    job = build_plan(config(tmp_path), 1, lambda j, p: False).jobs[0]
    assert decide(job, [Path("/x")]) is True
    assert "please answer y or n" in out.getvalue()

    def eof(prompt):
        raise EOFError
    asking = cli.Console(out=out, interactive=True, ask=eof)
    assert cli._decider(request(), asking)(job, []) is False
    quiet = cli.Console(out=out, interactive=False, ask=lambda p: pytest.fail("must not ask"))
    assert cli._decider(request(), quiet)(job, [Path("/x")]) is False
    assert "no terminal to ask" in out.getvalue()
    assert cli._decider(request(overwrite=True), quiet)(job, [Path("/x")]) is True


# --------------------------------------------------------------------------- the registry

def _entries(*specs) -> list[dict]:
    """``(name, depends_on, dependency)`` -> registry entries."""
    return [new_job_entry({"name": n, "kind": "online", "command": ["true"], "depends_on": d,
                           "dependency": dep}, Path(f"/logs/{n}.log")) for n, d, dep in specs]


def test_registry_round_trip_archive_and_unchanged_updates_do_not_write(tmp_path):
    reg = Registry(tmp_path / "logs" / "e")
    with pytest.raises(RegistryError, match="no job registry"):
        reg.read()
    reg.create({"exp_id": "e", "mode": "local", "jobs": _entries(("a", [], "afterok"))})
    first = reg.read()
    assert first["format_version"] == 1 and first["jobs"][0]["state"] == PENDING
    mtime = reg.path.stat().st_mtime_ns
    with reg.update() as data:
        pass
    assert reg.path.stat().st_mtime_ns == mtime
    with reg.update() as data:
        data["jobs"][0]["state"] = DONE
    assert reg.read()["jobs"][0]["state"] == DONE
    reg.create({"exp_id": "e", "mode": "local", "jobs": []})
    archived = list(reg.dir.glob("registry.*.json"))
    assert len(archived) == 1 and json.loads(archived[0].read_text())["jobs"][0]["state"] == DONE
    assert [p.name for p in reg.dir.iterdir() if p.name.endswith(".tmp")] == []


def test_registry_refuses_a_foreign_file(tmp_path):
    reg = Registry(tmp_path)
    reg.path.write_text('{"jobs": []}')
    with pytest.raises(RegistryError, match="not a job registry"):
        reg.read()
    reg.path.write_text('{"jobs": [')
    with pytest.raises(RegistryError, match="cannot read"):
        reg.read()


def test_concurrent_updates_from_processes_lose_nothing(tmp_path):
    reg = Registry(tmp_path)
    reg.create({"exp_id": "e", "mode": "local", "jobs": [], "counter": 0})
    code = ("import sys; from blendrl.launch.registry import Registry\n"
            "r = Registry(sys.argv[1])\n"
            "for _ in range(25):\n"
            "    with r.update() as d: d['counter'] += 1\n")
    ps = [subprocess.Popen([sys.executable, "-c", code, str(tmp_path)], cwd=str(ROOT))
          for _ in range(4)]
    assert [p.wait(timeout=60) for p in ps] == [0] * 4
    assert reg.read()["counter"] == 100


def test_cancellation_propagates_through_afterok_only():
    data = {"jobs": _entries(("on", [], "afterok"), ("off", ["on"], "afterok"),
                             ("off2", ["off"], "afterok"), ("other", [], "afterok"),
                             ("plots", ["on", "off", "off2", "other"], "afterany"))}
    assert [j["name"] for j in ready_jobs(data)] == ["on", "other"]
    finish_job(data["jobs"][0], FAILED, 3, "exit 3")
    assert propagate_cancellations(data) == ["off", "off2"]
    off2 = data["jobs"][2]
    assert off2["state"] == CANCELLED and off2["reason"] == "upstream off cancelled"
    assert data["jobs"][1]["reason"] == "upstream on failed (exit 3)"
    assert ready_jobs(data) == [data["jobs"][3]]  # plots waits for 'other' to end
    finish_job(data["jobs"][3], DONE, 0, None)
    assert [j["name"] for j in ready_jobs(data)] == ["plots"]


def test_an_interrupted_job_cancels_its_afterok_dependents_but_not_the_plots():
    data = {"jobs": _entries(("on", [], "afterok"), ("off", ["on"], "afterok"),
                             ("plots", ["on", "off"], "afterany"))}
    finish_job(data["jobs"][0], INTERRUPTED, 75, "interrupted after checkpointing (exit 75)")
    assert propagate_cancellations(data) == ["off"]
    assert data["jobs"][1]["reason"] == "upstream on interrupted (exit 75)"
    assert [j["name"] for j in ready_jobs(data)] == ["plots"]


def test_a_cancelled_job_stays_cancelled_when_its_exit_arrives():
    job = _entries(("a", [], "afterok"))[0]
    job["state"] = RUNNING
    finish_job(job, CANCELLED, None, "killed")
    finish_job(job, FAILED, 75, "exit 75")
    assert (job["state"], job["exit_code"], job["reason"]) == (CANCELLED, 75, "killed")


# --------------------------------------------------------------------------- process identity

def test_process_identity_needs_pid_and_start_time():
    p = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"], process_group=0)
    try:
        start = procs.start_time(p.pid)
        assert start is not None and procs.is_alive(p.pid, start)
        assert not procs.is_alive(p.pid, start + 1)  # same pid, other start: not ours
        assert not procs.signal_group(p.pid, start + 1, signal.SIGTERM)
        time.sleep(0.2)
        assert p.poll() is None  # it was not signalled
        assert procs.group_members(p.pid) == [p.pid]
        assert procs.signal_group(p.pid, start, signal.SIGTERM)
        p.wait(timeout=10)
        assert not procs.is_alive(p.pid, start) and not procs.group_alive(p.pid)
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()


def test_a_zombie_is_not_alive():
    p = subprocess.Popen(["true"])
    deadline = time.monotonic() + 10
    while (procs._stat_fields(p.pid) or ["?"])[0] != "Z" and time.monotonic() < deadline:
        time.sleep(0.02)
    assert procs._stat_fields(p.pid)[0] == "Z"  # exited, not reaped yet
    assert not procs.is_alive(p.pid)
    p.wait()


def test_terminate_escalates_to_sigkill_for_groups_and_single_processes():
    stubborn = subprocess.Popen(
        [sys.executable, "-c", "import signal, time, sys\n"
         "signal.signal(signal.SIGTERM, signal.SIG_IGN); print('ready', flush=True)\n"
         "time.sleep(60)"], process_group=0, stdout=subprocess.PIPE, text=True)
    polite = subprocess.Popen([sys.executable, "-c", "import time; print('ready', flush=True);"
                               " time.sleep(60)"], process_group=0, stdout=subprocess.PIPE, text=True)
    try:
        assert stubborn.stdout.readline().strip() == "ready" == polite.stdout.readline().strip()
        stubborn_t = procs.Target(stubborn.pid, procs.start_time(stubborn.pid))
        polite_t = procs.Target(polite.pid, procs.start_time(polite.pid), group=False)
        # a recorded start time that is not the process's: never signalled
        impostor = procs.Target(polite.pid, procs.start_time(polite.pid) + 1, group=False)
        assert not impostor.ours() and not impostor.signal(signal.SIGTERM)
        killed = procs.terminate([stubborn_t, polite_t], grace=1.0)
        assert killed == [stubborn_t]
        assert stubborn.wait(timeout=10) == -signal.SIGKILL
        assert polite.wait(timeout=10) == -signal.SIGTERM
        assert not stubborn_t.ours() and not polite_t.ours()
    finally:
        for p in (stubborn, polite):
            if p.poll() is None:
                p.kill()
                p.wait()


# --------------------------------------------------------------------------- SLURM scripts and states

def _job(resumable=True, **over) -> dict:
    job = {"name": "e_ppo_cartpole_s0", "kind": "online", "command": ["/py", "train.py", "--x", "a b"],
           "depends_on": [], "dependency": "afterok", "resumable": resumable, "threads": 3,
           "run_dir": "/w/out/runs/e_ppo_cartpole_s0"}
    job.update(over)
    return job


def test_sbatch_script_directives_and_syntax(tmp_path):
    opts = SlurmOptions(partition="gpu", time="1:00:00", cpus=3, mem="8G", gpus="a100:1",
                        account="lab", extra=("--qos=short",), signal_margin=120)
    # an offline job: CLUSTER_GPUS reaches it (online jobs ask for CLUSTER_ONLINE_GPUS, 0)
    text = slurm.render_script(_job(kind="offline"), exp_id="e", work_dir=Path("/w"),
                               log=Path("/w/logs/e/j.log"), opts=opts,
                               venv_activate=Path("/w/.venv/bin/activate"))
    directives = re.findall(r"^#SBATCH (\S+)$", text, re.M)
    assert directives == ["--job-name=e.e_ppo_cartpole_s0", "--output=/w/logs/e/j.log",
                          "--error=/w/logs/e/j.log", "--open-mode=append", "--chdir=/w",
                          "--ntasks=1", "--cpus-per-task=3", "--time=1:00:00", "--partition=gpu",
                          "--account=lab", "--mem=8G", "--gpus=a100:1", "--requeue",
                          "--signal=B:USR1@120", "--qos=short"]
    assert "(trap '' USR1; exec /py train.py --x 'a b' \"${resume[@]}\") &" in text
    assert "export OMP_NUM_THREADS=3 MKL_NUM_THREADS=3" in text
    assert "CUDA_VISIBLE_DEVICES" not in text  # SLURM sets it to the job's GPU
    assert "scontrol requeue \"$SLURM_JOB_ID\"" in text
    assert ". /w/.venv/bin/activate" in text
    (tmp_path / "j.sbatch").write_text(text)
    assert subprocess.run(["bash", "-n", str(tmp_path / "j.sbatch")]).returncode == 0
    # a job resubmitted by --resume has --resume in its command: a requeue does not add it twice
    resumed = slurm.render_script(_job(command=["/py", "train.py", "--resume"]), exp_id="e",
                                  work_dir=Path("/w"), log=Path("/w/l.log"), opts=opts,
                                  venv_activate=None)
    assert "exec /py train.py --resume \"${resume[@]}\") &" in resumed
    assert "resume=(--resume)" not in resumed and "resume=(--resume)" in text
    plot = slurm.render_script(_job(resumable=False, kind="plot", run_dir=None), exp_id="e",
                               work_dir=Path("/w"), log=Path("/w/l.log"), opts=opts, venv_activate=None)
    assert "--requeue" not in plot and "--signal" not in plot and "scontrol requeue" not in plot
    assert "--gpus" not in plot and "\nexport CUDA_VISIBLE_DEVICES=  #" in plot  # asked for none


def test_sbatch_submission_commands():
    s = Path("/w/logs/e/x.sbatch")
    assert slurm.submit_command(s, [], "afterok") == ["sbatch", "--parsable", str(s)]
    assert slurm.submit_command(s, ["12"], "afterok") == [
        "sbatch", "--parsable", "--dependency=afterok:12", "--kill-on-invalid-dep=yes", str(s)]
    assert slurm.submit_command(s, ["12", "13"], "afterany") == [
        "sbatch", "--parsable", "--dependency=afterany:12:13", str(s)]


SHOW_JOB = ("JobId=41 JobName=e.x UserId=root(0) GroupId=root(0) Priority=1 Nice=0 Account=(null) "
            "QOS=(null) JobState={state} Reason={reason} Dependency=(null) Requeue=1 Restarts={restarts} "
            "BatchFlag=1 Reboot=0 ExitCode={code} RunTime=00:00:03 TimeLimit=00:01:00 "
            "StartTime=2026-11-24T08:00:00 EndTime=2026-11-24T08:00:03 WorkDir=/w")


@pytest.mark.parametrize("state,reason,code,restarts,expected", [
    ("PENDING", "Dependency", "0:0", "0", (PENDING, None, "PENDING (Dependency)", 0)),
    ("REQUEUED", "None", "0:0", "1", (PENDING, None, "REQUEUED", 1)),
    ("RUNNING", "None", "0:0", "1", (RUNNING, None, None, 1)),
    ("COMPLETED", "None", "0:0", "2", (DONE, 0, None, 2)),
    ("FAILED", "NonZeroExitCode", "3:0", "0", (FAILED, 3, "FAILED (NonZeroExitCode)", 0)),
    ("CANCELLED", "DependencyNeverSatisfied", "0:0", "0",
     (CANCELLED, 0, "CANCELLED (DependencyNeverSatisfied)", 0)),
    ("TIMEOUT", "TimeLimit", "0:15", "0", (FAILED, -15, "TIMEOUT (TimeLimit)", 0)),
    # checkpointed and exited 75 without being requeued (e.g. scancel): resumable
    ("FAILED", "NonZeroExitCode", "75:0", "0", (INTERRUPTED, 75, "FAILED (NonZeroExitCode)", 0)),
])
def test_slurm_states_in_registry_words(state, reason, code, restarts, expected):
    info = slurm.parse_show_job(SHOW_JOB.format(state=state, reason=reason, code=code,
                                                restarts=restarts))
    assert info["JobId"] == "41" and info["WorkDir"] == "/w"
    assert slurm.job_state(info) == expected


# --------------------------------------------------------------------------- the command line

def _main(tmp_path, **over):
    out, err = io.StringIO(), io.StringIO()
    code = cli.main(request(work_dir=str(tmp_path / "work"), scripts_dir=str(tmp_path / "scripts"),
                            **over), project_root=ROOT, cwd=tmp_path, python=sys.executable,
                    env_names=ENV_NAMES, console=cli.Console(out=out, err=err, interactive=False))
    return code, out.getvalue(), err.getvalue()


def test_cli_refuses_bad_input_before_any_work(tmp_path):
    code, _, err = _main(tmp_path, overwrite=True, skip_existing=True)
    assert code == 2 and "contradict" in err
    code, _, err = _main(tmp_path, environment="pong")
    assert code == 2 and "unknown environment 'pong'" in err and "nothing was started" in err
    code, _, err = _main(tmp_path)  # no scripts in scripts_dir
    assert code == 2 and "train_neuralppo.py does not exist" in err
    code, _, err = _main(tmp_path, status="nope")
    assert code == 1 and "no experiment 'nope'" in err
    code, _, err = _main(tmp_path, status="a;b")
    assert code == 2
    assert not (tmp_path / "work").exists()  # nothing was created


def test_cli_cluster_mode_needs_sbatch(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))  # no sbatch anywhere
    for name in ("train_neuralppo.py", "train_blenderl.py", "train_iql.py", "train_blendrl_iql.py",
                 "plot_results.py"):
        (tmp_path / "scripts").mkdir(exist_ok=True)
        (tmp_path / "scripts" / name).write_text("")
    code, _, err = _main(tmp_path, local=False)
    assert code == 2 and "sbatch/scontrol/scancel are not on PATH" in err
    code, out, _ = _main(tmp_path, local=False, dry_run=True)  # a dry run prints the scripts
    assert code == 0 and out.count("#SBATCH --requeue") == 6 and "dry run: nothing was started" in out
    assert not (tmp_path / "work").exists()


@pytest.mark.parametrize("env,local,expected", [
    ("cartpole", True, "local: 2 job(s) at once, 1 thread(s) each (8 cores)"),
    ("seaquest", True, "local: 2 job(s) at once, 4 thread(s) each (8 cores)"),
    ("seaquest", False, "SLURM: online jobs 4 CPU(s), 16G, no GPU, 4 thread(s); offline jobs 4 "
                        "CPU(s), 16G, no GPU, 4 thread(s); plot job 1 CPU(s), 2G, no GPU, 1 "
                        "thread(s)"),
    ("mountaincar", False, "SLURM: online jobs 4 CPU(s), 16G, no GPU, 1 thread(s); offline jobs 4 "
                           "CPU(s), 16G, no GPU, 1 thread(s); plot job 1 CPU(s), 2G, no GPU, 1 "
                           "thread(s)")])
def test_threads_per_job(tmp_path, monkeypatch, env, local, expected):
    monkeypatch.setenv("PATH", str(tmp_path))  # away from any cluster: no request is tested
    (tmp_path / "scripts").mkdir()
    for name in ("train_neuralppo.py", "train_blenderl.py", "train_iql.py", "train_blendrl_iql.py",
                 "plot_results.py"):
        (tmp_path / "scripts" / name).write_text("")
    out = io.StringIO()
    code = cli.main(request(work_dir=str(tmp_path / "w"), scripts_dir=str(tmp_path / "scripts"),
                            environment=env, local=local, max_parallel=2, dry_run=True),
                    project_root=ROOT, cwd=tmp_path, python=sys.executable, env_names=ENV_NAMES,
                    vector_envs=("cartpole", "mountaincar"),
                    console=cli.Console(out=out, interactive=False), cores=8)
    assert code == 0 and expected in out.getvalue()
    if not local:
        threads = expected.split(", ")[3].split()[0]
        assert out.getvalue().count(f"--threads {threads} ") == 6
        assert out.getvalue().count("#SBATCH --cpus-per-task=4") == 6


def test_run_full_cycle_exits_2_on_bad_environment_variables():
    env = {k: v for k, v in os.environ.items() if k not in {kn.env_var for kn in KNOBS}}
    env["INTERVALS_COUNT"] = "many"
    res = subprocess.run([sys.executable, str(ROOT / "run_full_cycle.py"), "--dry_run"], env=env,
                         capture_output=True, text=True, cwd=str(ROOT), timeout=60)
    assert res.returncode == 2
    assert "INTERVALS_COUNT: expected a whole number, got 'many'" in res.stderr


# --------------------------------------------------------------------------- status and waiting

def test_status_of_a_cluster_experiment_away_from_the_cluster_keeps_the_last_states(tmp_path,
                                                                                     monkeypatch):
    reg = Registry(tmp_path / "logs" / "e")
    entries = _entries(("a", [], "afterok"))
    entries[0].update(slurm_id="5", state=RUNNING)
    reg.create({"exp_id": "e", "mode": "slurm", "work_dir": "/w", "jobs": entries})
    monkeypatch.setenv("PATH", str(tmp_path))  # no scontrol here (e.g. after sync_logs.sh)
    data = monitor.refresh(reg)
    assert data["jobs"][0]["state"] == RUNNING
    text = monitor.status_text(data)
    assert "experiment e (slurm mode" in text and re.search(r"a\s+online\s+running\s+slurm 5", text)


def test_wait_gives_up_when_the_local_runner_is_gone(tmp_path):
    reg = Registry(tmp_path / "logs" / "e")
    dead = subprocess.Popen(["true"])
    dead.wait()
    reg.create({"exp_id": "e", "mode": "local", "work_dir": str(tmp_path), "max_parallel": 1,
                "runner": {"pid": dead.pid, "start_time": None, "state": RUNNING},
                "jobs": _entries(("a", [], "afterok"))})
    out = io.StringIO()
    assert monitor.wait(reg, out, poll=0.05, timeout=20) == 1
    text = out.getvalue()
    assert "the local runner is no longer running" in text
    assert "it stopped unexpectedly" in text and "not every job is done" in text


# --------------------------------------------------------------------------- --resume

def _old_registry(cfg, states: dict[str, str]) -> dict:
    """The registry of ``cfg``'s full plan with the given states (as the launcher writes it)."""
    plan = build_plan(cfg, 1, lambda job, existing: True)
    jobs = [new_job_entry(j.to_dict(), cfg.exp_logs_dir / f"{j.name}.log") for j in plan.jobs]
    for j in jobs:
        j["state"] = states[j["name"]]
    return {"exp_id": cfg.exp_id, "knobs": recorded_knobs(cfg), "jobs": jobs}


def _write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


ONE_OF_EACH = dict(experiment_id="e", online_methods=("ppo",), offline_methods=("iql",),
                   offline_datasets=("ppo",))


def test_knob_differences_name_each_knob_with_both_values(tmp_path):
    before = recorded_knobs(config(tmp_path))
    now = recorded_knobs(config(tmp_path, online_steps=4096, seeds=(0, 1),
                                online_extra_args="--ent_coef 0.1", max_parallel=1, local=False))
    assert knob_differences(before, now) == [
        "ONLINE_STEPS: 50000 when the experiment started, 4096 now",
        "SEEDS: '0' when the experiment started, '0 1' now",
        "ONLINE_EXTRA_ARGS: '' when the experiment started, '--ent_coef 0.1' now"]
    # where the datasets are is what the runs read and write: part of the experiment
    large = recorded_knobs(config(tmp_path, use_large_dataset_path=True, large_dataset_path="/big"))
    assert knob_differences(before, large) == [
        "USE_LARGE_DATASET_PATH/LARGE_DATASET_PATH (datasets folder): 'offline_dataset' when the "
        "experiment started, '/big' now"]


def test_resume_plan_continues_checkpoints_restarts_partial_runs_and_redraws_the_plots(tmp_path):
    cfg = config(tmp_path, **ONE_OF_EACH, seeds=(0, 1))
    on0, on1 = (cfg.runs_dir / f"e_ppo_cartpole_s{s}" for s in (0, 1))
    off0, off1 = (cfg.runs_dir / f"e_iql_on_ppo_cartpole_s{s}" for s in (0, 1))
    _write(on1 / "checkpoints" / "latest.pt", "ckpt")  # killed after checkpointing
    _write(off0 / "run.json", json.dumps({"run_id": off0.name, "exp_id": "e"}))  # no checkpoint
    old = _old_registry(cfg, {on0.name: DONE, on1.name: CANCELLED, off0.name: FAILED,
                              off1.name: CANCELLED, "plots": DONE})
    full = build_plan(cfg, 1, lambda job, existing: True)
    res = plan_resume(old, full, cfg)
    by = {e["name"]: e for e in res.entries}
    assert [e["name"] for e in res.entries] == [j["name"] for j in old["jobs"]]
    assert {n: e["resume"] for n, e in by.items()} == {
        on0.name: "kept", on1.name: "checkpoint", off0.name: "clean", off1.name: "start",
        "plots": "start"}
    assert by[on0.name]["state"] == DONE and by[on0.name] is not old["jobs"][0]
    assert by[on1.name]["command"][-1] == "--resume" and by[on1.name]["state"] == PENDING
    assert "--resume" not in by[off0.name]["command"] + by[off1.name]["command"]
    assert by[off0.name]["depends_on"] == [on0.name] and by[off1.name]["depends_on"] == [on1.name]
    assert by["plots"]["depends_on"] == [on0.name, on1.name, off0.name, off1.name]
    assert res.remove == [off0]  # an offline job's dataset is its input: never removed
    assert [e["name"] for e in res.to_run] == [on1.name, off0.name, off1.name, "plots"]
    # nothing left to do: every job is kept, the plots too
    done = _old_registry(cfg, {n: DONE for n in by})
    assert plan_resume(done, build_plan(cfg, 1, lambda j, e: True), cfg).to_run == []
    only_plots = _old_registry(cfg, {**{n: DONE for n in by}, "plots": FAILED})
    assert [e["name"] for e in plan_resume(only_plots, build_plan(cfg, 1, lambda j, e: True),
                                           cfg).to_run] == ["plots"]


def test_resume_removes_an_online_jobs_partial_run_and_dataset_only_when_they_are_its_own(tmp_path):
    cfg = config(tmp_path, **ONE_OF_EACH)
    run = cfg.runs_dir / "e_ppo_cartpole_s0"
    ds = cfg.dataset_dir / "e_ppo_cartpole_s0"
    _write(run / "run.json", json.dumps({"run_id": run.name, "exp_id": "e"}))
    _write(ds / "chunk_000000.tmp", "")  # no manifest yet: only partial files
    states = {"e_ppo_cartpole_s0": FAILED, "e_iql_on_ppo_cartpole_s0": CANCELLED, "plots": DONE}

    def resume():
        return plan_resume(_old_registry(cfg, states), build_plan(cfg, 1, lambda j, e: True), cfg)

    assert resume().remove == [run, ds]
    _write(ds / "manifest.json", json.dumps({"metadata": {"run_id": run.name, "exp_id": "e"}}))
    assert resume().remove == [run, ds]
    _write(ds / "manifest.json", json.dumps({"metadata": {"run_id": run.name, "exp_id": "other"}}))
    with pytest.raises(ResumeError) as e:
        resume()
    assert e.value.problems == [f"{ds} holds run 'e_ppo_cartpole_s0' of experiment 'other', not "
                                "'e_ppo_cartpole_s0' of 'e'; not removing it (move it away "
                                "yourself, then --resume)"]
    (ds / "manifest.json").unlink()
    _write(run / "run.json", "{half")
    with pytest.raises(ResumeError, match=f"cannot read {run / 'run.json'}"):
        resume()
    (run / "run.json").unlink()
    ds.rename(tmp_path / "elsewhere")
    ds.symlink_to(tmp_path / "elsewhere")
    with pytest.raises(ResumeError, match="is a symbolic link; not removing it"):
        resume()


def test_resume_refuses_a_registry_of_other_jobs_or_commands(tmp_path):
    cfg = config(tmp_path, **ONE_OF_EACH)
    old = _old_registry(cfg, {"e_ppo_cartpole_s0": DONE, "e_iql_on_ppo_cartpole_s0": FAILED,
                              "plots": DONE})
    fewer = config(tmp_path, **{**ONE_OF_EACH, "offline_methods": ()})
    with pytest.raises(ResumeError, match="job e_iql_on_ppo_cartpole_s0 of the registry is not a job"):
        plan_resume(old, build_plan(fewer, 1, lambda j, e: True), fewer)
    # a registry without recorded knobs (written before they were): the commands are compared,
    # all but the interpreter, the scripts' folder, --threads and --resume
    del old["knobs"]
    longer = config(tmp_path, **ONE_OF_EACH, offline_epochs=9)
    with pytest.raises(ResumeError, match="job e_iql_on_ppo_cartpole_s0: the command differs"):
        plan_resume(old, build_plan(longer, 1, lambda j, e: True), longer)
    assert plan_resume(old, build_plan(cfg, 4, lambda j, e: True), cfg).to_run
    assert command_key(["/a/python", "/x/train_iql.py", "--threads", "4", "--epochs", "5",
                        "--resume"]) == ["train_iql.py", "--epochs", "5"]
    # the order of the flags is not part of the key (a registry written when the launcher put
    # them in another order resumes), but the order of a flag given twice is (the last one wins)
    before = ["/p", "/x/train_iql.py", "--dataset_run_id", "r", "--env", "cartpole", "--seed", "1",
              "--threads", "2", "--beta", "3", "--save_dataset", "--beta", "5"]
    after = ["/q", "/y/train_iql.py", "--seed", "1", "--env", "cartpole", "--save_dataset",
             "--dataset_run_id", "r", "--beta", "3", "--beta", "5", "--resume"]
    assert command_key(before) == command_key(after) == [
        "train_iql.py", "--beta", "3", "--beta", "5", "--dataset_run_id", "r", "--env", "cartpole",
        "--save_dataset", "--seed", "1"]
    assert command_key(after[:-5] + ["--beta", "5", "--beta", "3"]) != command_key(after)


def test_cli_resume_refusals_come_before_any_work(tmp_path):
    code, _, err = _main(tmp_path, resume=True, overwrite=True)
    assert code == 2 and "--resume and --overwrite contradict" in err
    code, _, err = _main(tmp_path, detach=True, wait=True)
    assert code == 2 and "--detach and --wait contradict" in err
    assert not (tmp_path / "work").exists()


def test_eval_policy_knob_names_the_scripts_values(tmp_path):
    """The torch-free launcher's EVAL_POLICY values are the evaluation's own, and the knob reaches
    every online and offline command."""
    from blendrl.evaluation import EVAL_POLICIES as SCRIPT_POLICIES
    from blendrl.launch.knobs import EVAL_POLICIES

    assert EVAL_POLICIES == SCRIPT_POLICIES
    cfg = config(tmp_path, experiment_id="g", eval_policy="greedy", online_methods=("ppo",),
                 offline_methods=("iql",), offline_datasets=("ppo",))
    plan = build_plan(cfg, threads=1, decide=lambda job, paths: pytest.fail("nothing exists"))
    for job in plan.jobs[:-1]:
        i = job.command.index("--eval_policy")
        assert job.command[i + 1] == "greedy"


def test_blendrl_extra_args_reach_the_blendrl_scripts_only(tmp_path):
    """BLENDRL_*_EXTRA_ARGS carry the BlendRL-only flags (issue 17's reference options), which the
    neural scripts would refuse, to the BlendRL jobs alone."""
    cfg = config(tmp_path, experiment_id="b", online_methods=("ppo", "blendrl_ppo"),
                 offline_methods=("iql", "blendrl_iql"), offline_datasets=("ppo",),
                 blendrl_online_extra_args="--soft_or logsumexp --critic blended",
                 blendrl_offline_extra_args="--offline_blend_ent_coef 0.01")
    plan = build_plan(cfg, threads=1, decide=lambda job, paths: pytest.fail("nothing exists"))
    by_method = {j.method: j.command for j in plan.jobs if j.kind != "plot"}
    assert by_method["blendrl_ppo"][-4:] == ["--soft_or", "logsumexp", "--critic", "blended"]
    assert by_method["blendrl_iql"][-2:] == ["--offline_blend_ent_coef", "0.01"]
    assert "--soft_or" not in by_method["ppo"] and "--offline_blend_ent_coef" not in by_method["iql"]
    with pytest.raises(ConfigError, match="BLENDRL_ONLINE_EXTRA_ARGS: --seed is set by the launcher"):
        config(tmp_path, blendrl_online_extra_args="--seed 3")


def test_readme_knob_table_lists_every_knob():
    text = (ROOT / "README.md").read_text()
    table = text[text.index("| knob | meaning (default) |"):]
    table = table[:table.index("\n\n")]
    for knob in KNOBS:
        assert f"`{knob.env_var}`" in table, f"README's knob table lacks {knob.env_var}"
