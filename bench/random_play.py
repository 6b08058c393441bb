#!/usr/bin/env python
"""Evidence (not a test): whole-game raw scores of uniform-random play under this project's Atari
environment and under CleanRL ``ppo_atari.py``'s own wrapper stack (its ``make_env``:
``RecordEpisodeStatistics`` inside the no-op starts, frame skip, episodic life, FIRE reset and
reward clipping), the same number of games each. It tells whether the two start protocols alone
change what a policy scores.

    .venv/bin/python bench/random_play.py --game kangaroo --games 60
"""

from __future__ import annotations

import argparse
import importlib.util
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
PEER = ROOT.parent / "shared" / "peers" / "cleanrl"
GYM_IDS = {"seaquest": "ALE/Seaquest-v5", "kangaroo": "ALE/Kangaroo-v5",
           "donkeykong": "ALE/DonkeyKong-v5"}


def ours(game: str, games: int, envs: int, rng: np.random.Generator, seed: int) -> list[float]:
    from blendrl.envs import get_spec, make_vec_env

    n_actions = get_spec(game).n_actions
    env = make_vec_env(game, envs)
    env.reset(seed=seed)
    scores: list[float] = []
    while len(scores) < games:
        b = env.step(rng.integers(0, n_actions, envs))
        scores += [float(r) for r in b.episode_return[~np.isnan(b.episode_return)]]
    env.close()
    return scores[:games]


def cleanrl(game: str, games: int, envs: int, rng: np.random.Generator, seed: int) -> list[float]:
    import gymnasium as gym

    sys.path.insert(0, str(PEER))
    spec = importlib.util.spec_from_file_location("cleanrl_ppo_atari", PEER / "ppo_atari.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)  # defines make_env; its training runs under __main__ only
    vec = gym.vector.SyncVectorEnv([module.make_env(GYM_IDS[game], i, False, "random")
                                    for i in range(envs)])
    vec.reset(seed=seed)
    scores: list[float] = []
    while len(scores) < games:
        _, _, _, _, infos = vec.step(rng.integers(0, vec.single_action_space.n, envs))
        if "episode" in infos:
            scores += [float(r) for r in infos["episode"]["r"][infos["_episode"]]]
    vec.close()
    return scores[:games]


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--game", choices=sorted(GYM_IDS), default="kangaroo")
    p.add_argument("--games", type=int, default=60)
    p.add_argument("--envs", type=int, default=4)
    p.add_argument("--seed", type=int, default=123)
    a = p.parse_args()
    print(f"| {a.game}, uniform-random actions | games | mean raw score | s.e. | seconds |")
    print("|---|---|---|---|---|")
    for name, run in (("this project", ours), ("CleanRL ppo_atari.py wrappers", cleanrl)):
        t = time.perf_counter()
        s = np.asarray(run(a.game, a.games, a.envs, np.random.default_rng(0), a.seed))
        print(f"| {name} | {len(s)} | {s.mean():.1f} | {s.std(ddof=1) / np.sqrt(len(s)):.1f} | "
              f"{time.perf_counter() - t:.0f} |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
