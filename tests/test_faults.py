"""Faults of a real cluster week that must never pass silently (issue 28): broken data past the
first interval, a dataset still being written, two jobs on one run folder, a full disk or a
read-only folder, and ``--resume`` of a run that is already complete. Real files, real processes,
and (as root) a small tmpfs that fills up."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import zlib
from pathlib import Path

import numpy as np
import pytest

from blendrl.contract import EXIT_DATA_FAULT, EXIT_NO_SPACE
from blendrl.datasets import MANIFEST_NAME, DatasetReader, DatasetWriter, verify
from blendrl.offline import OfflineArgs, main as offline_main

ROOT = Path(__file__).resolve().parents[1]
NUM_ENVS = 2
MARKS = [20, 60, 100]


def write_dataset(path: Path, steps: int = 50, *, finish: bool = True, nan_at: int | None = None,
                  marks: list[int] = MARKS, planned_marks: int | None = None) -> Path:
    """``steps * NUM_ENVS`` cartpole-shaped transitions in chunks of 20; ``nan_at``: that
    transition's reward is NaN (recorded as given: the CRC matches, only a value check sees it)."""
    rng = np.random.default_rng(0)
    meta = {"method": "ppo", "run_id": "src", "exp_id": "e", "seed": 0}
    if planned_marks is not None:
        meta["planned_marks"] = planned_marks
    w = DatasetWriter(path, env="cartpole", num_envs=NUM_ENVS, logic_shape=(2, 2), neural_shape=(4,),
                      neural_dtype=np.float32, n_actions=2, chunk_size=20, metadata=meta)
    s = rng.normal(size=(NUM_ENVS, 4)).astype(np.float32)
    for t in range(steps):
        n = rng.normal(size=(NUM_ENVS, 4)).astype(np.float32)
        reward = np.ones(NUM_ENVS)
        if nan_at is not None and t * NUM_ENVS <= nan_at < (t + 1) * NUM_ENVS:
            reward[nan_at - t * NUM_ENVS] = np.nan
        w.add(s.reshape(NUM_ENVS, 2, 2), s, rng.integers(0, 2, NUM_ENVS), reward,
              n.reshape(NUM_ENVS, 2, 2), n, rng.random(NUM_ENVS) < 0.1, np.zeros(NUM_ENVS, bool))
        s = n
        if (t + 1) * NUM_ENVS in marks:
            w.mark((t + 1) * NUM_ENVS)
    w.finish() if finish else w.close()
    return path


def offline_args(tmp_path: Path, data: Path, run_id: str = "off", **kw) -> OfflineArgs:
    base = dict(dataset=data, run_id=run_id, runs_dir=tmp_path / "runs", epochs=1, batch_size=16,
                eval_episodes=1, eval_envs=1, device="cpu", threads=1, log_every=5)
    return OfflineArgs(**{**base, **kw})


def error_lines(err: str) -> list[str]:
    return [line for line in err.splitlines() if line.startswith("error:")]


def snapshot_files(folder: Path) -> dict[str, tuple[int, int]]:
    """Every file under ``folder``: (size, mtime in ns), to show nothing was written (but the
    run folder's lock file, where the job holding it writes its pid)."""
    return {str(p.relative_to(folder)): (p.stat().st_size, p.stat().st_mtime_ns)
            for p in sorted(folder.rglob("*")) if p.is_file() and p.name != ".run.lock"}


def script(name: str, *args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(ROOT / name), *args], cwd=ROOT, capture_output=True,
                          text=True, timeout=timeout)


# --------------------------------------------------------------------------- 1. every chunk verified


def _flip_in_last_chunk(data: Path, which: str) -> Path:
    """Flip a bit near the end of the last chunk's pickle or logic pool (same size, other bytes)."""
    e = json.loads((data / MANIFEST_NAME).read_text())["chunks"][-1]
    path = data / (e["file"] if which == "pickle" else e["sidecars"]["logic"]["file"])
    raw = bytearray(path.read_bytes())
    raw[-3] ^= 0x40
    path.write_bytes(bytes(raw))
    return path


@pytest.mark.parametrize("which", ["pickle", "logic pool"])
def test_a_flipped_byte_in_a_later_chunk_is_a_data_fault_before_any_training(tmp_path, capsys, which):
    data = write_dataset(tmp_path / "ds")
    side = _flip_in_last_chunk(data, which)
    assert offline_main(offline_args(tmp_path, data), "iql") == EXIT_DATA_FAULT
    err = capsys.readouterr().err
    assert error_lines(err) == [line for line in err.splitlines() if "error" in line]
    (line,) = error_lines(err)
    assert str(side) in line and "CRC-32" in line and "nothing was trained" in line
    assert not (tmp_path / "runs" / "off").exists()  # nothing trained, nothing recorded
    problems, _ = verify(data)
    assert len(problems) == 1 and side.name in problems[0]


def test_nan_recorded_in_a_later_chunk_is_a_data_fault_and_verify_refuses_it(tmp_path, capsys):
    data = write_dataset(tmp_path / "ds", nan_at=85)  # in the chunk of rows [80, 100)
    DatasetReader(data)  # sizes and CRCs are right: only the values are wrong
    assert offline_main(offline_args(tmp_path, data), "iql") == EXIT_DATA_FAULT
    (line,) = error_lines(capsys.readouterr().err)
    assert "chunk_000000000080_000000020.pkl" in line and "non-finite reward" in line
    assert "transition 85" in line
    assert not (tmp_path / "runs" / "off").exists()
    problems, _ = verify(data)
    assert len(problems) == 1 and "non-finite reward" in problems[0]
    r = script("dataset_utils.py", "verify", str(data))
    assert r.returncode == 1 and "non-finite" in r.stderr


def test_nan_in_a_float_pool_is_named_with_its_sidecar(tmp_path):
    data = write_dataset(tmp_path / "ds")
    m = json.loads((data / MANIFEST_NAME).read_text())
    entry = m["chunks"][2]
    side = data / entry["sidecars"]["logic"]["file"]
    arr = np.load(side)
    arr[3, 1, 0] = np.inf
    np.save(side, arr)  # a consistent file: size and CRC recorded anew, so only values are wrong
    raw = side.read_bytes()
    entry["sidecars"]["logic"].update(bytes=len(raw), crc32=zlib.crc32(raw))
    (data / MANIFEST_NAME).write_text(json.dumps(m))
    problems, _ = verify(data)
    assert len(problems) == 1 and side.name in problems[0] and "logic pool at state row 3" in problems[0]


def test_a_reader_that_verifies_refuses_a_broken_chunk_when_it_extends(tmp_path):
    data = write_dataset(tmp_path / "ds", nan_at=85)
    reader = DatasetReader(data, limit=40, verify=True)
    reader.extend(60)
    with pytest.raises(Exception, match="non-finite reward"):
        reader.extend(100)


# --------------------------------------------------------------------------- 2. unfinished datasets


def test_a_dataset_being_written_is_refused_unless_partial_is_asked(tmp_path, capsys):
    data = write_dataset(tmp_path / "ds", finish=False, marks=[20, 60], planned_marks=5)
    assert json.loads((data / MANIFEST_NAME).read_text())["writer_finished"] is False
    writer = DatasetWriter(data, env="cartpole", num_envs=NUM_ENVS, logic_shape=(2, 2),
                           neural_shape=(4,), neural_dtype=np.float32, n_actions=2, resume_at=100)
    try:  # the online run is still writing
        assert offline_main(offline_args(tmp_path, data), "iql") == 2
        (line,) = error_lines(capsys.readouterr().err)
        assert "still being written" in line and "2 of 5 marks present" in line
        assert "--partial_dataset" in line
    finally:
        writer.close()
    # the online run stopped without finishing: refused, saying so
    assert offline_main(offline_args(tmp_path, data), "iql") == 2
    (line,) = error_lines(capsys.readouterr().err)
    assert "was not finished by its online run" in line and "2 of 5 marks" in line
    assert not (tmp_path / "runs").exists()

    assert offline_main(offline_args(tmp_path, data, partial_dataset=True), "iql") == 0
    assert "training on the 2 of 5 marks present" in capsys.readouterr().err
    run = tmp_path / "runs" / "off"
    assert [r["data_limit"] for r in json.loads((run / "results.json").read_text())] == [20, 60]
    meta = json.loads((run / "run.json").read_text())
    assert meta["dataset_partial"] is True and meta["args"]["partial_dataset"] is True


def test_a_finished_dataset_is_not_partial_and_an_old_manifest_counts_as_finished(tmp_path, capsys):
    data = write_dataset(tmp_path / "ds")
    m = json.loads((data / MANIFEST_NAME).read_text())
    del m["writer_finished"]  # written before the field existed
    (data / MANIFEST_NAME).write_text(json.dumps(m))
    assert offline_main(offline_args(tmp_path, data), "iql") == 0
    assert json.loads((tmp_path / "runs" / "off" / "run.json").read_text())["dataset_partial"] is False


def test_an_online_run_finishes_its_dataset_only_at_its_end(tmp_path):
    common = ["--total_timesteps", "1024", "--num_steps", "64", "--intervals", "2", "--eval_episodes",
              "1", "--save_dataset", "--run_id", "on", "--runs_dir", str(tmp_path / "runs"),
              "--dataset_dir", str(tmp_path / "data")]
    r = script("train_neuralppo.py", *common)
    assert r.returncode == 0, r.stderr
    m = json.loads((tmp_path / "data" / "on" / MANIFEST_NAME).read_text())
    assert m["writer_finished"] is True
    assert (m["metadata"]["planned_marks"], m["metadata"]["planned_transitions"]) == (2, 1024)


# --------------------------------------------------------------------------- 5. one writer per run


def _hold_lock(run_dir: Path) -> subprocess.Popen:
    """Another process holding the run folder's lock, as a running job does."""
    code = ("import sys, time; from blendrl.run_dir import RunDir; "
            f"r = RunDir({str(run_dir.parent)!r}, {run_dir.name!r}); r.lock(); "
            "print('locked', flush=True); time.sleep(120)")
    proc = subprocess.Popen([sys.executable, "-c", code], cwd=ROOT, stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "locked"
    return proc


def test_a_second_job_on_an_offline_run_folder_exits_2_before_writing(tmp_path):
    data = write_dataset(tmp_path / "ds")
    assert offline_main(offline_args(tmp_path, data, epochs=2), "iql") == 0
    run = tmp_path / "runs" / "off"
    holder = _hold_lock(run)
    try:
        before = snapshot_files(run)
        r = script("train_iql.py", "--dataset", str(data), "--run_id", "off", "--runs_dir",
                   str(tmp_path / "runs"), "--epochs", "3", "--resume")
        assert r.returncode == 2, r.stderr
        (line,) = error_lines(r.stderr)
        assert "another job is writing run folder" in line and f"pid {holder.pid}" in line
        assert snapshot_files(run) == before
    finally:
        holder.kill()
        holder.wait()


def test_a_second_resume_of_an_online_run_exits_2_before_writing(tmp_path):
    common = ["--total_timesteps", "1024", "--num_steps", "64", "--intervals", "2", "--eval_episodes",
              "1", "--save_dataset", "--run_id", "on", "--runs_dir", str(tmp_path / "runs"),
              "--dataset_dir", str(tmp_path / "data")]
    assert script("train_neuralppo.py", *common).returncode == 0
    run = tmp_path / "runs" / "on"
    holder = _hold_lock(run)
    try:
        before = snapshot_files(run), snapshot_files(tmp_path / "data")
        r = script("train_neuralppo.py", *common, "--resume")
        assert r.returncode == 2, r.stderr
        (line,) = error_lines(r.stderr)
        assert "another job is writing run folder" in line and "Traceback" not in r.stderr
        assert (snapshot_files(run), snapshot_files(tmp_path / "data")) == before  # no TensorBoard file
    finally:
        holder.kill()
        holder.wait()


# --------------------------------------------------------------------------- 8. resume of a complete run


def test_resume_of_a_complete_offline_run_says_so_and_changes_nothing(tmp_path, capsys):
    data = write_dataset(tmp_path / "ds")
    assert offline_main(offline_args(tmp_path, data), "iql") == 0
    run = tmp_path / "runs" / "off"
    before = snapshot_files(run)
    capsys.readouterr()
    assert offline_main(offline_args(tmp_path, data, resume=True), "iql") == 0
    err = capsys.readouterr().err
    assert "already complete (3 of 3 intervals evaluated)" in err and "warning" not in err
    assert snapshot_files(run) == before


def test_resume_of_a_complete_online_run_says_so_and_changes_nothing(tmp_path):
    common = ["--total_timesteps", "1024", "--num_steps", "64", "--intervals", "2", "--eval_episodes",
              "1", "--save_dataset", "--run_id", "on", "--runs_dir", str(tmp_path / "runs"),
              "--dataset_dir", str(tmp_path / "data")]
    assert script("train_neuralppo.py", *common).returncode == 0
    before = snapshot_files(tmp_path)
    r = script("train_neuralppo.py", *common, "--resume")
    assert r.returncode == 0, r.stderr
    assert "already complete (2 evaluations, 1024 steps)" in r.stderr
    assert "warning" not in r.stderr and "SPS" not in r.stderr
    assert snapshot_files(tmp_path) == before


# --------------------------------------------------------------------------- 7. disk full


@pytest.fixture
def small_disk(tmp_path):
    """A 600 kB tmpfs (root only): ``(folder, grow)``, ``grow()`` makes it 8 MB."""
    if os.geteuid() != 0:
        pytest.skip("needs root to mount a small tmpfs")
    mnt = tmp_path / "small"
    mnt.mkdir()
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=600k", "tmpfs", str(mnt)],
                       capture_output=True, text=True)
    if r.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {r.stderr.strip()}")

    def grow() -> None:
        subprocess.run(["mount", "-o", "remount,size=8m", str(mnt)], check=True)

    try:
        yield mnt, grow
    finally:
        subprocess.run(["umount", "-l", str(mnt)], capture_output=True)


ONLINE = ["--total_timesteps", "12288", "--intervals", "4", "--eval_episodes", "2", "--save_dataset",
          "--chunk_size", "1000", "--run_id", "a"]


def test_disk_full_online_is_one_line_and_resumes_exactly(tmp_path, small_disk):
    mnt, grow = small_disk
    where = ["--runs_dir", str(mnt / "runs"), "--dataset_dir", str(mnt / "data")]
    r = script("train_neuralppo.py", *ONLINE, *where)
    assert r.returncode == EXIT_NO_SPACE, r.stderr
    assert "Traceback" not in r.stderr
    (line,) = error_lines(r.stderr)
    assert str(mnt) in line and "No space left on device" in line and "MB free there" in line
    assert "--resume" in line
    problems, _ = verify(mnt / "data" / "a")  # what was written is intact
    assert problems == []

    grow()
    r = script("train_neuralppo.py", *ONLINE, *where, "--resume")
    assert r.returncode == 0, r.stderr
    straight = script("train_neuralppo.py", *ONLINE, "--runs_dir", str(tmp_path / "runs"),
                      "--dataset_dir", str(tmp_path / "data"))
    assert straight.returncode == 0, straight.stderr
    a = json.loads((mnt / "runs" / "a" / "results.json").read_text())
    b = json.loads((tmp_path / "runs" / "a" / "results.json").read_text())
    assert [(x["returns"], x["data_limit"]) for x in a] == [(x["returns"], x["data_limit"]) for x in b]
    ra, rb = DatasetReader(mnt / "data" / "a"), DatasetReader(tmp_path / "data" / "a")
    xa, xb = ra.get(np.arange(len(ra))), rb.get(np.arange(len(rb)))
    assert len(ra) == len(rb) == 12288
    assert all(np.array_equal(getattr(xa, f), getattr(xb, f)) for f in xa._fields)


def test_disk_full_offline_is_one_line_and_resumes_exactly(tmp_path, small_disk, capsys):
    mnt, grow = small_disk
    data = write_dataset(tmp_path / "ds", steps=400, marks=[200, 400, 600, 800])
    (mnt / "filler").write_bytes(b"\0" * 250_000)  # room for the first interval's checkpoints only
    small = dict(epochs=2, critic_hidden=32, hidden=16)  # checkpoints of ~0.1 MB
    status = offline_main(offline_args(tmp_path, data, runs_dir=mnt / "runs", **small), "iql")
    assert status == EXIT_NO_SPACE
    (line,) = error_lines(capsys.readouterr().err)
    assert str(mnt / "runs" / "off") in line and "No space left on device" in line
    grow()
    assert offline_main(offline_args(tmp_path, data, runs_dir=mnt / "runs", resume=True, **small),
                        "iql") == 0
    assert offline_main(offline_args(tmp_path, data, **small), "iql") == 0
    a = json.loads((mnt / "runs" / "off" / "results.json").read_text())
    b = json.loads((tmp_path / "runs" / "off" / "results.json").read_text())
    assert len(a) == 4
    assert [(x["returns"], x["data_limit"], x["grad_steps"]) for x in a] == \
        [(x["returns"], x["data_limit"], x["grad_steps"]) for x in b]
    import torch
    wa, wb = (torch.load(d / "off" / "checkpoints" / "latest.pt", weights_only=True)["trainer"]
              for d in (mnt / "runs", tmp_path / "runs"))
    assert wa["num_updates"] == wb["num_updates"] == 250
    for key in ("q1", "q2", "value", "actor"):
        assert all(torch.equal(wa[key][k], wb[key][k]) for k in wb[key]), key


def test_a_read_only_runs_folder_is_one_line(tmp_path, small_disk):
    mnt, _ = small_disk
    subprocess.run(["mount", "-o", "remount,ro", str(mnt)], check=True)
    r = script("train_neuralppo.py", *ONLINE, "--runs_dir", str(mnt / "runs"), "--dataset_dir",
               str(tmp_path / "data"))
    assert r.returncode == EXIT_NO_SPACE, r.stderr
    assert "Traceback" not in r.stderr
    (line,) = error_lines(r.stderr)
    assert str(mnt / "runs") in line and "Read-only file system" in line


def test_plots_on_a_full_disk_are_one_line_and_a_read_only_folder_a_usage_error(tmp_path, small_disk):
    from helpers_runs import evaluation, timing, training_log, write_run

    mnt, _ = small_disk
    write_run(tmp_path / "runs", "p", exp_id="e", method="ppo", seed=0,
              results=[evaluation(1, 100, [1.0, 2.0], 1.0, 1.0)], timing=timing(2.0),
              log=training_log([50, 100], [1.0, 2.0]))
    plot = ["e", "--runs_dir", str(tmp_path / "runs"), "--output_dir", str(mnt / "plots")]
    (mnt / "filler").write_bytes(b"\0" * 560_000)  # the first figure does not fit
    r = script("plot_results.py", *plot)
    assert r.returncode == EXIT_NO_SPACE, r.stderr
    assert "Traceback" not in r.stderr
    (line,) = error_lines(r.stderr)
    assert str(mnt / "plots" / "e") in line and "No space left on device" in line
    (mnt / "filler").unlink()
    subprocess.run(["mount", "-o", "remount,ro", str(mnt)], check=True)
    r = script("plot_results.py", *plot)  # checked before any work
    assert r.returncode == 2 and "cannot be created or written" in r.stderr


def test_the_launcher_on_a_full_disk_is_one_line_and_starts_nothing(tmp_path, small_disk):
    mnt, _ = small_disk
    (mnt / "filler").write_bytes(b"\0" * 590_000)
    r = script("run_full_cycle.py", "--work_dir", str(mnt / "w"), "--detach")
    assert r.returncode == EXIT_NO_SPACE, r.stderr
    assert "Traceback" not in r.stderr
    (line,) = error_lines(r.stderr)
    assert str(mnt / "w" / "logs") in line and "No space left on device" in line
    assert not (mnt / "w" / "out").exists()  # no job started
