#!/usr/bin/env python
"""Benchmark (not a test): steps per second of the project's vector environments next to the raw
environment driven the same way, per environment, as a ratio.

    .venv/bin/python bench/bench_envs.py [--steps 1000] [--envs seaquest kangaroo] [--repeats 3]

* classic control: gymnasium's ``SyncVectorEnv`` of the same id and ``num_envs`` (SAME_STEP
  autoreset) vs ``make_vec_env`` (goal: >= 0.8x);
* Atari: the same subprocess vector env and preprocessing with OCAtari's object extraction
  switched off (``extract_objects=False``) vs the project's env with extraction (goal: >= 0.7x).
  For reference, gymnasium's own pipeline (``AtariPreprocessing`` + ``FrameStackObservation`` on
  ``ALE/...-v5`` with ``frameskip=1``) is timed too.

Every variant steps with the same pre-drawn random actions; the variants' timed runs are
interleaved and the fastest of ``--repeats`` runs is reported (the machine may be shared).
Steps per second count environment transitions (vector steps x num_envs).
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Literal

import gymnasium as gym
import numpy as np
from gymnasium.vector import AsyncVectorEnv, AutoresetMode, SyncVectorEnv

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the project root, for blendrl

from blendrl.cli_parse import cli  # noqa: E402
from blendrl.envs import ATARI_ENVS, CLASSIC_ENVS, ENV_NAMES, get_spec, make_vec_env
from blendrl.envs.atari import FRAME_SKIP, STACK, STICKY_ACTION_PROBABILITY, make_atari_vec

CLASSIC_GOAL = 0.8
ATARI_GOAL = 0.7


@dataclass
class Args:
    envs: tuple[str, ...] = ENV_NAMES
    """environments to measure (registry names)"""
    steps: int = 1000
    """vector steps per timed run of an Atari environment"""
    classic_steps: int = 5000
    """vector steps per timed run of a classic-control environment"""
    classic_num_envs: int = 8
    """parallel copies of a classic-control environment (one process)"""
    atari_num_envs: int = 4
    """parallel copies of an Atari environment"""
    atari_vectorization: Literal["async", "sync"] = "async"
    """Atari copies in subprocesses (async) or in this process (sync)"""
    repeats: int = 3
    """timed runs per variant (interleaved); the fastest is reported"""
    warmup: int = 20
    """untimed vector steps of every variant before the timed runs"""
    seed: int = 0
    """seed of the environments and of the random actions"""


def validate(args: Args) -> list[str]:
    """Problems with ``args`` (empty when they are fine)."""
    problems = [f"unknown environment {e!r} (valid: {', '.join(ENV_NAMES)})"
                for e in args.envs if e not in ENV_NAMES]
    if not args.envs:
        problems.append("--envs needs at least one environment")
    for name in ("steps", "classic_steps", "classic_num_envs", "atari_num_envs", "repeats"):
        if getattr(args, name) < 1:
            problems.append(f"--{name} must be at least 1, got {getattr(args, name)}")
    if args.warmup < 0:
        problems.append(f"--warmup must not be negative, got {args.warmup}")
    return problems


# A variant: (label, make() -> (step(actions), close())).
Variant = tuple[str, Callable[[], "tuple[Callable[[np.ndarray], object], Callable[[], None]]"]]


def _vec_variant(make_vec: Callable[[], gym.vector.VectorEnv], seed: int):
    def make():
        vec = make_vec()
        vec.reset(seed=seed)
        return vec.step, vec.close
    return make


def _project_variant(name: str, num_envs: int, seed: int, **options):
    def make():
        env = make_vec_env(name, num_envs, **options)
        env.reset(seed=seed)
        return env.step, env.close
    return make


def classic_variants(name: str, args: Args) -> list[Variant]:
    spec, n = get_spec(name), args.classic_num_envs
    raw = _vec_variant(lambda: gym.make_vec(
        spec.gym_id, num_envs=n, vectorization_mode="sync",
        vector_kwargs={"autoreset_mode": AutoresetMode.SAME_STEP},
        max_episode_steps=spec.max_episode_steps), args.seed)
    return [("raw gymnasium SyncVectorEnv", raw),
            ("project make_vec_env", _project_variant(name, n, args.seed))]


def _gymnasium_atari(gym_id: str) -> gym.Env:
    from gymnasium.wrappers import AtariPreprocessing, FrameStackObservation

    env = gym.make(gym_id, frameskip=1, repeat_action_probability=STICKY_ACTION_PROBABILITY)
    env = AtariPreprocessing(env, noop_max=0, frame_skip=FRAME_SKIP, screen_size=84)
    return FrameStackObservation(env, STACK, padding_type="reset")


def atari_variants(name: str, args: Args) -> list[Variant]:
    import ale_py

    gym.register_envs(ale_py)
    spec, n, mode = get_spec(name), args.atari_num_envs, args.atari_vectorization

    def gymnasium_vec():
        fns = [lambda: _gymnasium_atari(spec.gym_id)] * n
        if mode == "async":
            return AsyncVectorEnv(fns, shared_memory=True, autoreset_mode=AutoresetMode.SAME_STEP)
        return SyncVectorEnv(fns, autoreset_mode=AutoresetMode.SAME_STEP)

    raw = _vec_variant(lambda: make_atari_vec(spec, n, vectorization=mode,
                                              extract_objects=False).vec, args.seed)
    return [("raw: same env, no object extraction", raw),
            ("project make_vec_env", _project_variant(name, n, args.seed, vectorization=mode)),
            ("gymnasium AtariPreprocessing+FrameStack", _vec_variant(gymnasium_vec, args.seed))]


def measure(variants: list[Variant], actions: np.ndarray, args: Args) -> list[float]:
    """Best transitions per second of each variant over ``args.repeats`` interleaved runs."""
    envs = [make() for _, make in variants]
    try:
        for step, _ in envs:
            for a in actions[:args.warmup]:
                step(a)
        best = [0.0] * len(envs)
        for _ in range(args.repeats):
            for k, (step, _) in enumerate(envs):
                t0 = time.perf_counter()
                for a in actions:
                    step(a)
                best[k] = max(best[k], actions.size / (time.perf_counter() - t0))
        return best
    finally:
        for _, close in envs:
            close()


def main(args: Args) -> int:
    problems = validate(args)
    if problems:
        for p in problems:
            print(f"bench_envs.py: error: {p}", file=sys.stderr)
        return 2
    rng = np.random.default_rng(args.seed)
    lines, all_ok = [], True
    for name in args.envs:
        spec = get_spec(name)
        if name in CLASSIC_ENVS:
            variants, goal, n, steps = (classic_variants(name, args), CLASSIC_GOAL,
                                        args.classic_num_envs, args.classic_steps)
            setup = f"x{n} sync"
        else:
            assert name in ATARI_ENVS
            variants, goal, n, steps = (atari_variants(name, args), ATARI_GOAL,
                                        args.atari_num_envs, args.steps)
            setup = f"x{n} {args.atari_vectorization}"
        actions = rng.integers(0, spec.n_actions, size=(steps, n))
        rates = measure(variants, actions, args)
        ratio = rates[1] / rates[0]
        ok = ratio >= goal
        all_ok &= ok
        print(f"{name} ({setup}, {steps} vector steps, best of {args.repeats})")
        for (label, _), rate in zip(variants, rates):
            print(f"  {label:42s} {rate:10,.0f} steps/s")
        print(f"  ratio project/raw {ratio:.2f}x (goal >= {goal}x: {'ok' if ok else 'MISSED'})")
        if len(rates) > 2:
            print(f"  ratio project/gymnasium pipeline {rates[1] / rates[2]:.2f}x")
        lines.append(f"{name:12s} {setup:10s} {rates[0]:10,.0f} {rates[1]:10,.0f} {ratio:6.2f}x  "
                     f"goal {goal}x {'ok' if ok else 'MISSED'}")
        sys.stdout.flush()
    print("\nsummary (steps/s)   raw       project    ratio")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main(cli(Args)))
