"""bench/device_checks.sh and scripts/device_wheels.sh, cheaply: syntax, --help, refused arguments,
and the plan (--plan) against the scripts it calls (their parsers accept every flag). The checks
themselves run on a lent GPU machine; ``bash bench/device_checks.sh --rehearse`` rehearses them
on this CPU (minutes, not a test)."""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
CHECKS = ROOT / "bench" / "device_checks.sh"
WHEELS = ROOT / "scripts" / "device_wheels.sh"
PARTS = ["compiled", "tests", "bench_eager", "bench_compiled", "cycle"]


def run(*args: str, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", str(CHECKS), *args], capture_output=True, text=True, timeout=30,
                          env={**os.environ, **env}, cwd=ROOT)


def plan(*args: str, **env: str) -> dict[str, str]:
    """part -> its line of ``--plan``."""
    res = run("--plan", *args, **env)
    assert res.returncode == 0, res.stderr
    return dict(line.split(" ", 1) for line in res.stdout.splitlines()[1:])


@pytest.mark.parametrize("script", [CHECKS, WHEELS])
def test_scripts_parse(script):
    assert subprocess.run(["bash", "-n", str(script)], capture_output=True).returncode == 0


def test_help_documents_usage_and_every_part():
    res = run("--help")
    assert res.returncode == 0 and "Usage" in res.stdout and "--rehearse" in res.stdout
    for part in PARTS:
        assert re.search(rf"^  {part} +\d+ s ", res.stdout, re.M), part


@pytest.mark.parametrize("args,words", [(["bogus"], "unknown part bogus"),
                                        (["tests", "--fast"], "unknown option --fast")])
def test_unknown_arguments_are_refused_before_anything_runs(tmp_path, args, words):
    res = run(*args, OUT=str(tmp_path / "out"))
    assert res.returncode == 2 and words in res.stderr
    assert not (tmp_path / "out").exists()


def test_the_device_plan_runs_the_compiled_step_first_then_tests_benches_and_cycle(tmp_path):
    p = plan(OUT=str(tmp_path))
    assert list(p) == PARTS
    assert "needs CUDA" in p["compiled"] and "--compile reduce-overhead" in p["compiled"]
    assert "-k cuda" in p["tests"]
    for flags in ("--device cuda", "--agents neural blendrl", "--precision fp32 tf32 bf16",
                  "--dataset-device cuda cpu", "--compile off"):
        assert flags in p["bench_eager"], flags
    assert "--compile reduce-overhead" in p["bench_compiled"]
    for flags in ("--environment kangaroo", "--online_steps 100000", "--intervals_count 3",
                  "--online_extra_args='--device cpu'"):
        assert flags in p["cycle"], flags
    assert list(plan("cycle", "tests")) == ["cycle", "tests"]  # the order given


def test_the_rehearsal_plan_is_the_same_sequence_on_the_cpu():
    p = plan("--rehearse")
    assert list(p) == PARTS
    assert "needs CUDA" in p["compiled"] and "needs CUDA" in p["bench_compiled"]
    assert "needs CUDA" not in p["bench_eager"] and "--device cpu" in p["bench_eager"]


def _argv(line: str, script: str) -> list[str]:
    """The arguments after ``script`` in a plan line."""
    words = shlex.split(line.split(": ", 1)[1])
    return words[[i for i, w in enumerate(words) if w.endswith(script)][0] + 1:]


@pytest.mark.parametrize("rehearse", [False, True])
def test_the_bench_commands_are_accepted_by_bench_iql(rehearse, monkeypatch):
    monkeypatch.syspath_prepend(str(ROOT / "bench"))
    from bench_iql import Args

    from blendrl.cli_parse import cli
    p = plan(*(["--rehearse"] if rehearse else []))
    for part in ("compiled", "bench_eager", "bench_compiled"):
        args = cli(Args, args=_argv(p[part], "bench_iql.py"))
        assert args.agents == ["neural", "blendrl"] and args.json_out is not None, part


def test_the_cycle_command_is_a_valid_launch(tmp_path):
    argv = _argv(plan()["cycle"], "run_full_cycle.py")
    argv = [a for a in argv if a != "--wait"]
    res = subprocess.run([sys.executable, str(ROOT / "run_full_cycle.py"), *argv, "--work_dir", str(tmp_path),
                          "--offline_methods", "none", "--offline_datasets", "none", "--max_parallel", "2",
                          "--dry_run"], capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert res.returncode == 0, res.stdout + res.stderr
    assert "online" in res.stdout and "dry run: nothing was started" in res.stdout


def test_every_wheel_fetched_has_a_pin():
    text = WHEELS.read_text()
    names = re.findall(r"^WHEELS=\((.*?)\)", text, re.S | re.M)[0]
    names = re.sub(r"#.*", "", names).split() + re.findall(r"^SOURCE_ONLY=\((.*?)\)", text, re.M)[0].split()
    pins = {line.split("==")[0].lower()
            for req in ("requirements.txt", "requirements-nodeps.txt")
            for line in (ROOT / req).read_text().splitlines() if "==" in line}
    assert "numpy" not in names and "torch" not in names
    assert {n.lower() for n in names} <= pins
