#!/usr/bin/env python
"""Benchmark (not a test) of OFFLINE_START=after against OFFLINE_START=follow: one experiment of the
launcher run each way, side by side in time (one after the other, the same knobs otherwise), giving
the experiment's wall time and the time until the first offline evaluation exists.

    .venv/bin/python bench/bench_follow.py                              # the default CartPole cycle
    .venv/bin/python bench/bench_follow.py --env kangaroo --online-steps 200000 --intervals 4
    .venv/bin/python bench/bench_follow.py --knobs LOCAL=0 CLUSTER_CPUS=1 CLUSTER_MEM=2G  # on SLURM

Each experiment runs ``run_full_cycle.py --wait`` in a fresh work folder (a temporary one unless
``--work-root``), polled every ``--poll`` seconds for the offline runs' ``results.json``. The
results of both are compared too (timings aside): following must not change them.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from blendrl.cli_parse import cli  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


@dataclass
class Args:
    """OFFLINE_START after vs follow, one experiment each."""

    env: str = "cartpole"
    """ENVIRONMENT of both experiments"""
    online_steps: int = 50_000
    """ONLINE_STEPS"""
    intervals: int = 5
    """INTERVALS_COUNT"""
    offline_epochs: int = 5
    """OFFLINE_EPOCHS"""
    eval_episodes: int = 10
    """EVAL_EPISODES"""
    poll: float = 0.5
    """seconds between looks for the first offline result"""
    work_root: Path | None = None
    """where the two work folders go (default: a temporary folder, kept; its path is printed)"""
    json_out: Path | None = None
    """also write the figures to this JSON file"""
    starts: tuple[str, ...] = ("after", "follow")
    """which OFFLINE_START experiments to run now (one already in --work-root is kept: run the other and compare)"""
    knobs: tuple[str, ...] = ()
    """more launcher knobs for both experiments, KEY=VALUE (e.g. LOCAL=0 to run them on SLURM, ONLINE_METHODS=ppo)"""


def knob_values(pairs: tuple[str, ...]) -> dict[str, str]:
    """``KEY=VALUE`` strings as a dict (a malformed one stops the benchmark before it starts)."""
    bad = [p for p in pairs if "=" not in p or not p.split("=", 1)[0]]
    if bad:
        raise SystemExit(f"error: --knobs takes KEY=VALUE, got {bad}")
    return dict(p.split("=", 1) for p in pairs)


def run_one(start: str, work: Path, args: Args) -> dict:
    """One experiment with OFFLINE_START=``start``: wall seconds, seconds to the first offline result."""
    env = {**os.environ, "EXPERIMENT_ID": f"bench_{start}", "ENVIRONMENT": args.env,
           "ONLINE_STEPS": str(args.online_steps), "INTERVALS_COUNT": str(args.intervals),
           "OFFLINE_EPOCHS": str(args.offline_epochs), "EVAL_EPISODES": str(args.eval_episodes),
           "OFFLINE_START": start, **knob_values(args.knobs)}
    t0 = time.monotonic()
    proc = subprocess.Popen([sys.executable, str(ROOT / "run_full_cycle.py"), "--work_dir", str(work),
                             "--wait"], cwd=ROOT, env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True)
    first = None
    runs = work / "out" / "runs"
    while proc.poll() is None:
        if first is None and any(runs.glob("*_on_*/results.json")):
            first = time.monotonic() - t0
        time.sleep(args.poll)
    wall = time.monotonic() - t0
    if proc.returncode != 0:
        raise SystemExit(f"OFFLINE_START={start}: exit {proc.returncode}: {proc.stderr.read()[-2000:]}")
    return {"wall_seconds": wall, "first_offline_result_seconds": first}


def offline_results(work: Path) -> dict[str, list]:
    strip = lambda entries: [{k: v for k, v in e.items() if "seconds" not in k} for e in entries]  # noqa: E731
    return {p.parent.name.split("_", 2)[2]: strip(json.loads(p.read_text()))
            for p in sorted((work / "out" / "runs").glob("*_on_*/results.json"))}


def main(args: Args) -> None:
    root = args.work_root or Path(tempfile.mkdtemp(prefix="bench_follow_"))
    old = json.loads(args.json_out.read_text()) if args.json_out and args.json_out.exists() else {}
    figures = {k: v for k, v in old.items() if k in ("after", "follow") and k not in args.starts}
    for start in args.starts:
        figures[start] = run_one(start, root / start, args)
        print(f"OFFLINE_START={start}: wall {figures[start]['wall_seconds']:.1f} s, first offline "
              f"result after {figures[start]['first_offline_result_seconds']:.1f} s", flush=True)
    same = offline_results(root / "after") == offline_results(root / "follow")
    figures["same_offline_results"] = same
    print(f"offline results identical: {same} (runs kept in {root})")
    if args.json_out is not None:
        args.json_out.write_text(json.dumps(figures, indent=1))


if __name__ == "__main__":
    main(cli(Args))
