#!/usr/bin/env python
"""Run the whole online-vs-offline comparison of one experiment, locally or on SLURM.

Usually called by ``run_full_cycle.sh``, whose knobs (environment variables such as
``EXPERIMENT_ID`` or ``SEEDS``) become the defaults of the flags below; a flag given here wins.

Examples:
  python run_full_cycle.py --dry_run                   # print the plan, start nothing
  python run_full_cycle.py                             # run it (on a terminal: follow it to the end)
  python run_full_cycle.py --detach                    # run it and return at once
  python run_full_cycle.py --resume                    # continue a stopped experiment (same knobs)
  python run_full_cycle.py --status default_cartpole   # each job's state
Exit status: 0 started (when following: every job done), 1 a job or a submission failed,
2 bad input (nothing started), 130 Ctrl-C while following (the experiment goes on).
"""

from __future__ import annotations

import dataclasses
import os
import sys
from dataclasses import dataclass
from pathlib import Path

import tyro

from blendrl.envs import CLASSIC_ENVS, ENV_NAMES
from blendrl.launch import cli
from blendrl.launch.config import ConfigError, knobs_from_env


@dataclass
class Args:
    """Run every online and offline job of an experiment in the right order, then plot.
    Defaults come from the environment variables of run_full_cycle.sh (same names, upper case)."""

    experiment_id: str = "default_cartpole"
    """EXPERIMENT_ID: name of the experiment (run ids, logs/{id}/, plots/{id}/); letters, digits, . _ -"""
    environment: str = "cartpole"
    """ENVIRONMENT: cartpole, mountaincar, seaquest, kangaroo or donkeykong"""
    online_methods: tuple[str, ...] = ("ppo", "blendrl_ppo")
    """ONLINE_METHODS: online methods to train (ppo, blendrl_ppo); each saves its dataset"""
    online_steps: int = 50000
    """ONLINE_STEPS: environment transitions per online run"""
    offline_methods: tuple[str, ...] = ("iql", "blendrl_iql")
    """OFFLINE_METHODS: offline methods to train (iql, blendrl_iql)"""
    offline_datasets: tuple[str, ...] = ("ppo", "blendrl_ppo")
    """OFFLINE_DATASETS: whose online data the offline methods train on (ppo, blendrl_ppo)"""
    offline_epochs: int = 5
    """OFFLINE_EPOCHS: epochs of offline training on each interval's dataset prefix"""
    intervals_count: int = 5
    """INTERVALS_COUNT: evaluation points (intervals) per run"""
    eval_episodes: int = 10
    """EVAL_EPISODES: episodes per evaluation"""
    eval_policy: str = "sample"
    """EVAL_POLICY: evaluation actions of every method: sample (from the policy, as the field reports) or greedy"""
    seeds: tuple[int, ...] = (0,)
    """SEEDS: one run of every method per seed"""
    local: bool = True
    """LOCAL: run on this machine (True) or submit to SLURM (False)"""
    max_parallel: int = 0
    """MAX_PARALLEL: local jobs at once (0: one per core; threads per job = cores / jobs)"""
    use_large_dataset_path: bool = False
    """USE_LARGE_DATASET_PATH: keep datasets under LARGE_DATASET_PATH instead of offline_dataset/"""
    large_dataset_path: str = ""
    """LARGE_DATASET_PATH: the datasets folder used when USE_LARGE_DATASET_PATH is set"""
    cluster_partition: str = ""
    """CLUSTER_PARTITION: sbatch --partition ('' = the cluster's default)"""
    cluster_time: str = "04:00:00"
    """CLUSTER_TIME: sbatch --time per job (M, H:M:S, D-H:M:S...); long jobs checkpoint and requeue"""
    cluster_cpus: int = 4
    """CLUSTER_CPUS: sbatch --cpus-per-task (also the jobs' --threads)"""
    cluster_mem: str = "16G"
    """CLUSTER_MEM: sbatch --mem ('' = the cluster's default)"""
    cluster_gpus: str = ""
    """CLUSTER_GPUS: sbatch --gpus, e.g. 1 or a100:1 ('' = none)"""
    cluster_account: str = ""
    """CLUSTER_ACCOUNT: sbatch --account ('' = none)"""
    cluster_extra: str = ""
    """CLUSTER_EXTRA: more sbatch options (as a flag: --cluster_extra='--qos=short --constraint=avx2')"""
    cluster_signal_margin: int = 300
    """CLUSTER_SIGNAL_MARGIN: seconds before the time limit at which a job checkpoints and requeues (0: never)"""
    online_extra_args: str = ""
    """ONLINE_EXTRA_ARGS: extra flags for every online training script; as a flag write it with '=': --online_extra_args='--learning_rate 1e-3'"""
    offline_extra_args: str = ""
    """OFFLINE_EXTRA_ARGS: extra flags for every offline training script (as a flag: --offline_extra_args='--beta 5')"""
    blendrl_online_extra_args: str = ""
    """BLENDRL_ONLINE_EXTRA_ARGS: extra flags for the BlendRL online script only, e.g. '--soft_or logsumexp --critic blended'"""
    blendrl_offline_extra_args: str = ""
    """BLENDRL_OFFLINE_EXTRA_ARGS: extra flags for the BlendRL offline script only, e.g. '--offline_blend_ent_coef 0.01'"""
    work_dir: str = ""
    """folder for out/runs, offline_dataset, logs and plots ('' = this project's folder)"""
    scripts_dir: str = ""
    """folder of train_*.py and plot_results.py ('' = this project's folder)"""
    dry_run: bool = False
    """print the plan (cluster mode: the sbatch scripts too) and start nothing"""
    status: str | None = None
    """print the state of each job of experiment STATUS and exit (with --wait: wait for it)"""
    wait: bool = False
    """block until the experiment ends, showing progress, then print a summary (what a local
    experiment started on a terminal does anyway; with --status EXP: follow that experiment)"""
    detach: bool = False
    """return once the experiment is started, instead of following it on a terminal"""
    resume: bool = False
    """RESUME: continue the experiment in its registry with the knobs it was started with: keep
    the jobs that are done, continue the others from their latest checkpoint (afresh when they
    have none), start those never started"""
    overwrite: bool = False
    """replace runs that already exist (an online run together with its dataset)"""
    skip_existing: bool = False
    """skip jobs whose runs already exist (without asking)"""


def main() -> int:
    try:
        env_values = knobs_from_env(os.environ)
    except ConfigError as e:
        print(f"error: invalid environment variables (nothing was started):\n{e}", file=sys.stderr)
        return 2
    args = tyro.cli(Args, default=dataclasses.replace(Args(), **env_values))
    root = Path(__file__).resolve().parent
    return cli.main(dataclasses.asdict(args), project_root=root, cwd=Path.cwd(),
                    python=sys.executable, env_names=ENV_NAMES, vector_envs=CLASSIC_ENVS)


if __name__ == "__main__":
    sys.exit(main())
