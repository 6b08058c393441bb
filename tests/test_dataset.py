"""Tests of dataset_utils: exact round trips, crash safety, resume, sampling, safe loading, CLI."""

from __future__ import annotations

import json
import os
import pickle
import shutil
import signal
import subprocess
import sys
import time
import zlib
from pathlib import Path

import numpy as np
import pytest

from dataset_utils import (MANIFEST_NAME, Batch, DatasetError, DatasetReader, DatasetWriter,
                           safe_load_pickle, summarize, verify)
from helpers_dataset import (FIELDS, assert_batch_matches, assert_bits_equal, flatten, make_stream,
                             write_steps, writer_kwargs)

ROOT = Path(__file__).resolve().parent.parent
HELPER = Path(__file__).resolve().parent / "helpers_dataset.py"
V1_DATA = Path(__file__).resolve().parent / "data"
"""Datasets written by the format-1 writer (commit 528fe13): ``make_stream(kind, n, t, seed=31,
glitch=0.1)`` of :data:`V1_STREAMS`, a mark after step 10, metadata ``{"method": "ppo", ...}``."""
V1_STREAMS = {"tinyframes": (3, 20, 21), "classic": (2, 15, 10)}  # kind: num_envs, steps, chunk_size


def _env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(ROOT)}


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(ROOT / "dataset_utils.py"), *map(str, args)],
                          capture_output=True, text=True, timeout=120, env=_env())


def write_dataset(d: Path, kind: str, num_envs: int, steps: list[dict], chunk_size: int,
                  flush_at: tuple[int, ...] = (), **extra) -> None:
    with DatasetWriter(d, chunk_size=chunk_size, **writer_kwargs(kind, num_envs, **extra)) as w:
        for t, s in enumerate(steps):
            if t in flush_at:
                w.flush()
            w.add(*(s[k] for k in FIELDS), life_lost=s.get("life_lost"))


def read_all(d: Path) -> tuple[DatasetReader, Batch]:
    r = DatasetReader(d)
    return r, r.get(np.arange(len(r)))


def rows_differ(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    n = a.shape[0]
    return ~(a.reshape(n, -1).view(np.uint8) == b.reshape(n, -1).view(np.uint8)).all(1)


def manifest(d: Path) -> dict:
    return json.loads((d / MANIFEST_NAME).read_text())


def files_of(m: dict) -> set[str]:
    """The files the manifest's chunks are made of: each pickle and its sidecar pools."""
    return {e["file"] for e in m["chunks"]} | {s["file"] for e in m["chunks"]
                                               for s in e.get("sidecars", {}).values()}


def chunk_bytes(e: dict) -> int:
    """Bytes of one chunk on disk: its pickle and its pools."""
    return e["bytes"] + sum(s["bytes"] for s in e.get("sidecars", {}).values())


def rewrite_chunk(d: Path, entry_index: int, payload: bytes) -> Path:
    """Replace a chunk file's bytes and fix the manifest's size and CRC, so only the loader is left."""
    m = manifest(d)
    e = m["chunks"][entry_index]
    path = d / e["file"]
    path.write_bytes(payload)
    e["bytes"], e["crc32"] = len(payload), zlib.crc32(payload)
    (d / MANIFEST_NAME).write_text(json.dumps(m))
    return path


# --------------------------------------------------------------------------- round trips


@pytest.mark.parametrize("kind,num_envs,n_steps,glitch,chunk_size,flush_at", [
    ("classic", 3, 57, 0.0, 20, (11,)),
    ("classic", 3, 57, 0.1, 20, (11, 12)),
    ("atari", 2, 30, 0.0, 20, (7,)),
    ("tinyframes", 4, 60, 0.1, 37, (5, 33)),
])
def test_round_trip_is_exact(tmp_path, kind, num_envs, n_steps, glitch, chunk_size, flush_at):
    steps = make_stream(kind, num_envs, n_steps, seed=1, glitch=glitch)
    exp = flatten(steps)
    assert exp["terminated"].any() and exp["truncated"].any()
    assert (exp["terminated"] & exp["truncated"]).any()
    d = tmp_path / "ds"
    write_dataset(d, kind, num_envs, steps, chunk_size, flush_at)
    r, batch = read_all(d)
    total = num_envs * n_steps
    assert len(r) == total and r.env == f"test-{kind}"
    assert_batch_matches(batch, exp, np.arange(total))
    perm = np.random.default_rng(0).permutation(total)
    assert_batch_matches(r.get(perm), exp, perm)

    chunks = manifest(d)["chunks"]
    assert len(chunks) >= 3
    if kind == "classic":  # bit-exactness is really exercised
        assert np.isnan(exp["logic"]).any() and (np.signbit(exp["logic"]) & (exp["logic"] == 0)).any()

    # next state = following row's state except where the episode ended (or the stream jumped)
    nxt_row = np.arange(total - num_envs)
    differs = rows_differ(batch.next_logic_state[nxt_row], batch.logic_state[nxt_row + num_envs]) | \
        rows_differ(batch.next_neural_state[nxt_row], batch.neural_state[nxt_row + num_envs])
    done = (exp["terminated"] | exp["truncated"])[nxt_row]
    assert np.all(differs[done]), "an episode's final state must not be the reset state"
    if glitch == 0:
        assert not differs[~done].any()

    # stored only where needed: per chunk, the rows whose next differs (last step excluded) + one step
    for e in chunks:
        inner = np.arange(e["start"], e["start"] + e["count"] - num_envs)
        assert e["n_next"] == int(differs[inner].sum()) + num_envs, e
        if len(KIND_SHAPE[kind]) == 3:  # keys: first step + stacks that are not a one-frame shift
            later = np.arange(e["start"] + num_envs, e["start"] + e["count"])
            cur, prev = exp["neural"][later], exp["neural"][later - num_envs]
            not_shift = ~(cur[:, :-1] == prev[:, 1:]).all(axis=(1, 2, 3))
            assert e["n_keys"] == int(not_shift.sum()) + num_envs, e
    assert verify(d, values=False) == ([], [])
    problems, _ = verify(d)  # the NaNs kept exactly are what no offline run may train on
    assert bool(problems) == bool(np.isnan(exp["logic"]).any())
    assert all("non-finite value (NaN or inf) in the logic pool" in p for p in problems)


KIND_SHAPE = {"classic": (4,), "atari": (4, 84, 84), "tinyframes": (4, 6, 5)}


def test_real_cartpole_vec_env_round_trip(tmp_path):
    """The VecEnv contract end to end (its arrays may alias each other): stored exactly as stepped."""
    from blendrl.envs import get_spec, make_vec_env

    spec, n, t = get_spec("cartpole"), 4, 150
    env = make_vec_env("cartpole", n)
    logic, neural = env.reset(seed=0)
    rng = np.random.default_rng(0)
    rows = {k: [] for k in FIELDS}
    d = tmp_path / "ds"
    with DatasetWriter(d, env="cartpole", num_envs=n, logic_shape=spec.logic_shape,
                       neural_shape=spec.neural_shape, neural_dtype=spec.neural_dtype,
                       n_actions=spec.n_actions, chunk_size=100) as w:
        for _ in range(t):
            action = rng.integers(0, spec.n_actions, n)
            b = env.step(action)
            step = (logic, neural, action, b.reward, b.next_logic, b.next_neural, b.terminated, b.truncated)
            w.add(*step)
            for k, a in zip(FIELDS, step):
                rows[k].append(np.array(a, copy=True))
            logic, neural = b.obs_logic, b.obs_neural
    env.close()
    exp = {k: np.concatenate(v) for k, v in rows.items()}
    assert exp["terminated"].sum() >= 10  # random actions drop the pole often
    r, batch = read_all(d)
    assert len(r) == n * t
    assert_batch_matches(batch, exp, np.arange(n * t))


def test_atari_frames_take_about_one_frame_per_transition(tmp_path):
    """Long episodes: on disk, a transition costs one 84x84 frame plus its logic state, not a stack."""
    n, t = 2, 120
    steps = make_stream("atari", n, t, seed=3, max_len=10_000, p_term=0.005)
    exp = flatten(steps)
    ends = int((exp["terminated"] | exp["truncated"]).sum())
    assert ends >= 1
    d = tmp_path / "ds"
    write_dataset(d, "atari", n, steps, chunk_size=10_000)
    (e,) = manifest(d)["chunks"]
    # keys: the first step + the first state of each later episode; next: the ends + the last step
    assert e["n_keys"] == n + ends and e["n_next"] == n + ends
    frame, logic = 84 * 84, 40 * 6 * 4
    payload = (n * t * (frame + logic + 1 + 8 + 2)  # newest frame, logic, action, reward, flags
               + e["n_keys"] * (3 * frame + 8)  # older frames of key rows + index
               + e["n_next"] * (4 * frame + logic + 8))  # explicit next stacks + logic + index
    # pickle's own overhead ~1 KB a chunk; two .npy headers of 128 bytes
    assert payload <= chunk_bytes(e) <= payload + 2048
    per = summarize(d)["bytes_per_transition"]
    assert per < 4 * frame / 2  # well under one stack per transition
    assert_batch_matches(DatasetReader(d).get(np.arange(n * t)), exp, np.arange(n * t))


def test_reader_limit_loads_only_the_chunks_it_needs(tmp_path):
    n, t = 2, 50
    steps = make_stream("tinyframes", n, t, seed=4)
    exp = flatten(steps)
    d = tmp_path / "ds"
    write_dataset(d, "tinyframes", n, steps, chunk_size=20)
    limit = 47  # inside the chunk [40, 60), not a whole step
    for e in manifest(d)["chunks"]:
        if e["start"] >= limit:
            (d / e["file"]).unlink()
    r = DatasetReader(d, limit=limit)
    assert len(r) == limit
    assert_batch_matches(r.get(np.arange(limit)), exp, np.arange(limit))
    with pytest.raises(DatasetError, match="positions must lie in"):
        r.get([limit])
    with pytest.raises(DatasetError, match="chunk_000000000060"):
        DatasetReader(d)  # all of it needs the deleted chunks
    for bad in (0, -1, n * t + 1, 2.5, True):
        with pytest.raises(DatasetError, match="limit"):
            DatasetReader(d, limit=bad)


def _indexed_dataset(d: Path, n_rows: int, num_envs: int = 2, chunk_size: int = 16) -> None:
    """A classic dataset whose reward is each transition's position."""
    steps = make_stream("classic", num_envs, n_rows // num_envs, seed=5)
    for t, s in enumerate(steps):
        s["reward"] = np.arange(t * num_envs, (t + 1) * num_envs, dtype=np.float64)
    write_dataset(d, "classic", num_envs, steps, chunk_size)


def test_sample_stays_below_limit_and_covers_the_prefix(tmp_path):
    d = tmp_path / "ds"
    _indexed_dataset(d, 100)
    r = DatasetReader(d, limit=37)
    rng = np.random.default_rng(7)
    pos = np.concatenate([r.sample(64, rng).reward for _ in range(500)]).astype(np.int64)
    assert pos.min() >= 0 and pos.max() < 37
    counts = np.bincount(pos, minlength=37)
    assert (counts > 0).all()
    expected = pos.size / 37  # uniform: each count within 6 standard deviations
    assert np.abs(counts - expected).max() < 6 * np.sqrt(expected)
    b1, b2 = r.sample(32, np.random.default_rng(3)), r.sample(32, np.random.default_rng(3))
    assert np.array_equal(b1.reward, b2.reward)
    assert r.sample(5).reward.max() < 37 and len(r.sample(5).action) == 5
    for bad in (0, -3, 2.0):
        with pytest.raises(DatasetError, match="batch_size"):
            r.sample(bad)


def test_get_keeps_the_given_order_and_refuses_bad_positions(tmp_path):
    d = tmp_path / "ds"
    _indexed_dataset(d, 100)
    r = DatasetReader(d)
    assert r.get([5, 0, 5, 99]).reward.tolist() == [5.0, 0.0, 5.0, 99.0]
    assert r.get([]).reward.shape == (0,)
    for bad in ([-1], [100], [[1, 2]], [1.5]):
        with pytest.raises(DatasetError):
            r.get(bad)


@pytest.mark.parametrize("kind", ["classic", "tinyframes"])
def test_batch_to_torch(tmp_path, kind):
    import torch
    steps = make_stream(kind, 2, 10, seed=6)
    d = tmp_path / "ds"
    write_dataset(d, kind, 2, steps, chunk_size=8)
    b = DatasetReader(d).get(np.arange(20))
    tb = b.to_torch("cpu")
    assert isinstance(tb, Batch)
    assert tb.logic_state.dtype == torch.float32 and tb.next_logic_state.dtype == torch.float32
    want_neural = torch.float32 if kind == "classic" else torch.uint8
    assert tb.neural_state.dtype == want_neural and tb.next_neural_state.dtype == want_neural
    assert tb.action.dtype == torch.int64
    assert tb.reward.dtype == tb.terminated.dtype == tb.truncated.dtype == torch.float32
    assert torch.equal(tb.neural_state, torch.from_numpy(b.neural_state))
    assert tb.terminated.tolist() == b.terminated.astype(np.float32).tolist()
    assert torch.equal(tb.reward, torch.from_numpy(b.reward.astype(np.float32)))


# --------------------------------------------------------------------------- crash safety


def _spawn_writer(d: Path, **kw) -> subprocess.Popen:
    args = [sys.executable, str(HELPER), "--directory", str(d)]
    for k, v in kw.items():
        args += [f"--{k.replace('_', '-')}", str(v)]
    return subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=_env())


def _wait_line(p: subprocess.Popen, prefix: str) -> int:
    line = p.stdout.readline()
    if not line.startswith(prefix):
        p.kill()
        raise AssertionError(f"writer said {line!r}; stderr: {p.stderr.read()}")
    return int(line.split()[1])


def test_sigkill_mid_chunk_leaves_every_complete_chunk(tmp_path):
    d = tmp_path / "ds"
    n, t = 3, 40
    p = _spawn_writer(d, num_envs=n, steps=t, chunk_size=30, stop_after=25)
    try:
        assert _wait_line(p, "STARTED") == 0
        assert _wait_line(p, "READY") == 75  # 2 full chunks of 30 on disk, 15 rows buffered
        p.send_signal(signal.SIGKILL)
        assert p.wait(30) == -signal.SIGKILL
    finally:
        p.kill()
        p.wait()
    res = run_cli("verify", d)
    assert res.returncode == 0, res.stderr
    exp = flatten(make_stream("tinyframes", n, t, seed=0))
    r, batch = read_all(d)
    assert len(r) == 60
    assert_batch_matches(batch, exp, np.arange(60))
    # the killed writer's lock died with it: resuming continues to the end without loss
    with DatasetWriter(d, chunk_size=30, resume_at=60, **writer_kwargs("tinyframes", n)) as w:
        write_steps(w, make_stream("tinyframes", n, t, seed=0)[20:])
    r, batch = read_all(d)
    assert len(r) == n * t
    assert_batch_matches(batch, exp, np.arange(n * t))


def test_sigkill_at_random_moments_then_resume_loses_and_duplicates_nothing(tmp_path):
    """Kill a flushing writer at random times; each time verify, read back, resume at the last mark."""
    d = tmp_path / "ds"
    n, t = 3, 200
    exp = flatten(make_stream("tinyframes", n, t, seed=0))
    rng = np.random.default_rng(11)
    resume_at = -1
    finished = False
    rounds = 0
    while not finished:
        rounds += 1
        p = _spawn_writer(d, num_envs=n, steps=t, chunk_size=40, flush_every=7, step_sleep=0.002,
                          resume_at=resume_at)
        try:
            assert _wait_line(p, "STARTED") == max(resume_at, 0)
            if rounds <= 4:
                time.sleep(float(rng.uniform(0.02, 0.35)))
                p.send_signal(signal.SIGKILL)
            rc = p.wait(60)
        finally:
            p.kill()
            p.wait()
        finished = rc == 0
        assert rc in (0, -signal.SIGKILL)
        problems, _ = verify(d)  # the same check as the CLI's (run as a process in the test above)
        assert problems == []
        r, batch = read_all(d)
        assert_batch_matches(batch, exp, np.arange(len(r)))
        assert all(m % (7 * n) == 0 for m in r.marks)
        # a checkpoint is taken at each flush (the marks): resume there, dropping what came after
        resume_at = max([0] + r.marks)
    r, batch = read_all(d)
    assert len(r) == n * t
    assert_batch_matches(batch, exp, np.arange(n * t))
    assert {f.name for f in d.iterdir()} == files_of(r.manifest) | {MANIFEST_NAME, ".writer.lock"}


# --------------------------------------------------------------------------- resume


@pytest.mark.parametrize("at_step", [17, 14, 0, 35])  # mid-chunk, chunk boundary, start, everything
def test_resume_drops_the_tail_and_matches_a_straight_write(tmp_path, at_step):
    n, t = 3, 50
    steps = make_stream("tinyframes", n, t, seed=8, glitch=0.05)
    exp = flatten(steps)
    straight = tmp_path / "straight"
    write_dataset(straight, "tinyframes", n, steps, chunk_size=21)

    d = tmp_path / "resumed"
    kw = writer_kwargs("tinyframes", n, metadata={"method": "ppo", "run_id": "r1"})
    with DatasetWriter(d, chunk_size=21, **kw) as w:  # written up to step 35, beyond the checkpoint
        for k, s in enumerate(steps[:35]):
            w.add(*(s[f] for f in FIELDS))
            if (k + 1) % 5 == 0:
                w.mark(w.count)
    assert manifest(d)["marks"] == list(range(15, 106, 15))
    at = at_step * n
    with DatasetWriter(d, chunk_size=21, resume_at=at, **writer_kwargs("tinyframes", n)) as w:
        assert w.count == at
        on_disk = DatasetReader(d) if at else None  # the dataset on disk already ends at `at`
        if on_disk is not None:
            assert len(on_disk) == at and on_disk.marks == [m for m in range(15, 106, 15) if m <= at]
            assert_batch_matches(on_disk.get(np.arange(at)), exp, np.arange(at))
        assert manifest(d)["count"] == at
        write_steps(w, steps[at_step:])
    r, batch = read_all(d)
    assert len(r) == n * t
    assert_batch_matches(batch, exp, np.arange(n * t))
    _, straight_batch = read_all(straight)
    for name in Batch._fields:
        assert_bits_equal(getattr(batch, name), getattr(straight_batch, name), name)
    assert r.metadata == {"method": "ppo", "run_id": "r1"}
    assert {f.name for f in d.iterdir()} == files_of(r.manifest) | {MANIFEST_NAME, ".writer.lock"}


def test_random_layouts_flushes_and_resumes_stay_exact(tmp_path):
    """Seeded random chunk sizes, env counts, flush points and resume points: always exact."""
    rng = np.random.default_rng(21)
    for trial in range(8):
        kind = ("classic", "tinyframes")[trial % 2]
        n = int(rng.integers(1, 5))
        t = int(rng.integers(5, 40))
        steps = make_stream(kind, n, t, seed=trial, glitch=0.1)
        exp = flatten(steps)
        d = tmp_path / f"t{trial}"
        kw = writer_kwargs(kind, n)
        chunk = int(rng.integers(1, 30))
        flushes = set(rng.integers(0, t, 3).tolist())
        stop = int(rng.integers(1, t + 1))  # written before the "crash"
        with DatasetWriter(d, chunk_size=chunk, **kw) as w:
            for k in range(stop):
                w.add(*(steps[k][f] for f in FIELDS))
                if k in flushes:
                    w.flush()
        back = int(rng.integers(0, stop + 1))  # the checkpoint's step
        with DatasetWriter(d, chunk_size=int(rng.integers(1, 30)), resume_at=back * n, **kw) as w:
            write_steps(w, steps[back:])
        r, batch = read_all(d)
        assert len(r) == n * t, (trial, n, t, chunk, stop, back)
        assert_batch_matches(batch, exp, np.arange(n * t))
        assert verify(d, values=False) == ([], [])


def test_open_and_resume_refuse_bad_requests(tmp_path):
    n = 2
    steps = make_stream("classic", n, 20, seed=9)
    d = tmp_path / "ds"
    write_dataset(d, "classic", n, steps, chunk_size=10)
    before = {f.name: f.read_bytes() for f in d.iterdir()}
    kw = writer_kwargs("classic", n)
    with pytest.raises(DatasetError, match="already holds a dataset of 40"):
        DatasetWriter(d, **kw)
    for at in (3, 42, -2):
        with pytest.raises(DatasetError, match="cannot resume at"):
            DatasetWriter(d, resume_at=at, **kw)
    bad = [{"env": "other"}, {"logic_shape": (4, 1)}, {"neural_shape": (5,)},
           {"neural_dtype": np.float64}, {"n_actions": 3}]
    for change in bad:
        with pytest.raises(DatasetError, match="does not match"):
            DatasetWriter(d, resume_at=20, **{**kw, **change})
    with pytest.raises(DatasetError, match="does not match"):
        DatasetWriter(d, resume_at=20, **writer_kwargs("classic", 4))
    assert {f.name: f.read_bytes() for f in d.iterdir()} == before  # nothing touched

    with DatasetWriter(d, resume_at=40, **kw):
        with pytest.raises(DatasetError, match="another writer"):
            DatasetWriter(d, resume_at=40, **kw)
        with pytest.raises(DatasetError, match="writer holds"):
            DatasetWriter.remove(d)
    with pytest.raises(DatasetError, match="no manifest"):
        DatasetWriter(tmp_path / "fresh", resume_at=0, **kw)
    other = tmp_path / "other"
    other.mkdir()
    (other / "notes.txt").write_text("mine")
    with pytest.raises(DatasetError, match="not empty and not a dataset"):
        DatasetWriter(other, **kw)
    with pytest.raises(DatasetError, match="not a dataset"):
        DatasetWriter.remove(other)
    assert (other / "notes.txt").read_text() == "mine"

    DatasetWriter.remove(d)
    assert not d.exists()
    write_dataset(d, "classic", n, steps[:3], chunk_size=10)
    assert len(DatasetReader(d)) == 6


def test_writer_argument_errors(tmp_path):
    kw = writer_kwargs("classic", 2)
    for change, msg in [({"num_envs": 0}, "num_envs"), ({"logic_shape": (4,)}, "logic_shape"),
                        ({"neural_shape": (0,)}, "neural_shape"), ({"neural_dtype": object}, "neural_dtype"),
                        ({"n_actions": 0}, "n_actions"), ({"chunk_size": 0}, "chunk_size"),
                        ({"metadata": {"f": object()}}, "JSON"), ({"env": ""}, "env")]:
        with pytest.raises(DatasetError, match=msg):
            DatasetWriter(tmp_path / "x", **{**kw, **change})


@pytest.mark.parametrize("kind,field,value,msg", [
    ("classic", "logic", lambda s: s["logic"].astype(np.float64), "logic must be float32"),
    ("classic", "next_logic", lambda s: s["next_logic"][:, :1], "next_logic must have shape"),
    ("classic", "neural", lambda s: s["neural"][:1], "neural must have shape"),
    ("classic", "action", lambda s: s["action"].astype(np.float32), "action must be an integer"),
    ("classic", "action", lambda s: np.array([0, 2]), r"actions must lie in \[0, 2\)"),
    ("classic", "action", lambda s: np.array([-1, 0]), "actions must lie"),
    ("classic", "reward", lambda s: np.array([1, 2]), "reward must be a float32/float64"),
    ("classic", "terminated", lambda s: s["terminated"].astype(np.int8), "terminated must be bool"),
    ("classic", "truncated", lambda s: np.zeros(3, bool), "truncated must have shape"),
    ("atari", "neural", lambda s: s["neural"].astype(np.float32), "neural must be uint8"),
    ("atari", "next_neural", lambda s: s["next_neural"][..., :83], "next_neural must have shape"),
])
def test_add_refuses_bad_shapes_and_dtypes(tmp_path, kind, field, value, msg):
    steps = make_stream(kind, 2, 2, seed=10)
    with DatasetWriter(tmp_path / "ds", **writer_kwargs(kind, 2)) as w:
        w.add(*(steps[0][k] for k in FIELDS))
        bad = {**steps[1], field: value(steps[1])}
        with pytest.raises(DatasetError, match=msg):
            w.add(*(bad[k] for k in FIELDS))
        assert w.count == 2
    assert len(DatasetReader(tmp_path / "ds")) == 2


def test_marks_are_sorted_checked_and_persisted(tmp_path):
    n = 2
    steps = make_stream("classic", n, 10, seed=12)
    d = tmp_path / "ds"
    w = DatasetWriter(d, chunk_size=100, **writer_kwargs("classic", n))
    write_steps(w, steps[:5])
    w.mark(10)
    w.mark(4)
    w.mark(10)
    with pytest.raises(DatasetError, match="outside"):
        w.mark(11)
    assert w.marks == [4, 10]
    assert manifest(d)["marks"] == []  # not on disk before a flush: count on disk is still 0
    w.flush()
    assert manifest(d)["marks"] == [4, 10] and manifest(d)["count"] == 10
    w.mark(0)
    w.flush()  # no new rows, but the mark is written
    assert DatasetReader(d).marks == [0, 4, 10]
    write_steps(w, steps[5:])
    w.close()
    w.close()  # idempotent
    with pytest.raises(DatasetError, match="closed"):
        w.add(*(steps[0][k] for k in FIELDS))
    assert DatasetReader(d).marks == [0, 4, 10] and len(DatasetReader(d)) == 20


# --------------------------------------------------------------------------- safe loading


class _OpenFile:
    """Unpickling this calls open(path, 'w'): the file appears if the payload runs."""

    def __init__(self, path: Path):
        self.path = path

    def __reduce__(self):
        return (open, (str(self.path), "w"))


class _System:
    def __init__(self, path: Path):
        self.path = path

    def __reduce__(self):
        return (os.system, (f"touch '{self.path}'",))


@pytest.mark.parametrize("payload_cls", [_OpenFile, _System])
def test_crafted_pickle_is_refused_and_does_not_run(tmp_path, payload_cls):
    # the payload is real: plain pickle would run it
    probe = tmp_path / "probe"
    pickle.loads(pickle.dumps(payload_cls(probe)))
    assert probe.exists()

    d = tmp_path / "ds"
    write_dataset(d, "classic", 2, make_stream("classic", 2, 10, seed=13), chunk_size=8)
    marker = tmp_path / "pwned"
    good = pickle.dumps({"ok": np.arange(3)}, protocol=5)
    assert np.array_equal(safe_load_pickle(good, "x")["ok"], np.arange(3))  # the loader works
    evil = {"format_version": 1, "start": 0, "count": 8, "logic": payload_cls(marker)}
    path = rewrite_chunk(d, 0, pickle.dumps(evil, protocol=5))
    with pytest.raises(DatasetError, match=f"{path.name}.*refusing to load"):
        DatasetReader(d)
    res = run_cli("verify", d)
    assert res.returncode == 1 and path.name in res.stderr and "refusing" in res.stderr
    assert not marker.exists()


@pytest.mark.parametrize("obj_factory", [
    lambda m: np.array([_OpenFile(m)], dtype=object),  # an object array would run its elements
    lambda m: {"a": [np.zeros(2), (eval, ("1",))]},  # a function object inside a container
    lambda m: np.zeros(3).view(np.recarray),  # an ndarray subclass
    lambda m: np.array([1, "x"], dtype=object),  # an object array, even of harmless values
    lambda m: np.zeros(2, dtype=[("a", "f4"), ("b", "O")]),  # a structured dtype
    lambda m: np.ma.masked_array([1.0]),  # another array type
])
def test_restricted_unpickler_refuses_anything_but_arrays(tmp_path, obj_factory):
    marker = tmp_path / "pwned"
    for protocol in (2, 4, 5):
        with pytest.raises(DatasetError, match="chunk-x: not a readable dataset chunk"):
            safe_load_pickle(pickle.dumps(obj_factory(marker), protocol=protocol), "chunk-x")
    assert not marker.exists()


class _FlaggedDtype:
    """A float64 dtype whose pickled state claims it holds Python objects (flags 63)."""

    def __reduce__(self):
        return (np.dtype, ("f8", False, True), (3, "<", None, None, None, -1, -1, 63))


class _ArrayOfFlaggedDtype:
    def __reduce__(self):
        return (np.core.numeric._frombuffer, (bytearray(16), _FlaggedDtype(), (2,), "C"))


def test_a_doctored_dtype_state_cannot_make_an_object_array():
    with pytest.raises(ValueError, match="OBJECT"):  # what the doctored state asks numpy for
        pickle.loads(pickle.dumps(_ArrayOfFlaggedDtype(), protocol=5))
    a = safe_load_pickle(pickle.dumps(_ArrayOfFlaggedDtype(), protocol=5), "x")
    assert a.dtype == np.float64 and not a.dtype.hasobject and a.dtype.flags == 0
    assert a.tolist() == [0.0, 0.0]


class _FrombufferWith:
    """A protocol-5 array record with a chosen dtype, as a crafted file could hold."""

    def __init__(self, dtype: np.dtype):
        self.dtype = dtype

    def __reduce__(self):
        return (np.core.numeric._frombuffer, (bytearray(16), self.dtype, (16 // self.dtype.itemsize,), "C"))


@pytest.mark.parametrize("dtype", [np.dtype("O"), np.dtype([("a", "O")]), np.dtype([("a", "f8")]),
                                   np.dtype(("f4", (2,))), np.dtype("V16"), np.dtype("U4")])
def test_only_plain_numeric_dtypes_load(dtype):
    for obj in (dtype, _FrombufferWith(dtype)):
        with pytest.raises(DatasetError, match="refusing"):
            safe_load_pickle(pickle.dumps(obj, protocol=5), "x")
    assert safe_load_pickle(pickle.dumps(_FrombufferWith(np.dtype("<f8")), protocol=5), "x").tolist() == [0.0, 0.0]


def test_empty_dataset(tmp_path):
    d = tmp_path / "ds"
    with DatasetWriter(d, **writer_kwargs("classic", 2)) as w:
        assert w.count == 0
    r = DatasetReader(d)
    assert len(r) == 0 and r.marks == [] and r.get([]).action.shape == (0,)
    with pytest.raises(DatasetError, match="empty"):
        r.sample(4)
    with pytest.raises(DatasetError, match="limit"):
        DatasetReader(d, limit=1)
    assert verify(d) == ([], [])


def test_unknown_format_version_is_refused(tmp_path):
    d = tmp_path / "ds"
    write_dataset(d, "classic", 2, make_stream("classic", 2, 10, seed=14), chunk_size=8)
    m = manifest(d)
    m["format_version"] = 3
    (d / MANIFEST_NAME).write_text(json.dumps(m))
    newer = r"format version 3 is newer than this reader \(knows 2\)"
    with pytest.raises(DatasetError, match=newer):
        DatasetReader(d)
    with pytest.raises(DatasetError, match=newer):
        DatasetWriter(d, resume_at=0, **writer_kwargs("classic", 2))
    for cmd in ("verify", "inspect"):
        res = run_cli(cmd, d)
        assert res.returncode == 1 and "format version 3 is newer than this reader (knows 2)" in res.stderr
    for bad in (0, "2", None):
        m["format_version"] = bad
        (d / MANIFEST_NAME).write_text(json.dumps(m))
        with pytest.raises(DatasetError, match="unknown format_version"):
            DatasetReader(d)

    d2 = tmp_path / "ds2"  # a chunk claiming an unknown version
    write_dataset(d2, "classic", 2, make_stream("classic", 2, 10, seed=14), chunk_size=8)
    chunk = pickle.loads((d2 / manifest(d2)["chunks"][1]["file"]).read_bytes())
    chunk["format_version"] = 7
    path = rewrite_chunk(d2, 1, pickle.dumps(chunk, protocol=5))
    with pytest.raises(DatasetError, match=f"{path.name}: unknown chunk format_version 7"):
        DatasetReader(d2)


@pytest.mark.parametrize("fix_manifest", [False, True])
def test_truncated_chunk_is_refused_naming_the_file(tmp_path, fix_manifest):
    d = tmp_path / "ds"
    write_dataset(d, "tinyframes", 2, make_stream("tinyframes", 2, 20, seed=15), chunk_size=8)
    e = manifest(d)["chunks"][2]
    data = (d / e["file"]).read_bytes()
    if fix_manifest:  # size and CRC agree: the unpickler meets the end of the file
        rewrite_chunk(d, 2, data[: len(data) // 2])
    else:
        (d / e["file"]).write_bytes(data[: len(data) // 2])
    with pytest.raises(DatasetError, match=e["file"]):
        DatasetReader(d)
    assert len(DatasetReader(d, limit=e["start"])) == e["start"]  # the chunks before it still read
    res = run_cli("verify", d)
    assert res.returncode == 1 and e["file"] in res.stderr and "FAILED: 1 problem" in res.stderr


def test_flipped_byte_is_refused(tmp_path):
    d = tmp_path / "ds"
    write_dataset(d, "classic", 2, make_stream("classic", 2, 10, seed=16), chunk_size=8)
    e = manifest(d)["chunks"][0]
    data = bytearray((d / e["file"]).read_bytes())
    data[len(data) // 2] ^= 0xFF
    (d / e["file"]).write_bytes(bytes(data))
    with pytest.raises(DatasetError, match=f"{e['file']}: chunk corrupted"):
        DatasetReader(d)


# --------------------------------------------------------------------------- CLI


def test_cli_inspect_and_verify(tmp_path):
    d = tmp_path / "ds"
    n = 2
    with DatasetWriter(d, chunk_size=8, metadata={"method": "ppo"}, **writer_kwargs("atari", n)) as w:
        write_steps(w, make_stream("atari", n, 10, seed=17))
        w.mark(8)
        w.mark(20)
    res = run_cli("inspect", d, "--json")
    assert res.returncode == 0, res.stderr
    s = json.loads(res.stdout)
    on_disk = sum(f.stat().st_size for f in d.glob("chunk_*"))
    assert s["env"] == "test-atari" and s["count"] == 20 and s["chunks"] == 3
    assert s["neural_shape"] == [4, 84, 84] and s["neural_dtype"] == "uint8"
    assert s["neural_encoding"] == "frames" and s["logic_shape"] == [40, 6]
    assert s["marks"] == [8, 20] and s["metadata"] == {"method": "ppo"}
    assert s["bytes_per_transition"] == pytest.approx(on_disk / 20)
    res = run_cli("inspect", d)
    assert res.returncode == 0 and "bytes_per_transition" in res.stdout and "test-atari" in res.stdout
    res = run_cli("verify", d)
    assert res.returncode == 0 and "OK: 20 transitions in 3 chunk(s), 2 mark(s)" in res.stdout

    # leftovers of an interrupted writer are noted, not errors
    (d / ".manifest.json.123.tmp").write_text("{")
    shutil.copy(next(d.glob("chunk_*.pkl")), d / "chunk_000000000020_000000004.pkl")
    res = run_cli("verify", d)
    assert res.returncode == 0 and res.stdout.count("note:") == 2

    res = run_cli("verify", tmp_path / "missing")
    assert res.returncode == 2 and "is not a folder" in res.stderr
    (tmp_path / "empty").mkdir()
    res = run_cli("inspect", tmp_path / "empty")
    assert res.returncode == 2 and "not a dataset" in res.stderr
    assert run_cli().returncode == 2
    assert run_cli("frobnicate", d).returncode == 2


# --------------------------------------------------------------------------- life_lost


@pytest.mark.parametrize("kind", ["classic", "tinyframes"])
def test_life_lost_round_trip_and_absence(tmp_path, kind):
    n, t = 3, 30
    steps = make_stream(kind, n, t, seed=22, glitch=0.1, life_lost=True)
    exp = flatten(steps)
    assert exp["life_lost"].any() and not exp["life_lost"].all()
    d = tmp_path / "with"
    write_dataset(d, kind, n, steps, chunk_size=20, flush_at=(4,))
    assert manifest(d)["has_life_lost"] is True and summarize(d)["has_life_lost"] is True
    r, batch = read_all(d)
    assert r.has_life_lost
    assert_batch_matches(batch, exp, np.arange(n * t))
    tb = batch.to_torch()
    assert tb.life_lost.dtype.is_floating_point and tb.life_lost.tolist() == exp["life_lost"].astype(float).tolist()
    # the same stream without the flags: everything else identical, life_lost all False
    plain = [{k: v for k, v in st.items() if k != "life_lost"} for st in steps]
    d2 = tmp_path / "without"
    write_dataset(d2, kind, n, plain, chunk_size=20)
    r2, batch2 = read_all(d2)
    assert not r2.has_life_lost and manifest(d2)["has_life_lost"] is False
    assert batch2.life_lost.dtype == bool and not batch2.life_lost.any()
    for name in Batch._fields[:-1]:
        assert_bits_equal(getattr(batch2, name), getattr(batch, name), name)
    assert not batch2.to_torch().life_lost.any()
    assert verify(d, values=False) == verify(d2, values=False) == ([], [])


def test_life_lost_must_be_given_for_all_steps_or_none(tmp_path):
    n = 2
    steps = make_stream("classic", n, 12, seed=23, life_lost=True)
    args = lambda st: [st[k] for k in FIELDS]  # noqa: E731
    with DatasetWriter(tmp_path / "a", chunk_size=4, **writer_kwargs("classic", n)) as w:
        w.add(*args(steps[0]), life_lost=steps[0]["life_lost"])
        with pytest.raises(DatasetError, match="records life_lost for every step"):
            w.add(*args(steps[1]))
        with pytest.raises(DatasetError, match="life_lost must be bool"):
            w.add(*args(steps[1]), life_lost=steps[1]["life_lost"].astype(np.int8))
        with pytest.raises(DatasetError, match="life_lost must have shape"):
            w.add(*args(steps[1]), life_lost=np.zeros(3, bool))
        write_steps(w, steps[1:6])
    with DatasetWriter(tmp_path / "b", chunk_size=4, **writer_kwargs("classic", n)) as w:
        w.add(*args(steps[0]))
        with pytest.raises(DatasetError, match="records no life_lost"):
            w.add(*args(steps[1]), life_lost=steps[1]["life_lost"])
    # resuming: a dataset with the flags needs them, one without refuses them; at 0 either goes
    with DatasetWriter(tmp_path / "a", resume_at=6, chunk_size=4, **writer_kwargs("classic", n)) as w:
        with pytest.raises(DatasetError, match="records life_lost"):
            w.add(*args(steps[3]))
        write_steps(w, steps[3:])
    exp = flatten(steps)
    r, batch = read_all(tmp_path / "a")
    assert r.has_life_lost and len(r) == 24
    assert_batch_matches(batch, exp, np.arange(24))
    with DatasetWriter(tmp_path / "b", resume_at=2, **writer_kwargs("classic", n)) as w:
        with pytest.raises(DatasetError, match="records no life_lost"):
            w.add(*args(steps[1]), life_lost=steps[1]["life_lost"])
    with DatasetWriter(tmp_path / "b", resume_at=0, **writer_kwargs("classic", n)) as w:
        write_steps(w, steps[:2])
    assert DatasetReader(tmp_path / "b").has_life_lost


def test_resume_mid_chunk_keeps_life_lost_exactly(tmp_path):
    n, t = 3, 40
    steps = make_stream("tinyframes", n, t, seed=24, glitch=0.05, life_lost=True)
    exp = flatten(steps)
    d = tmp_path / "ds"
    kw = writer_kwargs("tinyframes", n)
    with DatasetWriter(d, chunk_size=27, **kw) as w:
        write_steps(w, steps[:25])
    with DatasetWriter(d, chunk_size=27, resume_at=13 * n, **kw) as w:  # inside the second chunk
        write_steps(w, steps[13:])
    r, batch = read_all(d)
    assert len(r) == n * t and r.has_life_lost
    assert_batch_matches(batch, exp, np.arange(n * t))
    assert verify(d) == ([], [])


# --------------------------------------------------------------------------- format 1


@pytest.mark.parametrize("kind", sorted(V1_STREAMS))
def test_format_1_datasets_read_exactly(tmp_path, kind):
    n, t, _ = V1_STREAMS[kind]
    src = V1_DATA / f"dataset_v1_{kind}"
    exp = flatten(make_stream(kind, n, t, seed=31, glitch=0.1))
    m = manifest(src)
    assert m["format_version"] == 1 and "has_life_lost" not in m and len(m["chunks"]) == 3
    r, batch = read_all(src)
    assert len(r) == n * t and r.marks == [10 * n] and not r.has_life_lost
    assert r.metadata == {"method": "ppo", "run_id": f"v1_{kind}"}
    assert_batch_matches(batch, exp, np.arange(n * t))
    assert verify(src, values=False) == ([], []) and summarize(src)["format_version"] == 1
    res = run_cli("verify", src, "--no-values")  # the stream's NaNs are kept exactly on purpose
    assert res.returncode == 0 and f"OK: {n * t} transitions in 3 chunk(s), 1 mark(s)" in res.stdout
    res = run_cli("verify", src)
    assert res.returncode == (1 if np.isnan(exp["logic"]).any() else 0), res.stderr

    # a writer continues a format-1 dataset (mid-chunk): its chunks before the cut stay format 1
    d = tmp_path / "ds"
    shutil.copytree(src, d)
    first = m["chunks"][0]
    at = first["count"] + n  # one step into the second chunk
    with DatasetWriter(d, resume_at=at, chunk_size=100, **writer_kwargs(kind, n)) as w:
        write_steps(w, make_stream(kind, n, t, seed=31, glitch=0.1)[at // n:])
    m2 = manifest(d)
    assert m2["format_version"] == 2 and m2["has_life_lost"] is False
    assert m2["chunks"][0] == first and "sidecars" in m2["chunks"][1]
    assert (d / first["file"]).read_bytes() == (src / first["file"]).read_bytes()
    r, batch = read_all(d)
    assert_batch_matches(batch, exp, np.arange(n * t))
    assert verify(d, values=False) == ([], [])


# --------------------------------------------------------------------------- reading in place


def test_pools_are_memory_mapped_and_private_memory_does_not_hold_them(tmp_path):
    """Format 2: the reader's pools are maps of the sidecar files (not copies), and reading every
    transition leaves its anonymous memory far below the pools' size (measured in a fresh process)."""
    import mmap
    n, t = 8, 500  # 4000 Atari-shaped transitions: ~28 MB of frames
    steps = make_stream("atari", n, t, seed=25, max_len=300, p_term=0.01)
    d = tmp_path / "ds"
    write_dataset(d, "atari", n, steps, chunk_size=1000)
    r = DatasetReader(d)
    assert len(r.chunks) == 4
    for ch in r.chunks:
        for pool in (ch.logic, ch.neural):
            owner = pool
            while isinstance(owner, np.ndarray):
                owner = owner.base
            owner = owner.obj if isinstance(owner, memoryview) else owner
            assert isinstance(owner, mmap.mmap) and not pool.flags.writeable
    pools = sum(ch.logic.nbytes + ch.neural.nbytes for ch in r.chunks)
    assert pools > 30e6
    probe = (
        "import sys, numpy as np\n"
        "from dataset_utils import DatasetReader\n"
        "def anon():\n"
        "    return int(next(l for l in open('/proc/self/status') if l.startswith('RssAnon')).split()[1]) * 1024\n"
        "before = anon()\n"
        f"r = DatasetReader({str(d)!r})\n"
        "total = 0\n"
        "for a in range(0, len(r), 64):\n"
        "    b = r.get(np.arange(a, min(a + 64, len(r))))\n"
        "    total += int(b.neural_state[:, -1].sum(dtype=np.int64))\n"
        "print(anon() - before, total)\n")
    res = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120,
                         env={**_env(), "MALLOC_MMAP_THRESHOLD_": "131072"})
    assert res.returncode == 0, res.stderr
    grown, total = map(int, res.stdout.split())
    exp = flatten(steps)
    assert total == int(exp["neural"][:, -1].sum(dtype=np.int64))  # it really read every frame
    assert grown < 0.15 * pools, (grown, pools)


def test_extend_opens_only_the_new_chunks_and_stays_exact(tmp_path, monkeypatch):
    import blendrl.datasets.reader as reader_module
    n, t = 3, 60
    steps = make_stream("tinyframes", n, t, seed=26, glitch=0.05, life_lost=True)
    exp = flatten(steps)
    d = tmp_path / "ds"
    write_dataset(d, "tinyframes", n, steps, chunk_size=30)  # 6 chunks of 30
    opened: list[str] = []
    real = reader_module.open_chunk
    monkeypatch.setattr(reader_module, "open_chunk",
                        lambda directory, e, *a, **k: opened.append(e["file"]) or real(directory, e, *a, **k))
    r = DatasetReader(d, limit=31)
    assert len(r) == 31 and len(opened) == 2
    for limit in (31, 45, 60, 61, 150, 180, 40):
        r.extend(limit)
        assert len(r) == limit
        assert_batch_matches(r.get(np.arange(limit)), exp, np.arange(limit))
        rng = np.random.default_rng(limit)
        assert r.sample(200, rng).reward.max() <= exp["reward"][:limit].max()
    assert opened == [e["file"] for e in manifest(d)["chunks"]]  # each chunk opened once, in order
    for bad in (0, 181, 2.0):
        with pytest.raises(DatasetError, match="limit"):
            r.extend(bad)


def test_sample_groups_by_chunk_and_matches_get(tmp_path):
    n, t = 2, 50
    steps = make_stream("tinyframes", n, t, seed=27, glitch=0.1)
    exp = flatten(steps)
    d = tmp_path / "ds"
    write_dataset(d, "tinyframes", n, steps, chunk_size=16)
    r = DatasetReader(d)
    rng = np.random.default_rng(4)
    positions = r.draw(500, np.random.default_rng(4))
    batch = r.sample(500, rng)
    assert np.all(np.diff(r.chunk_of(positions)) >= 0)
    assert sorted(positions.tolist()) == sorted(np.random.default_rng(4).integers(0, 100, 500).tolist())
    assert_batch_matches(batch, exp, positions)
    # into given arrays (the prefetch thread's buffers)
    from blendrl.datasets.reader import empty_batch
    out = empty_batch(r.layout, 500)
    again = r.sample(500, np.random.default_rng(4), out=out)
    assert again is out
    assert_batch_matches(out, exp, positions)


@pytest.mark.parametrize("damage", ["missing", "truncated", "flipped", "header"])
def test_damaged_sidecar_is_refused_naming_the_file(tmp_path, damage):
    d = tmp_path / "ds"
    write_dataset(d, "tinyframes", 2, make_stream("tinyframes", 2, 20, seed=28), chunk_size=8)
    e = manifest(d)["chunks"][1]
    side = d / e["sidecars"]["neural"]["file"]
    data = side.read_bytes()
    if damage == "missing":
        side.unlink()
    elif damage == "truncated":
        side.write_bytes(data[:-7])
    elif damage == "flipped":
        side.write_bytes(data[:-5] + bytes([data[-5] ^ 0xFF]) + data[-4:])
    else:  # a well-formed header of another shape, size and CRC fixed in the manifest
        arr = np.load(side)
        np.save(side, arr.reshape(-1, *arr.shape[2:], arr.shape[1]))
        m = manifest(d)
        raw = side.read_bytes()
        m["chunks"][1]["sidecars"]["neural"].update(bytes=len(raw), crc32=zlib.crc32(raw))
        (d / MANIFEST_NAME).write_text(json.dumps(m))
    words = {"missing": "missing", "truncated": "truncated or altered pool", "flipped": "pool corrupted",
             "header": "pool should be"}[damage]
    if damage == "flipped":  # same size: only a CRC check sees it
        DatasetReader(d)
        with pytest.raises(DatasetError, match=f"{side.name}: {words}"):
            DatasetReader(d, verify=True)
    else:
        with pytest.raises(DatasetError, match=f"{side.name}.*{words}"):
            DatasetReader(d)
    assert len(DatasetReader(d, limit=8)) == 8  # the chunk before it still reads
    problems, _ = verify(d)
    assert len(problems) == 1 and side.name in problems[0] and words in problems[0]
    res = run_cli("verify", d)
    assert res.returncode == 1 and side.name in res.stderr


# --------------------------------------------------------------------------- feeding a device


def _feed_dataset(tmp_path: Path, kind: str = "tinyframes", n: int = 3, t: int = 60) -> tuple[Path, dict]:
    steps = make_stream(kind, n, t, seed=29, glitch=0.05, life_lost=True)
    d = tmp_path / f"feed_{kind}"
    write_dataset(d, kind, n, steps, chunk_size=25)
    return d, flatten(steps)


def _assert_torch_batch(tb, exp: dict, rows: np.ndarray) -> None:
    """A torch batch (``Batch.to_torch`` dtypes) holds exactly the expected transitions."""
    import torch
    for k, name in (("logic", "logic_state"), ("neural", "neural_state"), ("next_logic", "next_logic_state"),
                    ("next_neural", "next_neural_state")):
        assert_bits_equal(getattr(tb, name).cpu().numpy(), exp[k][rows], name)
    assert tb.action.dtype == torch.int64 and tb.action.cpu().tolist() == exp["action"][rows].tolist()
    for k in ("reward", "terminated", "truncated", "life_lost"):
        got = getattr(tb, k)
        assert got.dtype == torch.float32, k
        assert got.cpu().tolist() == exp[k][rows].astype(np.float32).tolist(), k


@pytest.mark.parametrize("kind", ["tinyframes", "classic"])
def test_the_three_feeds_give_the_same_batches(tmp_path, kind):
    """Direct, background prefetch (pin_memory off on CPU) and the device pool (on device='cpu'):
    the same minibatches for the same generator, the generator left where direct sampling leaves
    it, across growing limits."""
    import torch
    from blendrl.datasets.device_pool import DevicePool
    from blendrl.datasets.feed import DirectFeed, PrefetchFeed
    d, exp = _feed_dataset(tmp_path, kind)
    cpu = torch.device("cpu")
    feeds = {"direct": lambda r, g: DirectFeed(r, cpu, 16, g),
             "prefetch": lambda r, g: PrefetchFeed(r, cpu, 16, g, depth=3, pin=False),
             "pool": lambda r, g: DevicePool(r, cpu, 16, g, capacity=140)}
    got: dict[str, list] = {}
    states: dict[str, list] = {}
    for name, make in feeds.items():
        rng = np.random.default_rng(5)
        reader = DatasetReader(d, limit=30)
        feed = make(reader, rng)
        got[name], states[name] = [], []
        for limit in (30, 75, 140):
            feed.set_limit(limit)
            for _ in range(7):
                got[name].append(Batch(*(x.clone() for x in feed.next())))  # the direct feed reuses its buffers
                states[name].append(rng.bit_generator.state["state"]["state"])
        feed.close()
    # the positions: what the reader draws from the same generator
    rng = np.random.default_rng(5)
    r = DatasetReader(d)
    for i, limit in enumerate(np.repeat([30, 75, 140], 7)):
        r.extend(int(limit))
        positions = r.draw(16, rng)
        assert positions.max() < limit
        for name in feeds:
            _assert_torch_batch(got[name][i], exp, positions)
    assert states["prefetch"] == states["direct"] == states["pool"]


def test_direct_feed_batches_stay_valid_for_one_more_step(tmp_path):
    import torch
    from blendrl.datasets.feed import DirectFeed
    d, exp = _feed_dataset(tmp_path)
    reader = DatasetReader(d)
    feed = DirectFeed(reader, torch.device("cpu"), 32, np.random.default_rng(8))
    check = np.random.default_rng(8)
    previous = None
    for _ in range(6):
        batch = feed.next()
        positions = reader.draw(32, check)
        _assert_torch_batch(batch, exp, positions)
        if previous is not None:  # the one before is still intact
            _assert_torch_batch(*previous)
        previous = (batch, exp, positions)


def test_prefetch_hands_worker_errors_to_the_training_thread(tmp_path):
    import torch
    from blendrl.datasets.feed import PrefetchFeed
    d, _ = _feed_dataset(tmp_path)
    reader = DatasetReader(d, limit=30)

    def broken(*a, **k):
        raise DatasetError("the disk went away")

    reader.sample = broken
    feed = PrefetchFeed(reader, torch.device("cpu"), 8, np.random.default_rng(0), pin=False)
    feed.set_limit(30)
    with pytest.raises(DatasetError, match="the disk went away"):
        feed.next()
    feed.close()


def test_choose_dataset_device(monkeypatch):
    import torch
    from blendrl.datasets import feed
    from blendrl.datasets.claims import headroom_bytes
    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    gib = 1 << 30
    assert headroom_bytes(80 * gib) == 12 * gib and headroom_bytes(16 * gib) == 4 * gib
    assert feed.choose_dataset_device("auto", cpu, 10 * gib) == "cpu"
    assert feed.choose_dataset_device("cpu", cpu, 0) == "cpu"
    if not torch.cuda.is_available():
        with pytest.raises(feed.DatasetDeviceError, match="--dataset_device cuda asked for, but CUDA is not available"):
            feed.choose_dataset_device("cuda", cpu, 0)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    free_total = (70 * gib, 80 * gib)  # 12 GiB kept: 58 GiB for the data
    assert feed.choose_dataset_device("auto", cuda, 58 * gib, free_total) == "cuda"
    assert feed.choose_dataset_device("auto", cuda, 59 * gib, free_total) == "cpu"
    assert feed.choose_dataset_device("cpu", cuda, 1, free_total) == "cpu"
    assert feed.choose_dataset_device("cuda", cuda, 58 * gib, free_total) == "cuda"
    with pytest.raises(feed.DatasetDeviceError, match=r"needs 59.0 GiB on cuda, which has 70.0 GiB free \(keeping 12.0 GiB"):
        feed.choose_dataset_device("cuda", cuda, 59 * gib, free_total)
    with pytest.raises(feed.DatasetDeviceError, match="needs a CUDA training --device"):
        feed.choose_dataset_device("cuda", cpu, 0, free_total)


def test_device_bytes_needed_counts_pools_and_tables(tmp_path):
    from blendrl.datasets.device_pool import DEVICE_TABLE_BYTES, device_bytes_needed
    d, _ = _feed_dataset(tmp_path)
    m = manifest(d)
    first = m["chunks"][0]
    pools = sum(s["bytes"] for s in first["sidecars"].values()) - 2 * 128  # minus the .npy headers
    frame_index = (first["count"] + first["n_next"]) * 4 * 8  # int64 [states, S]
    assert device_bytes_needed(m, 1) == pools + first["count"] * DEVICE_TABLE_BYTES + frame_index
    # what a DevicePool really allocates
    import torch
    from blendrl.datasets.device_pool import DevicePool
    pool = DevicePool(DatasetReader(d, limit=1), torch.device("cpu"), 4, np.random.default_rng(0), capacity=1)
    tensors = [pool.logic, pool.neural, pool.frame_src, pool.row_state, pool.next_state, pool.action,
               *pool.flags.values()]
    assert sum(t.numel() * t.element_size() for t in tensors) == device_bytes_needed(m, 1)


# --------------------------------------------------------------------------- the offline data path


def _offline_dataset(path: Path, marks: list[int], steps: int, chunk_size: int) -> Path:
    """A cartpole-shaped dataset (2 envs) whose reward is the transition's position."""
    from helpers_dataset import cartpole_offline_dataset
    return cartpole_offline_dataset(path, marks, steps, chunk_size, reward_is_position=True)


def _offline_args(tmp_path: Path, data: Path, **kw):
    from blendrl.offline import OfflineArgs
    base = dict(dataset=data, run_id="off", runs_dir=tmp_path / "runs", epochs=1, batch_size=16,
                eval_episodes=1, eval_envs=1, threads=1, device="cpu", hidden=8, critic_hidden=8,
                log_every=3)
    return OfflineArgs(**{**base, **kw})


def test_offline_run_opens_each_chunk_once_over_five_intervals(tmp_path, monkeypatch):
    import torch
    import blendrl.datasets.chunks as chunks_module
    import blendrl.datasets.reader as reader_module
    from blendrl.offline import run_offline
    marks = [40, 80, 120, 160, 200]
    data = _offline_dataset(tmp_path / "ds", marks, steps=100, chunk_size=30)  # 7 chunks
    entries = manifest(data)["chunks"]
    assert len(entries) == 7
    opened: list[str] = []
    crc_read: list[str] = []
    real_open, real_crc = reader_module.open_chunk, chunks_module.file_crc32
    monkeypatch.setattr(reader_module, "open_chunk",
                        lambda directory, e, *a, **k: opened.append(e["file"]) or real_open(directory, e, *a, **k))
    monkeypatch.setattr(chunks_module, "file_crc32", lambda p, *a: crc_read.append(Path(p).name) or real_crc(p, *a))
    threads = torch.get_num_threads()
    try:
        assert run_offline(_offline_args(tmp_path, data), "iql") == 0
    finally:
        torch.set_num_threads(threads)
    assert opened == [e["file"] for e in entries]  # each chunk opened once, in order
    # before any training, every pool of the (finished) dataset was CRC-checked, once (chunks are
    # checked side by side on the job's CPUs, so in no fixed order)
    assert sorted(crc_read) == sorted(s["file"] for e in entries for s in e["sidecars"].values())
    results = json.loads((tmp_path / "runs" / "off" / "results.json").read_text())
    assert [r["data_limit"] for r in results] == marks


def test_offline_training_log_averages_the_device_metrics(tmp_path, monkeypatch):
    """The metrics summed on the device and read every --log_every steps are the per-step means."""
    import torch
    from blendrl.algos.iql import METRIC_KEYS, IQLTrainer
    from blendrl.offline import run_offline
    from blendrl.file_io import load_training_log
    data = _offline_dataset(tmp_path / "ds", [60], steps=30, chunk_size=100)
    seen: list[list[float]] = []
    real = IQLTrainer.update_stats

    def recording(self, batch):
        stats = real(self, batch)
        seen.append(stats.tolist())
        return stats

    monkeypatch.setattr(IQLTrainer, "update_stats", recording)
    threads = torch.get_num_threads()
    try:
        assert run_offline(_offline_args(tmp_path, data, epochs=2, log_every=3), "iql") == 0
    finally:
        torch.set_num_threads(threads)
    updates = load_training_log(tmp_path / "runs" / "off" / "training_log.pkl")["updates"]
    assert len(seen) == 8 and [u["global_step"] for u in updates] == [3, 6, 8]
    for u, window in zip(updates, (seen[0:3], seen[3:6], seen[6:8])):
        want = np.mean(np.asarray(window, np.float64), axis=0)
        for key, w in zip(METRIC_KEYS, want):
            assert u[key] == pytest.approx(w, rel=1e-6, abs=1e-7), key


def test_dataset_device_cuda_without_cuda_exits_2_before_any_work(tmp_path, capsys):
    import torch
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    from blendrl.offline import main
    data = _offline_dataset(tmp_path / "ds", [40], steps=20, chunk_size=30)
    threads = torch.get_num_threads()
    try:
        assert main(_offline_args(tmp_path, data, dataset_device="cuda"), "iql") == 2
    finally:
        torch.set_num_threads(threads)
    err = capsys.readouterr().err
    assert err == "error: --dataset_device cuda asked for, but CUDA is not available\n"
    assert not (tmp_path / "runs").exists()
    for bad, words in ((["--dataset_device", "cuda"], "--dataset_device cuda asked for"),
                       (["--dataset_device", "tpu"], "dataset")):
        res = subprocess.run([sys.executable, str(ROOT / "train_iql.py"), "--dataset", str(data),
                              "--runs_dir", str(tmp_path / "runs2"), *bad], capture_output=True,
                             text=True, timeout=120, env=_env(), cwd=tmp_path)
        assert res.returncode == 2 and words in res.stderr, res.stderr
        if bad[-1] == "cuda":
            assert res.stderr.strip().count("\n") == 0  # one line
        assert not (tmp_path / "runs2").exists()


# --------------------------------------------------------------------------- CUDA (skipped on CPU)

cuda = pytest.mark.skipif(not __import__("torch").cuda.is_available(), reason="needs CUDA")


@cuda
@pytest.mark.parametrize("kind", ["tinyframes", "classic"])
def test_cuda_feeds_give_the_direct_feeds_batches(tmp_path, kind):
    import torch
    from blendrl.datasets.device_pool import DevicePool
    from blendrl.datasets.feed import DirectFeed, PrefetchFeed
    d, exp = _feed_dataset(tmp_path, kind)
    dev = torch.device("cuda")
    for make in (lambda r, g: DevicePool(r, dev, 16, g, capacity=140),
                 lambda r, g: PrefetchFeed(r, dev, 16, g, depth=3)):
        rng, ref_rng = np.random.default_rng(6), np.random.default_rng(6)
        feed, ref = make(DatasetReader(d, limit=30), rng), DirectFeed(DatasetReader(d, limit=30), dev, 16, ref_rng)
        for limit in (30, 140):
            feed.set_limit(limit)
            ref.set_limit(limit)
            for _ in range(20):
                a, b = feed.next(), ref.next()
                for name in Batch._fields:
                    assert torch.equal(getattr(a, name), getattr(b, name)), name
        assert rng.bit_generator.state == ref_rng.bit_generator.state
        feed.close()


def test_sampled_frame_stacks_are_exact_where_next_stacks_share_frames_and_where_not(tmp_path):
    """Batches that mix next stacks stored as their state's frames shifted by one and next
    stacks stored apart (episode ends whose next stack shares no frame with the state's, jumps),
    over several chunks, are bit-exact, and ``sample`` returns exactly the transitions ``draw``
    picks with the same generator."""
    n, t = 3, 90
    steps = make_stream("tinyframes", n, t, seed=11, glitch=0.15, max_len=7, p_term=0.1)
    # at episode ends, next stacks that share no frame with their state's stack (all frames new)
    other = np.random.default_rng(12)
    for step in steps:
        for i in np.flatnonzero(step["terminated"] | step["truncated"]):
            step["next_neural"][i] = other.integers(0, 256, step["next_neural"][i].shape,
                                                    dtype=step["next_neural"].dtype)
    exp = flatten(steps)
    d = tmp_path / "ds"
    write_dataset(d, "tinyframes", n, steps, chunk_size=40)
    r = DatasetReader(d)
    assert len(manifest(d)["chunks"]) > 3
    for seed in range(5):
        rows = r.draw(64, np.random.default_rng(seed))
        batch = r.sample(64, np.random.default_rng(seed))
        assert_batch_matches(batch, exp, rows)
        # the batch mixes next stacks stored as the shifted state's frames and stored apart
        starts = np.array([e["start"] for e in manifest(d)["chunks"]])
        next_local = r.tables(len(r))["next_local"]
        shared = []
        for row in rows:
            c = int(r.chunk_of(np.array([row]))[0])
            src = r.frame_sources(c)
            cur, nxt = src[row - starts[c]], src[next_local[row]]
            shared.append(bool((nxt[:-1] == cur[1:]).all()))
        assert 0 < sum(shared) < 64


def test_sample_into_buffers_refuses_non_contiguous_arrays(tmp_path):
    """The gather writes through reshaped views of ``out``; a non-contiguous array would be
    copied by the reshape and the batch silently lost, so it is refused."""
    from blendrl.datasets.reader import empty_batch

    steps = make_stream("tinyframes", 2, 30, seed=2)
    d = tmp_path / "ds"
    write_dataset(d, "tinyframes", 2, steps, chunk_size=20)
    r = DatasetReader(d)
    out = empty_batch(r.layout, 8)
    r.sample(8, np.random.default_rng(0), out=out)  # empty_batch's arrays are fine
    wide = np.empty((8, *r.layout.neural_shape[:-1], 2 * r.layout.neural_shape[-1]), out.neural_state.dtype)
    bad = out._replace(neural_state=wide[..., ::2])
    with pytest.raises(DatasetError, match="C-contiguous"):
        r.sample(8, np.random.default_rng(0), out=bad)
