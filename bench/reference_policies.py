#!/usr/bin/env python
"""Evidence (not a test): what reference policies score under the project's one evaluation
(``blendrl.evaluation.evaluate``: the same seeds, starts and sampling as every method's
``results.json``), for reading a learning curve:

- **uniform**: every action equally likely;
- **dataset marginal** (``--dataset``): each action with its frequency among the first
  ``--limit`` transitions of a dataset, in every state. An offline learner that only copies how
  often the behaviour policy pressed each button scores about this; a learner that uses the
  state should score above it;
- **untrained agents** (``--untrained``): the neural and the BlendRL agent (default options and
  rules) as built, before any update (``torch.manual_seed(--seed)``): where a method's curve
  starts. BlendRL's rules act from the first step, so its curve starts above the neural one.

    .venv/bin/python bench/reference_policies.py --dataset offline_dataset/<run_id> --limit 16384 --untrained
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from blendrl.agents.base import Agent, Policy  # noqa: E402


class StateBlind(Agent):
    """The same action distribution in every state."""

    def __init__(self, probs: np.ndarray):
        super().__init__()
        p = torch.as_tensor(np.asarray(probs, np.float64) / np.sum(probs), dtype=torch.float32)
        self.register_buffer("log_p", p.log())

    def policy(self, logic: torch.Tensor, neural: torch.Tensor) -> Policy:
        return Policy(self.log_p.expand(logic.shape[0], -1), None, None)


def dataset_marginal(directory: str, limit: int | None) -> tuple[np.ndarray, int]:
    """Each action's frequency among the first ``limit`` transitions (all when None)."""
    from blendrl.datasets.reader import DatasetReader

    reader = DatasetReader(directory, limit)
    actions = reader.tables(len(reader))["action"].astype(np.int64)
    return np.bincount(actions, minlength=reader.n_actions) / len(actions), len(reader)


def main() -> int:
    from blendrl.datasets.layout import DatasetError
    from blendrl.datasets.manifest import read_manifest
    from blendrl.envs import get_spec
    from blendrl.evaluation import evaluate

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--dataset", action="append", default=[],
                   help="a dataset directory (repeatable); its action frequencies make one policy")
    p.add_argument("--limit", type=int, default=None,
                   help="use the first LIMIT transitions of each dataset (default: all)")
    p.add_argument("--env", default=None, help="environment when no --dataset is given")
    p.add_argument("--untrained", action="store_true",
                   help="also evaluate the untrained neural and BlendRL agents")
    p.add_argument("--episodes", type=int, default=8, help="evaluation episodes per policy")
    p.add_argument("--seed", type=int, default=1, help="the run seed whose evaluation seeds are used")
    p.add_argument("--num_envs", type=int, default=8, help="parallel environment copies")
    a = p.parse_args()
    torch.set_num_threads(1)
    rows: list[tuple[str, str, Agent]] = []
    env = a.env
    for d in a.dataset:
        try:
            env_d = read_manifest(Path(d))["env"]
        except DatasetError as e:
            p.error(str(e))
        if env is not None and env_d != env:
            p.error(f"{d} is a {env_d} dataset, not {env}")
        env = env_d
    if env is None:
        p.error("give --dataset or --env")
    n_actions = get_spec(env).n_actions
    names = get_spec(env).action_names
    rows.append(("uniform", "-", StateBlind(np.full(n_actions, 1.0 / n_actions))))
    for d in a.dataset:
        try:
            probs, n = dataset_marginal(d, a.limit)
        except DatasetError as e:
            p.error(str(e))
        top = ", ".join(f"{names[i]} {probs[i]:.2f}" for i in np.argsort(-probs)[:3])
        rows.append((f"marginal of {Path(d).name} (first {n})", top, StateBlind(probs)))
    if a.untrained:
        from blendrl.agents.factory import BlendRLFields, build_agent

        for name, blend in (("neural agent, untrained", None),
                            ("BlendRL agent, untrained (default rules)", BlendRLFields())):
            torch.manual_seed(a.seed)
            rows.append((name, "-", build_agent(get_spec(env), blend)))
    print(f"| {env}, reference policy | most frequent actions | mean return | std | "
          f"(return, length) distinct | seconds |")
    print("|---|---|---|---|---|---|")
    for name, top, agent in rows:
        t = time.perf_counter()
        res = evaluate(agent, env, a.episodes, a.seed, torch.device("cpu"),
                       num_envs=a.num_envs, policy="sample")
        distinct = len(set(zip(res.returns.tolist(), res.lengths.tolist())))
        print(f"| {name} | {top} | {res.mean:.1f} | {res.std:.1f} | {distinct}/{len(res.returns)} | "
              f"{time.perf_counter() - t:.0f} |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
