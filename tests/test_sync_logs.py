"""sync_logs.sh never loses a local file: real rsync processes, real files, a local folder as the
remote. Mtimes are set with os.utime (never by sleeping)."""
from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
OLD = 1_700_000_000  # 2023-11-14 22:13:20 UTC
NEW = OLD + 3600
RESULTS = "out/runs/exp1/ppo_s0/results.json"  # a file in a nested run folder


def sync(*args: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "REMOTE"}
    return subprocess.run([str(ROOT / "sync_logs.sh"), *args], env=env, capture_output=True,
                          text=True, timeout=60)


def put(folder: Path, rel: str, text: str, mtime: int) -> Path:
    path = folder / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    os.utime(path, (mtime, mtime))
    return path


def snapshot(folder: Path) -> dict[str, tuple[str, int, int]]:
    """Every file and folder under ``folder``: content (files), mtime in ns, inode."""
    return {str(p.relative_to(folder)): (p.read_text() if p.is_file() else "<dir>",
                                         p.stat().st_mtime_ns, p.stat().st_ino)
            for p in folder.rglob("*")}


def backups(local: Path) -> list[Path]:
    return sorted(p for p in (local / ".sync-backup").rglob("*") if p.is_file())


@pytest.fixture
def sides(tmp_path):
    return tmp_path / "remote", tmp_path / "local"


def test_a_local_file_newer_than_the_remote_one_is_kept_and_listed_as_a_conflict(sides):
    remote, local = sides
    put(remote, RESULTS, '{"evaluations": [1]}', OLD)
    put(local, RESULTS, '{"evaluations": [1, 2, 3, 4]}', NEW)
    res = sync("--dest", str(local), str(remote))
    assert res.returncode == 0, res.stderr
    assert (local / RESULTS).read_text() == '{"evaluations": [1, 2, 3, 4]}'
    assert (local / RESULTS).stat().st_mtime == NEW
    assert not (local / ".sync-backup").exists()  # nothing was replaced
    assert "1 conflict(s): the local file is kept" in res.stderr
    line = next(ln for ln in res.stderr.splitlines() if RESULTS in ln)
    assert "local 2023/11/14-23:13:20 29 B" in line and "remote 2023/11/14-22:13:20 20 B" in line
    assert "(local newer)" in line
    # again: still kept, still listed, still no backup
    res = sync("--dest", str(local), str(remote))
    assert res.returncode == 0 and RESULTS in res.stderr
    assert (local / RESULTS).read_text() == '{"evaluations": [1, 2, 3, 4]}'
    assert not (local / ".sync-backup").exists()


def test_a_newer_remote_file_replaces_the_local_one_which_is_kept_as_a_backup(sides):
    remote, local = sides
    put(remote, RESULTS, '{"evaluations": [1, 2]}', NEW)
    put(local, RESULTS, '{"evaluations": [1]}', OLD)
    res = sync("--dest", str(local), str(remote))
    assert res.returncode == 0, res.stderr
    assert (local / RESULTS).read_text() == '{"evaluations": [1, 2]}'
    assert (local / RESULTS).stat().st_mtime == NEW
    [backup] = backups(local)
    assert backup.relative_to(local / ".sync-backup").parts[1:] == Path(RESULTS).parts
    assert backup.read_text() == '{"evaluations": [1]}' and backup.stat().st_mtime == OLD
    assert f"kept in {backup.parents[len(Path(RESULTS).parts) - 1]}/" in res.stderr
    assert "conflict" not in res.stderr


def test_same_mtime_but_another_size_is_a_conflict_and_the_local_file_is_kept(sides):
    remote, local = sides
    put(remote, "logs/exp1/ppo_s0.log", "remote\n", OLD)
    put(local, "logs/exp1/ppo_s0.log", "local, longer\n", OLD)
    res = sync("--dest", str(local), str(remote))
    assert res.returncode == 0, res.stderr
    assert (local / "logs/exp1/ppo_s0.log").read_text() == "local, longer\n"
    assert "logs/exp1/ppo_s0.log" in res.stderr and "(same mtime, other size)" in res.stderr
    assert not (local / ".sync-backup").exists()


def test_new_remote_files_are_copied_and_local_only_files_are_never_deleted(sides):
    remote, local = sides
    put(remote, RESULTS, "{}", OLD)
    put(remote, "out/runs/exp1/iql_s0 [1]/results.json", "{}", OLD)  # wildcards in a name
    put(remote, "plots/exp1/timing.md", "| a |\n", OLD)
    put(local, "logs/exp1/mine.txt", "keep me", OLD)
    put(local, "out/runs/exp0/ppo_s0/results.json", "local run", OLD)
    res = sync("--dest", str(local), str(remote))
    assert res.returncode == 0, res.stderr
    assert (local / RESULTS).read_text() == "{}" and (local / RESULTS).stat().st_mtime == OLD
    assert (local / "out/runs/exp1/iql_s0 [1]/results.json").read_text() == "{}"
    assert (local / "plots/exp1/timing.md").read_text() == "| a |\n"
    assert (local / "logs/exp1/mine.txt").read_text() == "keep me"
    assert (local / "out/runs/exp0/ppo_s0/results.json").read_text() == "local run"
    assert not (local / ".sync-backup").exists() and "conflict" not in res.stderr
    # deleted on the remote: kept here
    (remote / RESULTS).unlink()
    res = sync("--dest", str(local), str(remote))
    assert res.returncode == 0 and (local / RESULTS).read_text() == "{}"


def test_files_alike_on_both_sides_are_untouched(sides):
    remote, local = sides
    put(remote, RESULTS, "same", OLD)
    put(local, RESULTS, "same", OLD)
    before = snapshot(local)
    res = sync("--dest", str(local), str(remote))
    assert res.returncode == 0, res.stderr
    assert snapshot(local) == before  # same content, mtime, inode
    assert RESULTS not in res.stdout and "conflict" not in res.stderr


def test_a_dry_run_changes_nothing_and_lists_what_would_happen(sides):
    remote, local = sides
    put(remote, RESULTS, "remote newer", NEW)
    put(local, RESULTS, "local older", OLD)
    put(remote, "logs/exp1/ppo_s0.log", "remote older", OLD)
    put(local, "logs/exp1/ppo_s0.log", "local newer", NEW)
    put(remote, "plots/exp1/new.md", "new", OLD)
    before = snapshot(local)
    res = sync("--dry-run", "--dest", str(local), str(remote))
    assert res.returncode == 0, res.stderr
    assert snapshot(local) == before and not (local / "plots").exists()
    assert not (local / ".sync-backup").exists()
    assert f">f.st...... {RESULTS}" in res.stdout  # would be replaced
    assert ">f+++++++++ plots/exp1/new.md" in res.stdout  # would be copied
    assert "logs/exp1/ppo_s0.log" not in res.stdout  # would not be copied ...
    assert "1 conflict(s)" in res.stderr and "logs/exp1/ppo_s0.log" in res.stderr  # ... a conflict
    # the same without --dry-run does what was listed
    res = sync("--dest", str(local), str(remote))
    assert res.returncode == 0, res.stderr
    assert (local / RESULTS).read_text() == "remote newer"
    assert (local / "logs/exp1/ppo_s0.log").read_text() == "local newer"
    assert (local / "plots/exp1/new.md").read_text() == "new"
    assert [b.read_text() for b in backups(local)] == ["local older"]


def test_help_shows_the_rules():
    res = sync("--help")
    assert res.returncode == 0
    assert "Usage: ./sync_logs.sh" in res.stderr and ".sync-backup/" in res.stderr
    assert "Exit status:" in res.stderr and "conflict" in res.stderr
