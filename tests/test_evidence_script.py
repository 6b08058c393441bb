"""bench/atari_evidence.sh, the commands of docs/results.md: its usage and bad input,
and `keep`, which copies an experiment's small result files (not its checkpoints) to be committed
and redrawn by plot_results.py on any machine."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "bench" / "atari_evidence.sh"
RESULT_FILES = ("run.json", "results.json", "timing.json", "training_log.pkl")


def run(*args: str, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", str(SCRIPT), *args], capture_output=True, text=True, timeout=120,
                          env={**os.environ, **env})


def test_no_command_prints_the_usage_and_exits_2():
    r = run()
    assert r.returncode == 2
    assert "kangaroo_1m SEED" in r.stderr and "keep SUBDIR [NAME]" in r.stderr


def test_a_bad_resume_value_is_refused_before_anything_starts(tmp_path):
    r = run("kangaroo_500k", RESUME="maybe", EVIDENCE_DIR=str(tmp_path / "ev"))
    assert r.returncode == 2
    assert r.stderr.strip() == "error: RESUME must be 1/0, true/false, yes/no or on/off, got 'maybe'"
    assert not (tmp_path / "ev").exists()


def test_kangaroo_1m_passes_the_flags_after_the_seed_to_the_launcher(tmp_path):
    r = run("kangaroo_1m", "3", "--dry_run", "--max_parallel", "1", EVIDENCE_DIR=str(tmp_path / "ev"))
    assert r.returncode == 0, r.stderr
    out = r.stdout + r.stderr
    assert "local: 1 job(s) at once" in out and "dry run: nothing was started" in out
    assert "offline  kangaroo_1m_blendrl_iql_on_blendrl_ppo_kangaroo_s3" in out
    assert not (tmp_path / "ev" / "kangaroo_1m" / "out").exists()


def _fake_run(runs: Path, name: str, exp_id: str) -> None:
    d = runs / name
    (d / "checkpoints").mkdir(parents=True)
    (d / "checkpoints" / "latest.pt").write_bytes(b"x" * 1000)
    (d / "events.out.tfevents.1").write_bytes(b"tb")
    (d / "run.json").write_text(json.dumps({"run_id": name, "exp_id": exp_id}))
    (d / "results.json").write_text("[]")
    (d / "timing.json").write_text("{}")
    (d / "training_log.pkl").write_bytes(b"pkl")


def test_keep_copies_the_result_files_only(tmp_path):
    ev, keep = tmp_path / "ev", tmp_path / "kept"
    _fake_run(ev / "cycle" / "out" / "runs", "a_s1", "cycle")
    _fake_run(ev / "cycle" / "out" / "runs", "b_s1", "cycle")
    (ev / "cycle" / "out" / "runs" / "not_a_run").mkdir()
    r = run("keep", "cycle", "cycle_kept", EVIDENCE_DIR=str(ev), KEEP_DIR=str(keep))
    assert r.returncode == 0, r.stderr
    assert "kept the result files of 2 run(s)" in r.stderr
    runs = keep / "cycle_kept" / "runs"
    assert sorted(p.name for p in runs.iterdir()) == ["a_s1", "b_s1"]
    for name in ("a_s1", "b_s1"):
        assert sorted(p.name for p in (runs / name).iterdir()) == sorted(RESULT_FILES)
        assert json.loads((runs / name / "run.json").read_text())["run_id"] == name


def test_keep_of_a_missing_folder_is_an_error(tmp_path):
    r = run("keep", "nothing", EVIDENCE_DIR=str(tmp_path / "ev"), KEEP_DIR=str(tmp_path / "kept"))
    assert r.returncode == 2 and "no runs folder" in r.stderr
    assert not (tmp_path / "kept").exists()


def test_the_script_is_valid_bash():
    assert subprocess.run(["bash", "-n", str(SCRIPT)]).returncode == 0
