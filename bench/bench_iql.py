#!/usr/bin/env python
"""Benchmark (not a test) of discrete IQL: gradient steps per second of ``IQLTrainer.update``.

    .venv/bin/python bench/bench_iql.py                                # both agents, cartpole + seaquest
    .venv/bin/python bench/bench_iql.py --envs cartpole --agents neural --seconds 20

For each environment and agent it builds the agent and the critics exactly as the offline scripts
do (``build_agent`` + ``IQLTrainer.for_spec``) and times ``update`` on synthetic minibatches shaped
like that environment's data (cartpole: logic [2, 2] float32, neural [4] float32; seaquest: logic
[42, 6] float32, neural [4, 84, 84] uint8). Each step includes the numpy -> torch conversion of
the batch (``Batch.to_torch``), as in the training loop, but not the dataset sampling (see
bench/bench_dataset.py for that). A BlendRL agent that cannot be built (e.g. its rule set is
missing) is reported as such and skipped.
"""

from __future__ import annotations

import json
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import tyro

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from blendrl.agents.factory import BlendRLFields, build_agent, learning_rates  # noqa: E402
from blendrl.algos.iql import IQLConfig, IQLTrainer  # noqa: E402
from blendrl.envs import get_spec  # noqa: E402
from blendrl.envs.base import EnvSpec  # noqa: E402
from blendrl.runs import default_threads, resolve_device  # noqa: E402
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


def bench_one(env: str, agent_kind: str, args: Args, device: torch.device) -> dict:
    spec = get_spec(env)
    torch.set_num_threads(args.threads or default_threads(spec.is_image))
    torch.manual_seed(0)
    blend = BlendRLFields() if agent_kind == "blendrl" else None
    agent = build_agent(spec, blend).to(device)
    trainer = IQLTrainer.for_spec(agent, spec, IQLConfig(actor_lrs=learning_rates(3e-4, blend)), device)
    batches = synthetic_batches(spec, args.batch_size, 4, np.random.default_rng(0))
    for i in range(args.warmup_steps):
        trainer.update(batches[i % len(batches)].to_torch(device))
    steps, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < args.seconds:
        trainer.update(batches[steps % len(batches)].to_torch(device))
        steps += 1
    if device.type == "cuda":
        torch.cuda.synchronize()
    elapsed = time.perf_counter() - t0
    return {"env": env, "agent": agent_kind, "batch_size": args.batch_size, "steps": steps,
            "seconds": elapsed, "steps_per_second": steps / elapsed,
            "threads": torch.get_num_threads(), "device": str(device)}


def main(args: Args) -> int:
    device = resolve_device(args.device)
    rows = []
    for env in args.envs:
        for agent_kind in args.agents:
            try:
                row = bench_one(env, agent_kind, args, device)
            except Exception as e:  # noqa: BLE001 - report what could not be built and go on
                row = {"env": env, "agent": agent_kind, "error": f"{type(e).__name__}: {e}"}
            rows.append(row)
            if "error" in row:
                print(f"{env:10s} {agent_kind:8s} skipped: {row['error']}", flush=True)
            else:
                print(f"{env:10s} {agent_kind:8s} {row['steps_per_second']:9.1f} steps/s "
                      f"(batch {row['batch_size']}, {row['steps']} steps in {row['seconds']:.1f}s, "
                      f"{row['threads']} threads, {row['device']})", flush=True)
    if args.json_out is not None:
        args.json_out.write_text(json.dumps(rows, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main(tyro.cli(Args)))
