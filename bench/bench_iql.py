#!/usr/bin/env python
"""Benchmark (not a test) of discrete IQL: gradient steps per second of ``IQLTrainer.update``.

    .venv/bin/python bench/bench_iql.py                                # both agents, cartpole + seaquest
    .venv/bin/python bench/bench_iql.py --envs cartpole --agents neural --seconds 20
    .venv/bin/python bench/bench_iql.py --envs seaquest --device cuda --dataset-transitions 200000
    .venv/bin/python bench/bench_iql.py --envs seaquest --agents neural --device cuda \
        --dataset-transitions 200000 --precision fp32 tf32 bf16 --compile off reduce-overhead \
        --dataset-device cuda cpu

For each environment and agent it builds the agent and the critics exactly as the offline scripts
do (``build_agent`` + ``IQLTrainer.for_spec``) and times ``update`` on synthetic minibatches shaped
like that environment's data (cartpole: logic [2, 2] float32, neural [4] float32; seaquest: logic
[42, 6] float32, neural [4, 84, 84] uint8). As in the offline loop, a step is
``IQLTrainer.update_stats`` and the metrics are read every ``--log-every`` steps.

Without ``--dataset-transitions`` each step includes the numpy -> torch conversion of a
pre-built batch (``Batch.to_torch``) but no sampling. With ``--dataset-transitions N`` (image
environments) an Atari-shaped dataset of N transitions (8 envs, episode ends, lost lives) is
written to disk first, and each step draws its minibatch from it through the offline loop's feed
(``blendrl.datasets.feed``, chosen by ``--dataset-device`` as the offline scripts do: the prefix
on the device, or sampled on the host by a background thread into pinned memory; the direct
sampler on CPU). A BlendRL agent that cannot be built (e.g. its rule set is missing) is reported
as such and skipped.

``--precision``, ``--compile`` and ``--dataset-device`` each take several values: every
combination is timed in turn on the same data (e.g. IEEE fp32 against TF32 and bf16, eager against
CUDA graphs, the prefix on the device against the host's prefetch). ``fp32`` is IEEE float32 also on
a GPU; ``tf32`` lets cuDNN and cuBLAS use TensorFloat-32 (``blendrl.algos.iql.set_tf32``).
"""

from __future__ import annotations

import itertools
import json
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from blendrl.cli_parse import cli  # noqa: E402
from blendrl.agents.factory import BlendRLFields, build_agent, learning_rates  # noqa: E402
from blendrl.algos.iql import IQLConfig, IQLTrainer  # noqa: E402
from blendrl.envs import get_spec  # noqa: E402
from blendrl.envs.base import EnvSpec  # noqa: E402
from blendrl.machine import default_threads, resolve_device  # noqa: E402
from dataset_utils import Batch  # noqa: E402


@dataclass
class Args:
    """Gradient steps per second of discrete IQL for the neural and the BlendRL agent."""

    envs: list[str] = field(default_factory=lambda: ["cartpole", "seaquest"])
    """environments whose data shapes to use"""
    agents: list[str] = field(default_factory=lambda: ["neural", "blendrl"])
    """agents to train: neural and/or blendrl"""
    batch_size: int = 256
    """minibatch size"""
    seconds: float = 10.0
    """how long to time each configuration (after warm-up)"""
    warmup_steps: int = 3
    """untimed steps first"""
    threads: int | None = None
    """torch CPU threads (default: as the scripts, 1 for vector states, all CPUs for frames)"""
    device: str = "cpu"
    """torch device (auto, cpu, cuda)"""
    compile: list[str] = field(default_factory=lambda: ["off"])
    """the offline scripts' --compile to time, each in turn: off (eager), default (one compiled graph a
    step), reduce-overhead (that graph replayed as CUDA graphs)"""
    precision: list[str] = field(default_factory=lambda: ["fp32"])
    """the offline scripts' --precision to time, each in turn on the same data: fp32 (IEEE), tf32
    (TensorFloat-32 convolutions and matmuls on a GPU) and/or bf16"""
    log_every: int = 500
    """steps between reads of the metrics (the offline scripts' --log_every)"""
    dataset_transitions: int = 0
    """transitions of an Atari-shaped dataset on disk to sample every step from (0: pre-built batches)"""
    dataset_device: list[str] = field(default_factory=lambda: ["auto"])
    """where the dataset lives when training on CUDA, each in turn: auto, cpu (background prefetch
    into pinned memory), cuda (the prefix on the device)"""
    directory: Path | None = None
    """where to write the datasets (default: a temporary folder, removed afterwards)"""
    json_out: Path | None = None
    """also write the figures to this JSON file"""


def synthetic_batches(spec: EnvSpec, batch_size: int, n: int, rng: np.random.Generator) -> list[Batch]:
    """``n`` random numpy minibatches shaped like the environment's data."""
    def neural() -> np.ndarray:
        if np.dtype(spec.neural_dtype) == np.uint8:
            return rng.integers(0, 256, (batch_size, *spec.neural_shape), dtype=np.uint8)
        return rng.standard_normal((batch_size, *spec.neural_shape)).astype(spec.neural_dtype)

    def logic() -> np.ndarray:
        return rng.random((batch_size, *spec.logic_shape), dtype=np.float32)

    return [Batch(logic(), neural(), rng.integers(0, spec.n_actions, batch_size),
                  rng.standard_normal(batch_size), logic(), neural(),
                  rng.random(batch_size) < 0.01, rng.random(batch_size) < 0.01) for _ in range(n)]


def write_dataset(spec: EnvSpec, transitions: int, directory: Path) -> Path:
    """An Atari-shaped dataset of the environment's shapes (see bench_dataset.atari_stream)."""
    from bench_dataset import atari_stream
    from dataset_utils import DatasetWriter

    d = directory / spec.name
    n = 8
    with DatasetWriter(d, env=spec.name, num_envs=n, logic_shape=spec.logic_shape,
                       neural_shape=spec.neural_shape, neural_dtype=spec.neural_dtype,
                       n_actions=spec.n_actions) as w:
        for step in atari_stream(max(1, transitions // n), n, 200, 0, tuple(spec.logic_shape), spec.n_actions):
            w.add(*step)
    return d


def bench_one(env: str, agent_kind: str, args: Args, device: torch.device,
              dataset: Path | None, precision: str = "fp32", compile_mode: str = "off",
              dataset_device: str = "auto") -> dict:
    from blendrl.datasets.device_pool import device_bytes_needed
    from blendrl.datasets.feed import choose_dataset_device, make_feed
    from dataset_utils import DatasetReader

    spec = get_spec(env)
    torch.set_num_threads(args.threads or default_threads(spec.is_image))
    torch.manual_seed(0)
    blend = BlendRLFields() if agent_kind == "blendrl" else None
    agent = build_agent(spec, blend).to(device)
    trainer = IQLTrainer.for_spec(agent, spec, IQLConfig(actor_lrs=learning_rates(3e-4, blend),
                                                                precision=precision), device)
    trainer.compile(compile_mode)
    feed, where = None, "pre-built batches"
    if dataset is not None:
        reader = DatasetReader(dataset)
        where = choose_dataset_device(dataset_device, device, device_bytes_needed(reader.manifest, len(reader)))
        feed = make_feed(reader, device, where, args.batch_size, np.random.default_rng(0), len(reader))
        t0 = time.perf_counter()
        feed.set_limit(len(reader))
        setup = time.perf_counter() - t0
        next_batch = feed.next
    else:
        batches = synthetic_batches(spec, args.batch_size, 4, np.random.default_rng(0))
        turn = iter(range(1 << 62))
        next_batch = lambda: batches[next(turn) % len(batches)].to_torch(device)  # noqa: E731
    try:
        for _ in range(args.warmup_steps):
            trainer.update_stats(next_batch())
        if device.type == "cuda":
            torch.cuda.synchronize()
        steps, total, t0 = 0, None, time.perf_counter()
        while time.perf_counter() - t0 < args.seconds:
            stats = trainer.update_stats(next_batch()).double()
            total = stats if total is None else total + stats
            steps += 1
            if steps % args.log_every == 0:
                total.tolist()  # the loop's one read per logging point
        if total is not None:
            total.tolist()
        elapsed = time.perf_counter() - t0
    finally:
        if feed is not None:
            feed.close()
    row = {"env": env, "agent": agent_kind, "batch_size": args.batch_size, "steps": steps,
           "seconds": elapsed, "steps_per_second": steps / elapsed,
           "threads": torch.get_num_threads(), "device": str(device), "compile": compile_mode,
           "precision": precision, "cudnn_allow_tf32": torch.backends.cudnn.allow_tf32,
           "matmul_allow_tf32": torch.backends.cuda.matmul.allow_tf32,
           "data": where if dataset is None else f"dataset of {len(reader)} on disk, dataset_device {where}"}
    if dataset is not None:
        row["feed_setup_seconds"] = setup
    if device.type == "cuda":
        row["gpu"] = torch.cuda.get_device_name(device)
    return row


def main(args: Args) -> int:
    device = resolve_device(args.device)
    if args.log_every < 1 or args.dataset_transitions < 0:
        print("error: --log-every must be positive and --dataset-transitions >= 0", file=sys.stderr)
        return 2
    tmp = args.directory is None and args.dataset_transitions > 0
    root = Path(tempfile.mkdtemp(prefix="bench_iql_")) if tmp else args.directory
    rows = []
    try:
        _run_all(args, device, root, rows)
    finally:
        if tmp:
            shutil.rmtree(root, ignore_errors=True)
    if args.json_out is not None:
        args.json_out.write_text(json.dumps(rows, indent=1) + "\n")
    return 0


def _run_all(args: Args, device: torch.device, root: Path | None, rows: list) -> None:
    for env in args.envs:
        dataset = None
        if args.dataset_transitions:
            if not get_spec(env).is_image:
                print(f"{env:10s} skipped: --dataset-transitions writes Atari-shaped (image) datasets", flush=True)
                continue
            t0 = time.perf_counter()
            dataset = write_dataset(get_spec(env), args.dataset_transitions, root)
            print(f"{env:10s} dataset of {args.dataset_transitions} transitions written in "
                  f"{time.perf_counter() - t0:.1f}s", flush=True)
        where = args.dataset_device if dataset is not None else ["auto"]
        for agent_kind, precision, mode, data_dev in itertools.product(args.agents, args.precision,
                                                                        args.compile, where):
            label = f"{precision} compile={mode}"
            try:
                row = bench_one(env, agent_kind, args, device, dataset, precision, mode, data_dev)
            except Exception as e:  # noqa: BLE001 - report what could not be built and go on
                row = {"env": env, "agent": agent_kind, "precision": precision, "compile": mode,
                       "dataset_device": data_dev, "error": f"{type(e).__name__}: {e}"}
            rows.append(row)
            if "error" in row:
                print(f"{env:10s} {agent_kind:8s} {label} skipped: {row['error']}", flush=True)
            else:
                print(f"{env:10s} {agent_kind:8s} {label} {row['steps_per_second']:9.1f} steps/s "
                      f"(batch {row['batch_size']}, {row['steps']} steps in {row['seconds']:.1f}s, "
                      f"{row['threads']} threads, {row['device']}{', ' + row['gpu'] if 'gpu' in row else ''}; "
                      f"{row['data']})", flush=True)


if __name__ == "__main__":
    sys.exit(main(cli(Args)))
