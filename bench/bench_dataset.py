#!/usr/bin/env python
"""Benchmark (not a test) of dataset_utils: write throughput, bytes per transition, sampling rate,
and the reader's memory when it reads in place.

    .venv/bin/python bench/bench_dataset.py                      # defaults: well under a minute
    .venv/bin/python bench/bench_dataset.py --atari-transitions 100000 --classic-transitions 5000000
    .venv/bin/python bench/bench_dataset.py --memory-transitions 200000 --classic-transitions 0 \
        --atari-transitions 0 --cartpole-steps 0                 # ~3.2 GB in a temp folder, minutes

Measures, with synthetic streams shaped like the real ones (episodes ending by termination or
truncation, true final states, 4-frame stacks that shift one frame a step):
  * classic control (logic [2, 2] float32, neural [4] float32): write transitions/s (time inside
    ``add``/``close`` only), bytes per transition on disk, reader load time and ``sample(B)``
    transitions/s from the whole dataset;
  * Atari (logic [40, 6] float32, neural [4, 84, 84] uint8): the same, ``sample`` rebuilding stacks;
  * for both, the offline job's up-front verification of every chunk (CRC-32 and finite floats):
    seconds and MB/s with 1 and ``--verify-workers`` threads, side by side with sampling alone;
  * for both, the host feed (``PrefetchFeed``: what trains a CUDA job whose data stays on the
    host) with 1 and ``--feed-workers`` sampling threads, side by side with ``sample`` into reused
    buffers in the calling thread, in interleaved rounds of ``--feed-seconds``: batches/s
    handed out. Here on CPU the feed hands its host buffers over instead of copying them to a
    device (pinned memory and the copy are a GPU's);
  * the writer's cost next to real CartPole stepping (``blendrl.envs``, N parallel copies): env
    steps/s alone vs with ``DatasetWriter.add`` of every step — an upper bound of what the writer
    costs an online run, whose steps also pay for the network and the PPO update;
  * reading in place (``--memory-transitions N``, the goal is stated for 200000: ~1.6 GB): an
    Atari-shaped dataset (8 envs, 84x84 frames, episode ends, lost lives) written in format 2 and,
    with the format-1 writer of ``--baseline-commit`` (``git show``), in format 1. Each measurement
    runs in a fresh process: the reader opened on the whole dataset -- its anonymous (private)
    memory after opening and after reading every transition back, each compared bit for bit with
    the stream -- the format-1 in-RAM reader's memory, and ``sample(B)`` of both readers side by side
    in one process, in interleaved rounds (the format-2 reader with new arrays per batch and into
    reused arrays, as the training feeds use it).
"""

from __future__ import annotations

import ctypes
import importlib.util
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from blendrl.cli_parse import cli  # noqa: E402

from blendrl.datasets import read_manifest, verify_chunks  # noqa: E402
from dataset_utils import DatasetReader, DatasetWriter, summarize  # noqa: E402


@dataclass
class Args:
    """Benchmark of the offline dataset writer and reader."""

    classic_transitions: int = 1_000_000
    """transitions of the classic-control dataset (the sampling goal is stated for 1M)"""
    atari_transitions: int = 4_000
    """transitions of the Atari-shaped dataset"""
    num_envs: int = 8
    """parallel environments of the synthetic streams and of the CartPole measurement"""
    chunk_size: int = 50_000
    """DatasetWriter chunk_size"""
    episode_length: int = 200
    """mean episode length of the synthetic streams"""
    batch_size: int = 256
    """sample() batch size"""
    sample_seconds: float = 2.0
    """how long to time sample() for"""
    cartpole_steps: int = 40_000
    """transitions for the writer-next-to-CartPole measurement (0 skips it)"""
    directory: Path | None = None
    """where to write the datasets (default: a temporary folder, removed afterwards)"""
    json_out: Path | None = None
    """also write the figures to this JSON file"""
    memory_transitions: int = 0
    """transitions of the read-in-place benchmark's Atari-shaped dataset (0 skips it; the goal is stated for 200000)"""
    memory_chunk_size: int = 50_000
    """chunk_size of the read-in-place benchmark's datasets (the online scripts' default)"""
    baseline_commit: str = "528fe13"
    """git commit whose dataset_utils.py (format 1, in-RAM reader) is the baseline ('' for none)"""
    rounds: int = 5
    """interleaved timing rounds of the side-by-side sample() comparison"""
    verify_workers: int = 2
    """threads of the second verification measurement (the job's CPUs in an offline run)"""
    feed_workers: int = 2
    """sampling threads of the second host-feed measurement (--feed_workers of an offline run)"""
    feed_seconds: float = 1.0
    """seconds of each host-feed timing round (0 skips the host-feed measurement)"""
    probe: str | None = None
    """internal: one measurement of the read-in-place benchmark, run in this (fresh) process"""


def classic_stream(n_steps: int, num_envs: int, ep_len: int, seed: int) -> Iterator[tuple]:
    """Steps of a vector-state stream: (logic, neural, action, reward, next_logic, next_neural, term, trunc)."""
    rng = np.random.default_rng(seed)
    state = rng.standard_normal((num_envs, 4)).astype(np.float32)
    length = np.zeros(num_envs, np.int64)
    for _ in range(n_steps):
        nxt = rng.standard_normal((num_envs, 4)).astype(np.float32)
        length += 1
        term = rng.random(num_envs) < 1.0 / ep_len
        trunc = length >= 2 * ep_len
        done = term | trunc
        yield (state.reshape(num_envs, 2, 2), state, rng.integers(0, 2, num_envs), np.ones(num_envs),
               nxt.reshape(num_envs, 2, 2), nxt, term, trunc & ~term)
        state = np.where(done[:, None], rng.standard_normal((num_envs, 4)).astype(np.float32), nxt)
        length[done] = 0


def atari_stream(n_steps: int, num_envs: int, ep_len: int, seed: int,
                 logic_shape: tuple[int, int] = (40, 6), n_actions: int = 18) -> Iterator[tuple]:
    """Steps of a frame-stack stream: stacks shift by one new frame; a reset repeats its frame;
    ``life_lost`` about once in 50 steps (the ``add`` arguments, ``life_lost`` last)."""
    rng = np.random.default_rng(seed)
    pool = rng.integers(0, 256, (64, 84, 84), dtype=np.uint8)  # frames drawn from a pool: cheap

    def frames(k: int) -> np.ndarray:
        return pool[rng.integers(0, len(pool), k)]

    stack = np.repeat(frames(num_envs)[:, None], 4, axis=1)
    logic = rng.standard_normal((num_envs, *logic_shape)).astype(np.float32)
    length = np.zeros(num_envs, np.int64)
    for _ in range(n_steps):
        nxt = np.concatenate([stack[:, 1:], frames(num_envs)[:, None]], axis=1)
        nlogic = rng.standard_normal((num_envs, *logic_shape)).astype(np.float32)
        length += 1
        term = rng.random(num_envs) < 1.0 / ep_len
        trunc = (length >= 2 * ep_len) & ~term
        done = term | trunc
        life_lost = rng.random(num_envs) < 1.0 / 50
        yield logic, stack, rng.integers(0, n_actions, num_envs), np.ones(num_envs), nlogic, nxt, term, trunc, life_lost
        stack, logic = nxt.copy(), nlogic
        if done.any():
            stack[done] = np.repeat(frames(int(done.sum()))[:, None], 4, axis=1)
        length[done] = 0


def bench_one(name: str, directory: Path, stream: Callable[..., Iterator[tuple]], n: int,
              args: Args, logic_shape: tuple, neural_shape: tuple, neural_dtype: type,
              n_actions: int) -> dict:
    n_steps = max(1, n // args.num_envs)
    d = directory / name
    w = DatasetWriter(d, env=name, num_envs=args.num_envs, logic_shape=logic_shape,
                      neural_shape=neural_shape, neural_dtype=neural_dtype, n_actions=n_actions,
                      chunk_size=args.chunk_size)
    spent = 0.0
    for step in stream(n_steps, args.num_envs, args.episode_length, 0):
        t0 = time.perf_counter()
        w.add(*step)
        spent += time.perf_counter() - t0
    t0 = time.perf_counter()
    w.finish()
    spent += time.perf_counter() - t0
    count = w.count
    t0 = time.perf_counter()
    r = DatasetReader(d)
    load = time.perf_counter() - t0
    rng = np.random.default_rng(0)
    calls = 0
    t0 = time.perf_counter()
    while time.perf_counter() - t0 < args.sample_seconds:
        r.sample(args.batch_size, rng)
        calls += 1
    sample_rate = calls * args.batch_size / (time.perf_counter() - t0)
    s = summarize(d)
    return {"transitions": count, "write_transitions_per_s": count / spent,
            "bytes_per_transition": s["bytes_per_transition"], "chunks": s["chunks"],
            "load_seconds": load, f"sample{args.batch_size}_transitions_per_s": sample_rate,
            **bench_verify(d, count, sample_rate, args), **bench_feed(d, args)}


def bench_feed(d: Path, args: Args) -> dict:
    """The host feed's batches/s with 1 and ``--feed-workers`` sampling threads, and
    ``sample(B, out=...)`` in this thread (one sampler, what the feed's workers each do), in
    ``--rounds`` interleaved rounds of ``--feed-seconds`` after a warm-up: medians, ranges, and
    the feed's speed-up over one worker. Each feed hands out exactly the batches of
    ``sample`` with the same generator, whatever its workers."""
    if args.feed_seconds <= 0:
        return {}
    import torch

    from blendrl.datasets.feed import PrefetchFeed
    from blendrl.datasets.reader import empty_batch

    reader = DatasetReader(d)
    b = args.batch_size
    out = empty_batch(reader.layout, b)
    rng = np.random.default_rng(0)
    contenders: dict[str, Callable[[], object]] = {"sample_into_buffers_1_thread": lambda: reader.sample(b, rng, out=out)}
    feeds = {}
    for w in sorted({1, args.feed_workers}):
        feeds[w] = PrefetchFeed(reader, torch.device("cpu"), b, np.random.default_rng(0), workers=w, pin=False)
        feeds[w].set_limit(len(reader))
        contenders[f"host_feed_{w}_workers"] = feeds[w].next

    def rate(step: Callable[[], object], seconds: float) -> tuple[float, float]:
        """batches/s, and the CPU cores this process used meanwhile (CPU time / wall time)."""
        calls, t0, c0 = 0, time.perf_counter(), time.process_time()
        while time.perf_counter() - t0 < seconds:
            step()
            calls += 1
        wall = time.perf_counter() - t0
        return calls / wall, (time.process_time() - c0) / wall

    load = os.getloadavg()[0]
    try:
        for step in contenders.values():
            rate(step, args.feed_seconds)
        rounds: dict[str, list[float]] = {k: [] for k in contenders}
        cores: dict[str, list[float]] = {k: [] for k in contenders}
        for _ in range(args.rounds):
            for name, step in contenders.items():
                r, c = rate(step, args.feed_seconds)
                rounds[name].append(r)
                cores[name].append(c)
    finally:
        for f in feeds.values():
            f.close()
    med = {k: float(np.median(v)) for k, v in rounds.items()}
    res: dict = {"feed_batch_size": b, "feed_cpus": len(os.sched_getaffinity(0)),
                 "feed_load_average_before_after": [load, os.getloadavg()[0]]}
    for k, v in rounds.items():
        res[f"{k}_batches_per_s_median"] = med[k]
        res[f"{k}_batches_per_s_range"] = [min(v), max(v)]
        res[f"{k}_cores_used_median"] = float(np.median(cores[k]))
    if args.feed_workers != 1:
        res[f"host_feed_{args.feed_workers}_workers_vs_1"] = (med[f"host_feed_{args.feed_workers}_workers"]
                                                              / med["host_feed_1_workers"])
    return res


def bench_verify(d: Path, count: int, sample_rate: float, args: Args) -> dict:
    """What an offline job's up-front check of every chunk (``verify_chunks``: sizes, CRC-32,
    finite floats) costs, with 1 worker and with ``--verify-workers``: seconds, MB/s, and its
    share of the time the job spends only sampling the minibatches of one epoch over the dataset
    (``count / sample rate``; a lower bound of the job's time, whose gradient steps cost more).
    The files were just written, so they are read from the page cache (a cold read of a dataset
    on disk runs at the disk's speed instead)."""
    m = read_manifest(d)
    out = {}
    for workers in sorted({1, args.verify_workers}):
        t0 = time.perf_counter()
        nbytes = verify_chunks(d, m, workers=workers)
        dt = time.perf_counter() - t0
        out[f"verify_{workers}w_seconds"] = dt
        out[f"verify_{workers}w_MB_per_s"] = nbytes / 1e6 / dt
        out[f"verify_{workers}w_share_of_one_epoch_sampling"] = dt / (dt + count / sample_rate)
    return out


def bench_cartpole(directory: Path, args: Args) -> dict:
    from blendrl.envs import get_spec, make_vec_env

    spec = get_spec("cartpole")
    n_steps = args.cartpole_steps // args.num_envs
    out = {}
    for save in (False, True):
        env = make_vec_env("cartpole", args.num_envs)
        env.reset(seed=0)
        rng = np.random.default_rng(0)
        actions = rng.integers(0, 2, (n_steps, args.num_envs))
        w = DatasetWriter(directory / f"cartpole_{save}", env="cartpole", num_envs=args.num_envs,
                          logic_shape=spec.logic_shape, neural_shape=spec.neural_shape,
                          neural_dtype=spec.neural_dtype, n_actions=spec.n_actions,
                          chunk_size=args.chunk_size) if save else None
        logic, neural = env.reset(seed=0)
        t0 = time.perf_counter()
        for t in range(n_steps):
            b = env.step(actions[t])
            if w is not None:
                w.add(logic, neural, actions[t], b.reward, b.next_logic, b.next_neural,
                      b.terminated, b.truncated)
            logic, neural = b.obs_logic, b.obs_neural
        if w is not None:
            w.close()
        out["env_steps_per_s_with_writer" if save else "env_steps_per_s"] = \
            n_steps * args.num_envs / (time.perf_counter() - t0)
        env.close()
    out["writer_overhead_vs_bare_env"] = out["env_steps_per_s"] / out["env_steps_per_s_with_writer"] - 1
    return out


# --------------------------------------------------------------------------- reading in place


def _memory() -> dict[str, int]:
    """This process's resident memory by kind (bytes): anonymous (private), file-backed, peak."""
    out = {}
    with open("/proc/self/status") as f:
        for line in f:
            key = line.split(":")[0]
            if key in ("RssAnon", "RssFile", "VmHWM"):
                out[key] = int(line.split()[1]) * 1024
    return out


def _load_baseline(commit: str, where: Path) -> Path | None:
    """The format-1 ``dataset_utils.py`` of ``commit`` (its in-RAM reader), written to ``where``."""
    if not commit:
        return None
    src = subprocess.run(["git", "-C", str(Path(__file__).resolve().parents[1]), "show",
                          f"{commit}:dataset_utils.py"], capture_output=True, text=True)
    if src.returncode != 0:
        print(f"note: no baseline ({src.stderr.strip()})", file=sys.stderr)
        return None
    path = where / f"dataset_utils_{commit}.py"
    path.write_text(src.stdout)
    return path


def _import(path: Path):
    spec = importlib.util.spec_from_file_location(path.stem, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[path.stem] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


def _sample_rate(sample: Callable[[np.random.Generator], object], seconds: float) -> float:
    rng = np.random.default_rng(1)
    calls, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        sample(rng)
        calls += 1
    return calls / (time.perf_counter() - t0)


def probe(job: dict) -> dict:
    """One measurement in this process (run by :func:`bench_memory` in a fresh interpreter)."""
    before = _memory()
    if job["kind"] == "open":  # the format-2 reader, opened whole; every transition read back
        from dataset_utils import DatasetReader
        r = DatasetReader(job["directory"])
        opened = _memory()
        n = job["num_envs"]
        mismatches, at = 0, 0
        block: list[tuple] = []
        stream = atari_stream(job["steps"], n, job["episode_length"], 0)
        for t, step in enumerate(stream):
            block.append(step)
            if len(block) == 16 or t == job["steps"] - 1:
                rows = np.arange(at, at + len(block) * n)
                b = r.get(rows)
                want = [np.concatenate([s[i] for s in block]) for i in range(9)]
                got = (b.logic_state, b.neural_state, b.action, b.reward, b.next_logic_state,
                       b.next_neural_state, b.terminated, b.truncated, b.life_lost)
                for g, w in zip(got, want):
                    if g.shape != w.shape or not np.array_equal(np.ascontiguousarray(g).view(np.uint8),
                                                                np.ascontiguousarray(w.astype(g.dtype)).view(np.uint8)):
                        mismatches += 1
                at += len(block) * n
                block = []
        del b, want, got, block
        ctypes.CDLL(None).malloc_trim(0)  # what the loop's temporaries left in the heap goes back
        after = _memory()
        return {"transitions": len(r), "read_back": at, "fields_mismatching": mismatches,
                "anon_before": before["RssAnon"], "anon_after_open": opened["RssAnon"],
                "anon_after_read_back": after["RssAnon"], "file_after_read_back": after["RssFile"],
                "peak_rss": after["VmHWM"], "pool_bytes": sum(c.logic.nbytes + c.neural.nbytes for c in r.chunks)}
    if job["kind"] == "open_baseline":  # the format-1 reader: copies the prefix into memory
        old = _import(Path(job["module"]))
        t0 = time.perf_counter()
        r = old.DatasetReader(job["directory"])
        return {"transitions": len(r), "load_seconds": time.perf_counter() - t0,
                "anon_before": before["RssAnon"], "anon_after_open": _memory()["RssAnon"]}
    if job["kind"] == "speed":  # both readers side by side, interleaved rounds
        from blendrl.datasets.reader import empty_batch
        from dataset_utils import DatasetReader
        b = job["batch_size"]
        new = DatasetReader(job["directory"])
        out = empty_batch(new.layout, b)
        contenders = {"format2_sample": lambda rng: new.sample(b, rng),
                      "format2_sample_into_buffers": lambda rng: new.sample(b, rng, out=out)}
        if job.get("module"):
            old_reader = _import(Path(job["module"])).DatasetReader(job["baseline_directory"])
            contenders = {"format1_in_ram_sample": lambda rng: old_reader.sample(b, rng), **contenders}
        for sample in contenders.values():  # warm-up: page tables of the maps, caches
            _sample_rate(sample, job["seconds"])
        rates: dict[str, list[float]] = {k: [] for k in contenders}
        for _ in range(job["rounds"]):
            for name, sample in contenders.items():
                rates[name].append(_sample_rate(sample, job["seconds"]))
        return {"batch_size": b, "seconds_per_round": job["seconds"], "rounds": rates}
    raise ValueError(f"unknown probe {job['kind']!r}")


def _run_probe(job: dict) -> dict:
    """``job`` in a fresh interpreter. Memory probes make glibc hand large freed blocks back at
    once (``MALLOC_MMAP_THRESHOLD_``), so that the probe's own temporaries do not count as the
    reader's memory; the speed probe runs with the default allocator settings."""
    env = dict(os.environ)
    if job["kind"] != "speed":
        env["MALLOC_MMAP_THRESHOLD_"] = str(1 << 20)
    res = subprocess.run([sys.executable, __file__, "--probe", json.dumps(job)], capture_output=True,
                         text=True, env=env)
    if res.returncode != 0:
        raise RuntimeError(f"probe {job['kind']} failed: {res.stderr[-2000:]}")
    return json.loads(res.stdout.strip().splitlines()[-1])


def bench_memory(root: Path, args: Args) -> dict:
    """The read-in-place benchmark (see the module docstring)."""
    n = args.num_envs
    steps = max(1, args.memory_transitions // n)
    kw = dict(env="atari", num_envs=n, logic_shape=(40, 6), neural_shape=(4, 84, 84),
              neural_dtype=np.uint8, n_actions=18, chunk_size=args.memory_chunk_size)
    out: dict = {}
    d2 = root / "format2"
    t0 = time.perf_counter()
    with DatasetWriter(d2, **kw) as w:
        for step in atari_stream(steps, n, args.episode_length, 0):
            w.add(*step)
    out["format2_write_seconds"] = time.perf_counter() - t0
    s = summarize(d2)
    out["format2_bytes"], out["format2_chunks"] = s["bytes"], s["chunks"]
    module = _load_baseline(args.baseline_commit, root)
    d1 = root / "format1"
    if module is not None:
        old = _import(module)
        t0 = time.perf_counter()
        with old.DatasetWriter(d1, **kw) as w:
            for step in atari_stream(steps, n, args.episode_length, 0):
                w.add(*step[:8])  # format 1 has no life_lost
        out["format1_write_seconds"] = time.perf_counter() - t0
    job = {"directory": str(d2), "num_envs": n, "steps": steps, "episode_length": args.episode_length}
    out["format2_reader"] = _run_probe({"kind": "open", **job})
    if module is not None:
        out["format1_reader"] = _run_probe({"kind": "open_baseline", "directory": str(d1), "module": str(module)})
    out["sample"] = _run_probe({"kind": "speed", "directory": str(d2), "baseline_directory": str(d1),
                                "module": str(module) if module else None, "batch_size": args.batch_size,
                                "seconds": args.sample_seconds, "rounds": args.rounds})
    med = {k: float(np.median(v)) for k, v in out["sample"]["rounds"].items()}
    out["sample_batches_per_s_median"] = med
    if "format1_in_ram_sample" in med:
        out["sample_speed_vs_format1"] = {k: v / med["format1_in_ram_sample"] for k, v in med.items()}
    return out


def _print(figures: dict, indent: str = "  ") -> None:
    for k, v in figures.items():
        if isinstance(v, dict):
            print(f"{indent}{k}:")
            _print(v, indent + "  ")
        elif isinstance(v, float):
            print(f"{indent}{k:36s} {v:,.3f}")
        elif isinstance(v, list):
            print(f"{indent}{k:36s} " + ", ".join(f"{x:,.1f}" for x in v))
        else:
            print(f"{indent}{k:36s} {v:,}" if isinstance(v, int) else f"{indent}{k:36s} {v}")


def main(args: Args) -> None:
    if args.probe is not None:
        print(json.dumps(probe(json.loads(args.probe))))
        return
    for name in ("num_envs", "chunk_size", "memory_chunk_size", "episode_length", "batch_size", "rounds",
                 "verify_workers", "feed_workers"):
        if getattr(args, name) < 1:
            print(f"error: --{name.replace('_', '-')} must be positive", file=sys.stderr)
            sys.exit(2)
    for name in ("classic_transitions", "atari_transitions", "memory_transitions", "cartpole_steps"):
        if getattr(args, name) < 0:
            print(f"error: --{name.replace('_', '-')} must be >= 0", file=sys.stderr)
            sys.exit(2)
    if args.sample_seconds <= 0:
        print("error: --sample-seconds must be positive", file=sys.stderr)
        sys.exit(2)
    if not args.feed_seconds >= 0:
        print("error: --feed-seconds must be >= 0", file=sys.stderr)
        sys.exit(2)
    tmp = args.directory is None
    root = Path(tempfile.mkdtemp(prefix="bench_dataset_")) if tmp else args.directory
    if not tmp and root.exists() and any(root.iterdir()):
        print(f"error: --directory {root} is not empty", file=sys.stderr)
        sys.exit(2)
    root.mkdir(parents=True, exist_ok=True)
    results = {}
    try:
        if args.classic_transitions:
            results["classic"] = bench_one("classic", root, classic_stream, args.classic_transitions, args,
                                           (2, 2), (4,), np.float32, 2)
        if args.atari_transitions:
            results["atari"] = bench_one("atari", root, atari_stream, args.atari_transitions, args,
                                         (40, 6), (4, 84, 84), np.uint8, 18)
        if args.cartpole_steps:
            results["cartpole_writer_cost"] = bench_cartpole(root, args)
        if args.memory_transitions:
            results["read_in_place"] = bench_memory(root, args)
    finally:
        if tmp:
            shutil.rmtree(root, ignore_errors=True)
    for part, figures in results.items():
        print(f"[{part}]")
        _print(figures)
    if args.json_out is not None:
        args.json_out.write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main(cli(Args))
