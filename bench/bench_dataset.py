#!/usr/bin/env python
"""Benchmark (not a test) of dataset_utils: write throughput, bytes per transition, sampling rate.

    .venv/bin/python bench/bench_dataset.py                      # defaults: well under a minute
    .venv/bin/python bench/bench_dataset.py --atari-transitions 100000 --classic-transitions 5000000

Measures, with synthetic streams shaped like the real ones (episodes ending by termination or
truncation, true final states, 4-frame stacks that shift one frame a step):
  * classic control (logic [2, 2] float32, neural [4] float32): write transitions/s (time inside
    ``add``/``close`` only), bytes per transition on disk, reader load time and ``sample(B)``
    transitions/s from the whole dataset;
  * Atari (logic [40, 6] float32, neural [4, 84, 84] uint8): the same, ``sample`` rebuilding stacks;
  * the writer's cost next to real CartPole stepping (``blendrl.envs``, N parallel copies): env
    steps/s alone vs with ``DatasetWriter.add`` of every step — an upper bound of what the writer
    costs an online run, whose steps also pay for the network and the PPO update.
"""

from __future__ import annotations

import json
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

import numpy as np
import tyro

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

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


def atari_stream(n_steps: int, num_envs: int, ep_len: int, seed: int) -> Iterator[tuple]:
    """Steps of a frame-stack stream: stacks shift by one new frame; a reset repeats its frame."""
    rng = np.random.default_rng(seed)
    pool = rng.integers(0, 256, (64, 84, 84), dtype=np.uint8)  # frames drawn from a pool: cheap

    def frames(k: int) -> np.ndarray:
        return pool[rng.integers(0, len(pool), k)]

    stack = np.repeat(frames(num_envs)[:, None], 4, axis=1)
    logic = rng.standard_normal((num_envs, 40, 6)).astype(np.float32)
    length = np.zeros(num_envs, np.int64)
    for _ in range(n_steps):
        nxt = np.concatenate([stack[:, 1:], frames(num_envs)[:, None]], axis=1)
        nlogic = rng.standard_normal((num_envs, 40, 6)).astype(np.float32)
        length += 1
        term = rng.random(num_envs) < 1.0 / ep_len
        trunc = (length >= 2 * ep_len) & ~term
        done = term | trunc
        yield logic, stack, rng.integers(0, 18, num_envs), np.ones(num_envs), nlogic, nxt, term, trunc
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
    w.close()
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
            "load_seconds": load, f"sample{args.batch_size}_transitions_per_s": sample_rate}


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


def main(args: Args) -> None:
    for name in ("classic_transitions", "atari_transitions", "num_envs", "chunk_size",
                 "episode_length", "batch_size"):
        if getattr(args, name) < 1:
            print(f"error: --{name.replace('_', '-')} must be positive", file=sys.stderr)
            sys.exit(2)
    if args.sample_seconds <= 0 or args.cartpole_steps < 0:
        print("error: --sample-seconds must be positive and --cartpole-steps >= 0", file=sys.stderr)
        sys.exit(2)
    tmp = args.directory is None
    root = Path(tempfile.mkdtemp(prefix="bench_dataset_")) if tmp else args.directory
    if not tmp and root.exists() and any(root.iterdir()):
        print(f"error: --directory {root} is not empty", file=sys.stderr)
        sys.exit(2)
    root.mkdir(parents=True, exist_ok=True)
    results = {}
    try:
        results["classic"] = bench_one("classic", root, classic_stream, args.classic_transitions, args,
                                       (2, 2), (4,), np.float32, 2)
        results["atari"] = bench_one("atari", root, atari_stream, args.atari_transitions, args,
                                     (40, 6), (4, 84, 84), np.uint8, 18)
        if args.cartpole_steps:
            results["cartpole_writer_cost"] = bench_cartpole(root, args)
    finally:
        if tmp:
            shutil.rmtree(root, ignore_errors=True)
    for part, figures in results.items():
        print(f"[{part}]")
        for k, v in figures.items():
            print(f"  {k:36s} {v:,.3f}" if isinstance(v, float) else f"  {k:36s} {v:,}")
    if args.json_out is not None:
        args.json_out.write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main(tyro.cli(Args))
