"""Local mode with real processes: run_full_cycle.py, its detached runner, kill_experiments.sh,
the batch script's signal handling, and sync_logs.sh. The training scripts are stand-ins
(tests/test_launch_support.py) so each test takes seconds; test_launch_e2e.py runs the real ones."""

from __future__ import annotations

import fcntl
import json
import os
import pty
import select
import signal
import subprocess
import termios
import time
from pathlib import Path

import pytest

from blendrl.launch import procs, slurm
from blendrl.launch.config import SlurmOptions
from test_launch_support import (PY, ROOT, all_files, clean_env, read_trace, registry_of, run_cycle,
                                 wait_for, write_fake_scripts)


@pytest.fixture
def fake(tmp_path):
    """A work dir, stand-in scripts and a trace file."""
    scripts = write_fake_scripts(tmp_path / "scripts")
    work = tmp_path / "work"
    trace = tmp_path / "trace.jsonl"
    started = []

    def cycle(*args: str, env_extra: dict | None = None, **kw) -> subprocess.CompletedProcess:
        env = clean_env(FAKE_TRACE=str(trace), **(env_extra or {}))
        res = run_cycle(["--work_dir", str(work), "--scripts_dir", str(scripts), *args], env=env, **kw)
        started.append(res)
        return res

    yield type("Fake", (), {"work": work, "scripts": scripts, "trace": trace, "cycle": staticmethod(cycle)})
    # never leave a runner behind, whatever happened
    for reg in (work / "logs").glob("*/registry.json"):
        subprocess.run([str(ROOT / "kill_experiments.sh"), reg.parent.name, "--logs_dir",
                        str(work / "logs"), "--grace", "1"], capture_output=True, timeout=60)


def spans(trace: list[dict]) -> dict[str, tuple[float, float]]:
    """job -> (start, end) from the stand-ins' trace."""
    start = {e["job"]: e["t"] for e in trace if e["event"] == "start"}
    end = {e["job"]: e["t"] for e in trace if e["event"] in ("end", "fail", "term")}
    return {j: (start[j], end.get(j, float("inf"))) for j in start}


def test_cycle_runs_in_dependency_order_within_the_parallel_limit(fake):
    res = fake.cycle("--experiment_id", "e", "--seeds", "0", "1", "--max_parallel", "2", "--wait",
                     env_extra={"FAKE_SLEEP": "0.3"})
    assert res.returncode == 0, res.stdout + res.stderr
    assert "all jobs done" in res.stdout
    reg = registry_of(fake.work, "e")
    assert [j["state"] for j in reg["jobs"]] == ["done"] * 13
    assert reg["runner"]["state"] == "done" and not procs.is_alive(reg["runner"]["pid"])
    trace = read_trace(fake.trace)
    s = spans(trace)
    assert len(s) == 13
    for job in reg["jobs"]:
        for dep in job["depends_on"]:  # afterok / afterany: started after the upstream ended
            assert s[job["name"]][0] >= s[dep][1], (job["name"], dep)
    # never more than 2 at once, and jobs x threads within the cores
    events = sorted([(a, 1) for a, _ in s.values()] + [(b, -1) for _, b in s.values()],
                    key=lambda e: (e[0], e[1]))
    running = peak = 0
    for _, step in events:
        running += step
        peak = max(peak, running)
    assert peak <= 2
    for e in trace:  # cartpole: one torch thread per job, whatever the cores
        if e["event"] == "start" and e["script"] != "plot_results.py":
            assert e["argv"][e["argv"].index("--threads") + 1] == "1" and e["omp"] == "1"
    # the plots were drawn last, from all 12 runs
    assert s["plots"][0] >= max(b for j, (_, b) in s.items() if j != "plots")
    assert len((fake.work / "plots" / "e" / "timing.md").read_text().split()) == 12
    for job in reg["jobs"]:
        log = Path(job["log"]).read_text()
        assert log.startswith(f"=== {job['name']} started") and f"=== {job['name']} ended" in log

    # a second run finds every run on disk: with --skip_existing it does nothing new
    registry_bytes = (fake.work / "logs" / "e" / "registry.json").read_bytes()
    files = {p: p.stat().st_mtime_ns for p in fake.work.rglob("*") if p.is_file()}
    again = fake.cycle("--experiment_id", "e", "--seeds", "0", "1", "--skip_existing", "--wait")
    assert again.returncode == 0
    assert "nothing to run" in again.stdout and again.stdout.count("(--skip_existing)") == 12
    assert len(read_trace(fake.trace)) == len(trace)
    assert (fake.work / "logs" / "e" / "registry.json").read_bytes() == registry_bytes
    assert {p: p.stat().st_mtime_ns for p in fake.work.rglob("*") if p.is_file()} == files
    # without a terminal and without a flag: skipped too, saying why
    quiet = fake.cycle("--experiment_id", "e", "--seeds", "0", "1")
    assert quiet.returncode == 0 and quiet.stdout.count("no terminal to ask") == 12
    assert len(read_trace(fake.trace)) == len(trace)

    # --overwrite replaces an online run together with its dataset, and reruns its dependents
    marker = fake.work / "offline_dataset" / "e_ppo_cartpole_s0" / "stale.txt"
    marker.write_text("old")
    over = fake.cycle("--experiment_id", "e", "--seeds", "0", "--online_methods", "ppo",
                      "--offline_methods", "iql", "--offline_datasets", "ppo", "--overwrite", "--wait")
    assert over.returncode == 0, over.stdout + over.stderr
    assert not marker.exists() and "removing " + str(marker.parent) in over.stdout
    rerun = [e["job"] for e in read_trace(fake.trace)[len(trace):] if e["event"] == "start"]
    assert rerun == ["e_ppo_cartpole_s0", "e_iql_on_ppo_cartpole_s0", "plots"]
    assert len(list((fake.work / "logs" / "e").glob("registry.*.json"))) == 1  # the old one kept


def test_failed_online_job_cancels_its_offline_jobs_which_never_start(fake):
    res = fake.cycle("--experiment_id", "f", "--offline_methods", "iql", "--max_parallel", "1",
                     "--wait", env_extra={"FAKE_FAIL": "f_ppo_cartpole_s0"})
    assert res.returncode == 1
    jobs = {j["name"]: j for j in registry_of(fake.work, "f")["jobs"]}
    assert (jobs["f_ppo_cartpole_s0"]["state"], jobs["f_ppo_cartpole_s0"]["exit_code"]) == ("failed", 3)
    off = jobs["f_iql_on_ppo_cartpole_s0"]
    assert off["state"] == "cancelled" and off["pid"] is None and off["started_at"] is None
    assert off["reason"] == "upstream f_ppo_cartpole_s0 failed (exit 3)"
    assert jobs["f_iql_on_blendrl_ppo_cartpole_s0"]["state"] == "done"
    assert jobs["plots"]["state"] == "done"  # the plots are drawn from what finished
    started = {e["job"] for e in read_trace(fake.trace) if e["event"] == "start"}
    assert "f_iql_on_ppo_cartpole_s0" not in started
    assert not (fake.work / "out" / "runs" / "f_iql_on_ppo_cartpole_s0").exists()
    assert not Path(off["log"]).exists()
    status = fake.cycle("--status", "f")
    assert status.returncode == 0
    line = next(ln for ln in status.stdout.splitlines() if "f_iql_on_ppo_cartpole_s0" in ln)
    assert "cancelled" in line and "upstream f_ppo_cartpole_s0 failed" in line
    assert "5 jobs: 3 done, 0 running, 0 pending, 0 interrupted, 1 failed, 1 cancelled" in status.stdout


def test_runner_is_detached_and_survives_the_shell_that_started_it(fake):
    env = clean_env(FAKE_TRACE=str(fake.trace), FAKE_SLEEP="1.5")
    cmd = (f"{PY} {ROOT / 'run_full_cycle.py'} --work_dir {fake.work} --scripts_dir {fake.scripts} "
           "--experiment_id d --online_methods ppo --offline_methods iql --offline_datasets ppo "
           "--max_parallel 1; sleep 60")
    shell = subprocess.Popen(["bash", "-c", cmd], env=env, start_new_session=True,
                             stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL)
    try:
        reg_path = fake.work / "logs" / "d" / "registry.json"
        wait_for(lambda: reg_path.exists() and json.loads(reg_path.read_text())["jobs"][0]["pid"],
                 30, "the first job to start")
        reg = json.loads(reg_path.read_text())
        runner, job = reg["runner"]["pid"], reg["jobs"][0]["pid"]
        assert os.getsid(runner) != os.getsid(shell.pid)  # its own session: no terminal, no SIGHUP
        assert os.getpgid(job) == job != os.getpgid(runner)  # the job is its own process group
        os.killpg(shell.pid, signal.SIGHUP)  # the terminal goes away...
        os.killpg(shell.pid, signal.SIGKILL)  # ...and the shell with everything in its group
        shell.wait(timeout=10)
        wait_for(lambda: all(j["state"] == "done" for j in json.loads(reg_path.read_text())["jobs"]),
                 60, "the experiment to finish without its shell")
    finally:
        if shell.poll() is None:
            os.killpg(shell.pid, signal.SIGKILL)
            shell.wait()


def _launch_long(fake, exp: str, extra_env: dict | None = None) -> dict:
    res = fake.cycle("--experiment_id", exp, "--online_methods", "ppo", "--offline_methods", "iql",
                     "--offline_datasets", "ppo", "--max_parallel", "1",
                     env_extra={"FAKE_SLEEP": "120", **(extra_env or {})})
    assert res.returncode == 0, res.stdout + res.stderr
    online = f"{exp}_ppo_cartpole_s0"
    wait_for(lambda: any(e["job"] == online and e["event"] == "start" for e in read_trace(fake.trace)),
             30, f"{online} to start")
    return registry_of(fake.work, exp)


def test_kill_stops_exactly_one_experiment_and_deletes_nothing(fake):
    a = _launch_long(fake, "a")
    b = _launch_long(fake, "b")
    wait_for(lambda: (fake.work / "out/runs/a_ppo_cartpole_s0/run.json").exists(), 10, "a's run.json")
    # a running experiment is not launched a second time
    again = fake.cycle("--experiment_id", "b", "--online_methods", "ppo", "--offline_methods", "iql",
                       "--offline_datasets", "ppo")
    assert again.returncode == 2 and "experiment b is still running" in again.stderr
    before = all_files(fake.work)
    res = subprocess.run([str(ROOT / "kill_experiments.sh"), "a", "--logs_dir", str(fake.work / "logs")],
                         capture_output=True, text=True, timeout=60)
    assert res.returncode == 0, res.stderr
    assert "SIGTERM -> local runner" in res.stdout and "a_ppo_cartpole_s0" in res.stdout
    assert "SIGKILL" not in res.stdout
    a_job, b_job = a["jobs"][0], b["jobs"][0]
    assert not procs.is_alive(a_job["pid"]) and not procs.group_alive(a_job["pgid"])
    assert not procs.is_alive(a["runner"]["pid"], a["runner"]["start_time"])
    assert procs.is_alive(b_job["pid"], b_job["start_time"])
    assert procs.is_alive(b["runner"]["pid"], b["runner"]["start_time"])
    assert before <= all_files(fake.work)  # every file is still there
    states = {j["name"]: (j["state"], j["exit_code"]) for j in registry_of(fake.work, "a")["jobs"]}
    assert states == {"a_ppo_cartpole_s0": ("cancelled", 75),  # checkpointed on SIGTERM
                      "a_iql_on_ppo_cartpole_s0": ("cancelled", None), "plots": ("cancelled", None)}
    assert {e["job"] for e in read_trace(fake.trace) if e["event"] == "start"} == \
        {"a_ppo_cartpole_s0", "b_ppo_cartpole_s0"}
    # a second kill finds nothing to stop; an unknown experiment is an error
    res = subprocess.run([str(ROOT / "kill_experiments.sh"), "a", "--logs_dir", str(fake.work / "logs")],
                         capture_output=True, text=True, timeout=60)
    assert res.returncode == 0 and "nothing was running" in res.stdout
    res = subprocess.run([str(ROOT / "kill_experiments.sh"), "zzz", "--logs_dir", str(fake.work / "logs")],
                         capture_output=True, text=True, timeout=60)
    assert res.returncode == 1 and "no experiment 'zzz'" in res.stderr and "a, b" in res.stderr
    res = subprocess.run([str(ROOT / "kill_experiments.sh"), "b", "--logs_dir", str(fake.work / "logs")],
                         capture_output=True, text=True, timeout=60)
    assert res.returncode == 0 and not procs.group_alive(b_job["pgid"])


def test_kill_escalates_to_sigkill_after_the_grace_period(fake):
    a = _launch_long(fake, "s", {"FAKE_IGNORE_TERM": "1"})
    t0 = time.monotonic()
    res = subprocess.run([str(ROOT / "kill_experiments.sh"), "s", "--logs_dir", str(fake.work / "logs"),
                          "--grace", "1"], capture_output=True, text=True, timeout=60)
    assert res.returncode == 0, res.stderr
    assert time.monotonic() - t0 < 15
    assert not procs.group_alive(a["jobs"][0]["pgid"])
    jobs = registry_of(fake.work, "s")["jobs"]
    assert [j["state"] for j in jobs] == ["cancelled"] * 3
    assert jobs[0]["exit_code"] == -signal.SIGKILL  # the runner had to SIGKILL it
    assert [e["event"] for e in read_trace(fake.trace)] == ["start", "term"]  # one SIGTERM only


def test_kill_without_a_runner_signals_the_process_groups_itself(fake):
    a = _launch_long(fake, "c", {"FAKE_IGNORE_TERM": "1"})
    os.kill(a["runner"]["pid"], signal.SIGKILL)  # the runner crashed; its job runs on
    wait_for(lambda: not procs.is_alive(a["runner"]["pid"]), 10, "the runner to die")
    job = a["jobs"][0]
    assert procs.is_alive(job["pid"], job["start_time"])
    res = subprocess.run([str(ROOT / "kill_experiments.sh"), "c", "--logs_dir", str(fake.work / "logs"),
                          "--grace", "1"], capture_output=True, text=True, timeout=60)
    assert res.returncode == 0, res.stderr
    assert f"SIGTERM -> c_ppo_cartpole_s0 (process group {job['pgid']})" in res.stdout
    assert f"SIGKILL -> c_ppo_cartpole_s0 (process group {job['pgid']})" in res.stdout
    wait_for(lambda: not procs.group_alive(job["pgid"]), 10, "the job's group to end")
    assert [j["state"] for j in registry_of(fake.work, "c")["jobs"]] == ["cancelled"] * 3


def test_on_a_terminal_each_existing_run_is_asked_about(fake):
    first = fake.cycle("--experiment_id", "p", "--online_methods", "ppo", "--offline_methods", "iql",
                       "--offline_datasets", "ppo", "--wait")
    assert first.returncode == 0, first.stdout + first.stderr
    n_first = len(read_trace(fake.trace))
    master, slave = pty.openpty()
    env = clean_env(FAKE_TRACE=str(fake.trace))
    p = subprocess.Popen([PY, str(ROOT / "run_full_cycle.py"), "--work_dir", str(fake.work),
                          "--scripts_dir", str(fake.scripts), "--experiment_id", "p",
                          "--online_methods", "ppo", "--offline_methods", "iql",
                          "--offline_datasets", "ppo", "--wait"],
                         env=env, stdin=slave, stdout=slave, stderr=slave, cwd=str(ROOT))
    os.close(slave)
    seen = b""

    def read_until(text: bytes, timeout: float = 30) -> None:
        nonlocal seen
        deadline = time.monotonic() + timeout
        while text not in seen:
            ready, _, _ = select.select([master], [], [], max(0.0, deadline - time.monotonic()))
            if not ready:
                raise AssertionError(f"no {text!r} in {seen.decode(errors='replace')}")
            try:
                seen += os.read(master, 4096)
            except OSError:  # the other side closed
                raise AssertionError(f"no {text!r} in {seen.decode(errors='replace')}") from None

    try:
        read_until(b"p_ppo_cartpole_s0: ")
        read_until(b"Overwrite it (and its dataset)? [y/n] ")
        os.write(master, b"n\n")  # keep the online run and its dataset
        read_until(b"p_iql_on_ppo_cartpole_s0: ")
        read_until(b"Overwrite it? [y/n] ")
        os.write(master, b"y\n")  # redo the offline run on the dataset on disk
        read_until(b"all jobs done", timeout=60)
        assert p.wait(timeout=30) == 0
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
        os.close(master)
    again = [e["job"] for e in read_trace(fake.trace)[n_first:] if e["event"] == "start"]
    assert again == ["p_iql_on_ppo_cartpole_s0", "plots"]
    jobs = registry_of(fake.work, "p")["jobs"]
    assert [(j["name"], j["depends_on"]) for j in jobs] == [
        ("p_iql_on_ppo_cartpole_s0", []), ("plots", ["p_iql_on_ppo_cartpole_s0"])]


# --------------------------------------------------------------------------- --resume

def _starts(trace: list[dict]) -> dict[str, list[str]]:
    """job -> its argv, for each start in ``trace``."""
    return {e["job"]: e["argv"] for e in trace if e["event"] == "start"}


def test_resume_keeps_done_jobs_continues_from_checkpoints_and_restarts_the_rest_clean(fake):
    exp = ("--experiment_id", "r", "--max_parallel", "1")
    first = fake.cycle(*exp, "--wait", env_extra={
        "FAKE_FAIL": "r_blendrl_ppo_cartpole_s0,r_iql_on_ppo_cartpole_s0",
        "FAKE_CHECKPOINT": "r_blendrl_ppo_cartpole_s0"})
    assert first.returncode == 1
    assert "./run_full_cycle.sh --resume with the same knobs" in first.stdout
    states = {j["name"]: j["state"] for j in registry_of(fake.work, "r")["jobs"]}
    assert states == {"r_ppo_cartpole_s0": "done", "r_blendrl_ppo_cartpole_s0": "failed",
                      "r_iql_on_ppo_cartpole_s0": "failed",
                      "r_iql_on_blendrl_ppo_cartpole_s0": "cancelled",
                      "r_blendrl_iql_on_ppo_cartpole_s0": "done",
                      "r_blendrl_iql_on_blendrl_ppo_cartpole_s0": "cancelled", "plots": "done"}
    partial = fake.work / "out" / "runs" / "r_iql_on_ppo_cartpole_s0"
    assert (partial / "run.json").is_file() and not (partial / "checkpoints").exists()
    n = len(read_trace(fake.trace))

    res = fake.cycle(*exp, "--resume", "--wait")
    assert res.returncode == 0, res.stdout + res.stderr
    assert f"removing {partial} (partial output without a checkpoint)" in res.stdout
    again = _starts(read_trace(fake.trace)[n:])
    # the done jobs are not run again; the failed online job continues from its checkpoint; the
    # failed offline job without one starts clean (the stand-in refuses an existing run folder)
    assert set(again) == {"r_blendrl_ppo_cartpole_s0", "r_iql_on_ppo_cartpole_s0",
                          "r_iql_on_blendrl_ppo_cartpole_s0", "r_blendrl_iql_on_blendrl_ppo_cartpole_s0",
                          "plots"}
    assert again["r_blendrl_ppo_cartpole_s0"][-1] == "--resume"
    assert [k for k, v in again.items() if "--resume" in v] == ["r_blendrl_ppo_cartpole_s0"]
    s = spans(read_trace(fake.trace)[n:])
    assert s["r_iql_on_blendrl_ppo_cartpole_s0"][0] >= s["r_blendrl_ppo_cartpole_s0"][1]  # afterok holds
    reg = registry_of(fake.work, "r")
    assert [j["state"] for j in reg["jobs"]] == ["done"] * 7
    assert {j["name"]: j["resume"] for j in reg["jobs"]} == {
        "r_ppo_cartpole_s0": "kept", "r_blendrl_ppo_cartpole_s0": "checkpoint",
        "r_iql_on_ppo_cartpole_s0": "clean", "r_iql_on_blendrl_ppo_cartpole_s0": "start",
        "r_blendrl_iql_on_ppo_cartpole_s0": "kept",
        "r_blendrl_iql_on_blendrl_ppo_cartpole_s0": "start", "plots": "start"}
    assert (fake.work / "logs" / "r" / reg["resumed_from"]).is_file()  # the old registry, archived
    assert fake.cycle(*exp, "--resume").stdout.rstrip().endswith("nothing to resume: every job is done")


def test_exit_75_is_interrupted_and_resume_continues_it_with_the_same_knobs_only(fake):
    a = _launch_long(fake, "i", {"FAKE_CHECKPOINT": "i_ppo_cartpole_s0"})
    job = a["jobs"][0]
    wait_for(lambda: (fake.work / "out/runs/i_ppo_cartpole_s0/checkpoints/latest.pt").exists(), 10,
             "the checkpoint")
    os.killpg(job["pgid"], signal.SIGTERM)  # as a shutting-down machine would: not through kill
    wait_for(lambda: registry_of(fake.work, "i")["runner"]["state"] == "done", 30, "the runner to end")
    jobs = {j["name"]: j for j in registry_of(fake.work, "i")["jobs"]}
    assert (jobs["i_ppo_cartpole_s0"]["state"], jobs["i_ppo_cartpole_s0"]["exit_code"]) == ("interrupted", 75)
    assert jobs["i_iql_on_ppo_cartpole_s0"]["state"] == "cancelled"
    assert jobs["i_iql_on_ppo_cartpole_s0"]["reason"] == "upstream i_ppo_cartpole_s0 interrupted (exit 75)"
    status = fake.cycle("--status", "i")
    assert "3 jobs: 1 done, 0 running, 0 pending, 1 interrupted, 0 failed, 1 cancelled" in status.stdout
    assert "interrupted after checkpointing (exit 75)" in status.stdout

    exp = ("--experiment_id", "i", "--online_methods", "ppo", "--offline_methods", "iql",
           "--offline_datasets", "ppo", "--max_parallel", "1")
    registry_bytes = (fake.work / "logs" / "i" / "registry.json").read_bytes()
    n = len(read_trace(fake.trace))
    changed = fake.cycle(*exp, "--resume", "--online_steps", "999", "--eval_episodes", "3",
                         "--online_extra_args=--learning_rate 1e-3")
    assert changed.returncode == 2
    assert changed.stderr.splitlines()[1:4] == [
        "  - ONLINE_STEPS: 50000 when the experiment started, 999 now",
        "  - EVAL_EPISODES: 10 when the experiment started, 3 now",
        "  - ONLINE_EXTRA_ARGS: '' when the experiment started, '--learning_rate 1e-3' now"]
    assert (fake.work / "logs" / "i" / "registry.json").read_bytes() == registry_bytes
    assert len(read_trace(fake.trace)) == n  # nothing was started
    assert fake.cycle(*exp, "--resume", "--overwrite").returncode == 2
    unknown = fake.cycle("--experiment_id", "nope", "--resume")
    assert unknown.returncode == 2 and "no experiment nope to continue" in unknown.stderr

    res = fake.cycle(*exp, "--wait", env_extra={"RESUME": "1"})
    assert res.returncode == 0, res.stdout + res.stderr
    again = _starts(read_trace(fake.trace)[n:])
    assert list(again) == ["i_ppo_cartpole_s0", "i_iql_on_ppo_cartpole_s0", "plots"]
    assert again["i_ppo_cartpole_s0"][-1] == "--resume"
    assert [e["event"] for e in read_trace(fake.trace)[n:] if e["job"] == "i_ppo_cartpole_s0"] == \
        ["start", "resume", "end"]
    assert [j["state"] for j in registry_of(fake.work, "i")["jobs"]] == ["done"] * 3


# --------------------------------------------------------------------------- following on a terminal

def _on_a_terminal(args: list[str], env: dict) -> tuple[subprocess.Popen, int]:
    """``run_full_cycle.py ARGS`` in its own session whose controlling terminal is a new pty
    (as in a terminal window); returns the process and the pty's master side."""
    master, slave = pty.openpty()

    def take_terminal() -> None:
        fcntl.ioctl(0, termios.TIOCSCTTY, 0)
        # A terminal's program starts with Ctrl-C's SIGINT at its default even where this test
        # runs in the background of a non-interactive shell, which ignores SIGINT (and passes
        # the ignore down).
        signal.signal(signal.SIGINT, signal.SIG_DFL)

    p = subprocess.Popen([PY, str(ROOT / "run_full_cycle.py"), *args], env=env, stdin=slave,
                         stdout=slave, stderr=slave, cwd=str(ROOT), start_new_session=True,
                         preexec_fn=take_terminal)
    os.close(slave)
    return p, master


def _read_until(master: int, seen: bytearray, text: bytes | None, timeout: float) -> None:
    """Read the terminal into ``seen`` until ``text`` appears (None: until it closes)."""
    deadline = time.monotonic() + timeout
    while text is None or text not in seen:
        ready, _, _ = select.select([master], [], [], max(0.0, deadline - time.monotonic()))
        if not ready:
            raise AssertionError(f"no {text!r} within {timeout} s in {seen.decode(errors='replace')}")
        try:
            chunk = os.read(master, 4096)
        except OSError:  # the other side closed
            chunk = b""
        if not chunk:
            if text is None:
                return
            raise AssertionError(f"no {text!r} in {seen.decode(errors='replace')}")
        seen += chunk


def test_on_a_terminal_the_command_follows_the_experiment_to_its_end(fake):
    env = clean_env(FAKE_TRACE=str(fake.trace), FAKE_SLEEP="0.5")
    p, master = _on_a_terminal(["--work_dir", str(fake.work), "--scripts_dir", str(fake.scripts),
                                "--experiment_id", "t", "--online_methods", "ppo", "--offline_methods",
                                "iql", "--offline_datasets", "ppo"], env)
    seen = bytearray()
    try:
        _read_until(master, seen, None, 90)
        assert p.wait(timeout=30) == 0, seen.decode()
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
        os.close(master)
    text = seen.decode()
    assert "following the experiment until it ends" in text
    assert "t_iql_on_ppo_cartpole_s0: done" in text and "all jobs done" in text
    assert f"plots: {fake.work / 'plots' / 't'}/" in text
    assert [j["state"] for j in registry_of(fake.work, "t")["jobs"]] == ["done"] * 3


def test_ctrl_c_on_the_terminal_stops_following_not_the_experiment(fake):
    env = clean_env(FAKE_TRACE=str(fake.trace), FAKE_SLEEP="3")
    p, master = _on_a_terminal(["--work_dir", str(fake.work), "--scripts_dir", str(fake.scripts),
                                "--experiment_id", "c", "--online_methods", "ppo", "--offline_methods",
                                "iql", "--offline_datasets", "ppo"], env)
    seen = bytearray()
    try:
        _read_until(master, seen, b"c_ppo_cartpole_s0: running", 60)
        os.write(master, b"\x03")  # Ctrl-C: SIGINT to the terminal's foreground process group
        _read_until(master, seen, None, 30)
        assert p.wait(timeout=30) == 130, seen.decode()
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
        os.close(master)
    text = seen.decode()
    assert "stopped following; experiment c goes on" in text
    assert "./run_full_cycle.sh --status c --wait" in text and "./kill_experiments.sh c" in text
    reg = registry_of(fake.work, "c")
    assert procs.is_alive(reg["runner"]["pid"], reg["runner"]["start_time"])  # it goes on
    wait_for(lambda: registry_of(fake.work, "c")["runner"]["state"] == "done", 60,
             "the experiment to finish without anyone following it")
    assert [j["state"] for j in registry_of(fake.work, "c")["jobs"]] == ["done"] * 3
    assert [e["event"] for e in read_trace(fake.trace)].count("term") == 0


# --------------------------------------------------------------------------- the batch script

STAND_IN = r'''
import signal, sys, time, pathlib
out = pathlib.Path(sys.argv[1])
out.joinpath("argv").write_text(" ".join(sys.argv[2:]))
def on_usr1(signum, frame):
    out.joinpath("usr1").write_text("got it")
    sys.exit(75)
out.joinpath("started").write_text(str(signal.getsignal(signal.SIGUSR1)))
if "--late_handler" in sys.argv:  # like a training script still importing torch
    time.sleep(3)
signal.signal(signal.SIGUSR1, on_usr1)
out.joinpath("ready").write_text("")
if "--resume" in sys.argv or "--quick" in sys.argv:
    sys.exit(0)
if "--fail75" in sys.argv:
    sys.exit(75)
time.sleep(60)
'''


def _batch(tmp_path: Path, *flags: str) -> tuple[Path, Path]:
    """A batch script (as sbatch would run it) whose job is the stand-in above."""
    (tmp_path / "bin").mkdir(exist_ok=True)
    (tmp_path / "stand_in.py").write_text(STAND_IN)
    # a stand-in for the controller's command: records how it was called
    (tmp_path / "bin" / "scontrol").write_text(f"#!/bin/sh\necho \"$@\" >> {tmp_path}/scontrol.calls\n")
    (tmp_path / "bin" / "scontrol").chmod(0o755)
    run_dir = tmp_path / "run"
    job = {"name": "j", "kind": "online", "resumable": True, "threads": 1, "run_dir": str(run_dir),
           "command": [PY, str(tmp_path / "stand_in.py"), str(tmp_path), *flags]}
    script = tmp_path / "j.sbatch"
    script.write_text(slurm.render_script(job, exp_id="e", work_dir=tmp_path, log=tmp_path / "j.log",
                                          opts=SlurmOptions(signal_margin=60), venv_activate=None))
    return script, run_dir


def _run_batch(tmp_path, script, restart: int) -> subprocess.Popen:
    env = dict(os.environ, SLURM_JOB_ID="77", SLURM_RESTART_COUNT=str(restart),
               PATH=f"{tmp_path / 'bin'}:{os.environ['PATH']}")
    return subprocess.Popen(["bash", str(script)], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)


def test_batch_script_forwards_usr1_requeues_then_resumes(tmp_path):
    script, run_dir = _batch(tmp_path)
    p = _run_batch(tmp_path, script, restart=0)
    wait_for(lambda: (tmp_path / "ready").exists(), 30, "the job to start")
    p.send_signal(signal.SIGUSR1)  # what --signal=B:USR1@margin does before the time limit
    out, _ = p.communicate(timeout=30)
    assert p.returncode == 0, out
    assert (tmp_path / "usr1").read_text() == "got it"  # forwarded to the job, which exited 75
    assert (tmp_path / "scontrol.calls").read_text() == "requeue 77\n"
    assert "with exit status 75" in out and "requeueing job 77" in out
    assert (tmp_path / "argv").read_text() == ""  # first attempt: no --resume

    # the requeued attempt: SLURM_RESTART_COUNT=1 and a checkpoint -> --resume
    (run_dir / "checkpoints").mkdir(parents=True)
    (run_dir / "checkpoints" / "latest.pt").write_text("ckpt")
    p = _run_batch(tmp_path, script, restart=1)
    out, _ = p.communicate(timeout=30)
    assert p.returncode == 0, out
    assert (tmp_path / "argv").read_text() == "--resume"
    assert (tmp_path / "scontrol.calls").read_text() == "requeue 77\n"  # no second requeue


def test_batch_script_usr1_before_the_job_has_its_handler_neither_kills_it_nor_is_lost(tmp_path):
    script, _ = _batch(tmp_path, "--late_handler")
    p = _run_batch(tmp_path, script, restart=0)
    wait_for(lambda: (tmp_path / "started").exists(), 30, "the job to start")
    p.send_signal(signal.SIGUSR1)  # SLURM's early warning, before the job can handle it
    out, _ = p.communicate(timeout=60)
    assert p.returncode == 0, out
    assert (tmp_path / "started").read_text() == str(int(signal.SIG_IGN))  # it started ignoring USR1
    assert (tmp_path / "usr1").read_text() == "got it"  # sent again once it listened
    assert "with exit status 75" in out and (tmp_path / "scontrol.calls").read_text() == "requeue 77\n"


def test_batch_script_does_not_requeue_an_exit_75_it_did_not_ask_for(tmp_path):
    script, _ = _batch(tmp_path, "--fail75")
    p = _run_batch(tmp_path, script, restart=0)
    out, _ = p.communicate(timeout=30)
    assert p.returncode == 75, out
    assert not (tmp_path / "scontrol.calls").exists()


# --------------------------------------------------------------------------- sync_logs.sh

def _sync(*args: str, env_extra: dict | None = None) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "REMOTE"}
    env.update(env_extra or {})
    return subprocess.run([str(ROOT / "sync_logs.sh"), *args], env=env, capture_output=True,
                          text=True, timeout=60)


@pytest.fixture
def remote(tmp_path):
    r = tmp_path / "remote"
    for rel, text in {"out/runs/r1/run.json": "{}", "out/runs/r1/.results.json.abc.tmp": "half",
                      "logs/e/r1.log": "line1\n", "plots/e/timing.md": "| a |\n",
                      "offline_dataset/r1/manifest.json": "{}", "other/secret.txt": "no"}.items():
        (r / rel).parent.mkdir(parents=True, exist_ok=True)
        (r / rel).write_text(text)
    return r


def test_sync_logs_needs_a_remote():
    res = _sync()
    assert res.returncode == 2
    assert "no REMOTE given" in res.stderr and "Usage: ./sync_logs.sh" in res.stderr
    assert _sync("--bogus", "x").returncode == 2


def test_sync_logs_says_when_rsync_is_missing(tmp_path):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool in ("bash", "dirname", "sed", "mkdir"):
        (bin_dir / tool).symlink_to(subprocess.run(["which", tool], capture_output=True,
                                                   text=True).stdout.strip())
    res = _sync("somewhere:/x", env_extra={"PATH": str(bin_dir)})
    assert res.returncode == 2 and "rsync is not installed" in res.stderr


def test_sync_logs_pulls_runs_logs_plots_without_deleting_local_files(tmp_path, remote):
    local = tmp_path / "local"
    (local / "logs" / "e").mkdir(parents=True)
    (local / "logs" / "e" / "mine.txt").write_text("keep me")
    res = _sync("--dest", str(local), str(remote))
    assert res.returncode == 0, res.stderr
    assert all_files(local) == {"out/runs/r1/run.json", "logs/e/r1.log", "plots/e/timing.md",
                                "logs/e/mine.txt"}  # no dataset, no temp file, nothing else
    # the remote grows; a local-only file survives every sync
    (remote / "logs" / "e" / "r1.log").write_text("line1\nline2\n")
    t = (local / "logs" / "e" / "r1.log").stat().st_mtime + 5  # newer to the second: it replaces
    os.utime(remote / "logs" / "e" / "r1.log", (t, t))
    (remote / "out" / "runs" / "r1" / "run.json").unlink()
    res = _sync("--dest", str(local), env_extra={"REMOTE": str(remote)})
    assert res.returncode == 0, res.stderr
    assert (local / "logs" / "e" / "r1.log").read_text() == "line1\nline2\n"
    assert (local / "out" / "runs" / "r1" / "run.json").exists()  # deleted remotely, kept here
    assert (local / "logs" / "e" / "mine.txt").read_text() == "keep me"
    res = _sync("--datasets", "--dest", str(local), str(remote))
    assert res.returncode == 0 and (local / "offline_dataset" / "r1" / "manifest.json").exists()


def test_sync_logs_continues_an_interrupted_transfer(tmp_path, remote):
    big = remote / "logs" / "e" / "big.log"
    data = os.urandom(300_000)
    big.write_bytes(data)
    local = tmp_path / "local"
    partial = local / "logs" / "e" / ".rsync-partial"
    partial.mkdir(parents=True)
    (partial / "big.log").write_bytes(data[:100_000])  # what an interrupted run leaves behind
    res = _sync("--dest", str(local), str(remote))
    assert res.returncode == 0, res.stderr
    assert (local / "logs" / "e" / "big.log").read_bytes() == data
    assert not partial.exists()  # used and cleaned up


# --------------------------------------------------------------------------- the test command

def _tool_bin(tmp_path: Path, uid: int, apt_ok: bool = True) -> Path:
    """A PATH folder with the tools run_tests.sh and setup_venv.sh use but no rsync, a stand-in
    ``id`` answering ``uid``, and a stand-in ``apt-get`` that records its calls and, on
    ``install``, puts a stand-in rsync on the PATH (or fails)."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool in ("bash", "dirname", "sha256sum", "cut", "cat"):
        (bin_dir / tool).symlink_to(subprocess.run(["which", tool], capture_output=True,
                                                   text=True).stdout.strip())
    stand_ins = {
        "id": f"#!/bin/sh\n[ \"$1\" = -u ] && echo {uid}\n",
        "apt-get": (f"#!/bin/sh\necho \"$@\" >> {tmp_path}/apt.calls\n"
                    + (f"[ \"$1\" = install ] && printf '#!/bin/sh\\n' > {bin_dir}/rsync && "
                       f"/bin/chmod +x {bin_dir}/rsync\nexit 0\n" if apt_ok else "exit 100\n")),
    }
    for name, text in stand_ins.items():
        (bin_dir / name).write_text(text)
        (bin_dir / name).chmod(0o755)
    return bin_dir


def _run_tests(bin_dir: Path, script: str = "run_tests.sh") -> subprocess.CompletedProcess:
    # --version: pytest answers at once, showing the command got as far as the suite
    return subprocess.run([str(bin_dir / "bash"), str(ROOT / script), "--version"],
                          env={"PATH": str(bin_dir), "HOME": os.environ.get("HOME", "/root")},
                          capture_output=True, text=True, timeout=120)


def test_test_command_without_rsync_and_without_root_names_it_before_any_test(tmp_path):
    bin_dir = _tool_bin(tmp_path, uid=1000)
    res = _run_tests(bin_dir)
    assert res.returncode == 1
    assert res.stderr.splitlines()[:2] == [
        "error: the test suite needs rsync (sync_logs.sh and its tests), which is not installed here.",
        "  Install it as root, e.g. on Debian/Ubuntu: sudo apt-get install rsync"]
    assert "pytest" not in res.stdout + res.stderr.replace(str(ROOT), "")  # no test ran
    assert not (tmp_path / "apt.calls").exists()


def test_test_command_as_root_installs_rsync_with_apt_then_runs_the_suite(tmp_path):
    bin_dir = _tool_bin(tmp_path, uid=0)
    res = _run_tests(bin_dir, ".ci/run")  # CI runs the same command
    assert res.returncode == 0, res.stderr
    assert (tmp_path / "apt.calls").read_text() == "update -qq\ninstall -y -qq rsync\n"
    assert "installing rsync with apt-get" in res.stderr and "pytest" in res.stdout + res.stderr
    # rsync there now: nothing more to install
    res = _run_tests(bin_dir)
    assert res.returncode == 0 and (tmp_path / "apt.calls").read_text().count("install") == 1


def test_test_command_says_so_when_apt_cannot_install_rsync(tmp_path):
    res = _run_tests(_tool_bin(tmp_path, uid=0, apt_ok=False))
    assert res.returncode == 1
    assert "error: apt-get could not install rsync; install it yourself" in res.stderr
