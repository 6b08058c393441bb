#!/usr/bin/env bash
# Run the whole online-vs-offline comparison of one experiment, locally or on SLURM.
# Edit the knobs below, or set any of them from outside: EXPERIMENT_ID=try2 SEEDS="0 1" ./run_full_cycle.sh
# Flags override the knobs and choose what to do:
#   ./run_full_cycle.sh                    run it; on a terminal (local mode) follow it to the end
#                                          (Ctrl-C stops following, not the experiment)
#   ./run_full_cycle.sh --detach           start it and return at once
#   ./run_full_cycle.sh --dry_run          print the plan (cluster mode: the sbatch scripts); start nothing
#   ./run_full_cycle.sh --wait             follow it to the end anywhere (also without a terminal, on SLURM)
#   ./run_full_cycle.sh --resume           continue a stopped experiment (same knobs; or RESUME=1)
#   ./run_full_cycle.sh --status EXP       each job's state        (--help lists every flag)
#   ./run_full_cycle.sh --overwrite | --skip_existing   what to do with runs that already exist
# Outputs: out/runs/{run_id}/, offline_dataset/{run_id}/, logs/{EXP}/ (job logs, registry.json,
# sbatch scripts), plots/{EXP}/. Stop an experiment with ./kill_experiments.sh EXP.
set -euo pipefail
# The knobs below, with their defaults, are the knob table of blendrl/launch/knobs.py (printed by
# `.venv/bin/python -m blendrl.launch.knobs`; the project's tests check the two agree). Edit them
# here for your experiment, or set them from outside. A knob set but empty (EXPERIMENT_ID=) is
# refused, not taken for its default, unless '' means something for it (CLUSTER_PARTITION, the
# *_EXTRA_ARGS, ...); a list of methods that is meant to be empty is written none.

# ---------------------------------------------------------------- the experiment
: "${EXPERIMENT_ID=default_cartpole}"        # name of the experiment (run ids, logs/EXP/, plots/EXP/): letters, digits, . _ -
: "${ENVIRONMENT=cartpole}"                  # cartpole | mountaincar | donkeykong | kangaroo | seaquest
: "${ONLINE_METHODS=ppo blendrl_ppo}"        # online methods (ppo, blendrl_ppo; none: no online run); each saves its dataset
: "${ONLINE_STEPS=50000}"                    # environment transitions per online run
: "${OFFLINE_METHODS=iql blendrl_iql}"       # offline methods (iql, blendrl_iql; none: no offline run)
: "${OFFLINE_DATASETS=ppo blendrl_ppo}"      # whose online data the offline methods train on (none with OFFLINE_METHODS=none)
: "${OFFLINE_EPOCHS=5}"                      # offline epochs on each interval's dataset prefix
: "${INTERVALS_COUNT=5}"                     # evaluation points per run
: "${EVAL_EPISODES=10}"                      # episodes per evaluation
: "${EVAL_POLICY=sample}"                    # evaluation actions of every method: sample (from the policy) | greedy
: "${EVAL_VIDEO=0}"                          # 1: each evaluation's first episode also as an MP4 in the run's videos/ (BlendRL: with the rules that fired)
: "${SEEDS=0}"                               # one run of every method per seed, e.g. "0 1 2"

# ---------------------------------------------------------------- where and how
: "${LOCAL=1}"                               # 1: run on this machine; 0: submit to SLURM
: "${MAX_PARALLEL=0}"                        # local jobs at once (0: one per core; threads = cores / jobs)
: "${OFFLINE_START=after}"                   # offline jobs start after (their online job exited 0) | follow (with it: --follow, each interval once saved)
: "${USE_LARGE_DATASET_PATH=0}"              # 1: keep datasets under LARGE_DATASET_PATH, not offline_dataset/
: "${LARGE_DATASET_PATH=}"                   # datasets folder for USE_LARGE_DATASET_PATH=1 (e.g. /scratch/$USER/datasets)

# ---------------------------------------------------------------- SLURM (LOCAL=0)
: "${CLUSTER_PARTITION=}"                    # sbatch --partition ('' = the cluster's default)
: "${CLUSTER_TIME=04:00:00}"                 # sbatch --time per job ('' = the partition's default); longer jobs checkpoint and requeue
: "${CLUSTER_CPUS=4}"                        # sbatch --cpus-per-task (and --threads) of the training jobs whose *_CPUS below is ''
: "${CLUSTER_MEM=16G}"                       # sbatch --mem of the jobs whose *_MEM below is '' ('' = the cluster's default)
: "${CLUSTER_GPUS=}"                         # sbatch --gpus of the jobs whose *_GPUS below is '' (the offline ones), e.g. 1 or a100:1 ('' or 0 = none)
: "${CLUSTER_ONLINE_CPUS=}"                  # online jobs' CPUs (environment stepping) and --threads ('' = CLUSTER_CPUS)
: "${CLUSTER_ONLINE_MEM=}"                   # online jobs' --mem ('' = CLUSTER_MEM)
: "${CLUSTER_ONLINE_GPUS=0}"                 # online jobs' --gpus (0 = none: they step environments on CPUs; '' = CLUSTER_GPUS)
: "${CLUSTER_OFFLINE_CPUS=}"                 # offline jobs' CPUs and --threads ('' = CLUSTER_CPUS)
: "${CLUSTER_OFFLINE_MEM=}"                  # offline jobs' --mem ('' = CLUSTER_MEM)
: "${CLUSTER_OFFLINE_GPUS=}"                 # offline jobs' --gpus, e.g. 1 or a100:1 (0 = none: train on CPUs; '' = CLUSTER_GPUS)
: "${CLUSTER_PLOT_MEM=2G}"                   # the plot job's --mem (it asks for 1 CPU and no GPU; '' = CLUSTER_MEM)
: "${CLUSTER_ACCOUNT=}"                      # sbatch --account ('' = none)
: "${CLUSTER_EXTRA=}"                        # more sbatch options for every job (not CPUs, memory or GPUs: the knobs above), e.g. "--qos=short --constraint=avx2"
: "${CLUSTER_SIGNAL_MARGIN=300}"             # seconds before the time limit to checkpoint and requeue (0: never)

# ---------------------------------------------------------------- pass-through training flags
: "${ONLINE_EXTRA_ARGS=}"                    # extra flags for the online scripts, e.g. "--learning_rate 1e-3"
: "${OFFLINE_EXTRA_ARGS=}"                   # extra flags for the offline scripts
: "${BLENDRL_ONLINE_EXTRA_ARGS=}"            # extra flags for the BlendRL online script only, e.g. "--soft_or logsumexp"
: "${BLENDRL_OFFLINE_EXTRA_ARGS=}"           # extra flags for the BlendRL offline script only, e.g. "--offline_blend_ent_coef 0.01"

# ---------------------------------------------------------------- continue a stopped experiment
: "${RESUME=0}"                              # 1 (or --resume): keep the done jobs, continue the others from their checkpoints

export EXPERIMENT_ID ENVIRONMENT ONLINE_METHODS ONLINE_STEPS OFFLINE_METHODS OFFLINE_DATASETS \
    OFFLINE_EPOCHS INTERVALS_COUNT EVAL_EPISODES EVAL_POLICY EVAL_VIDEO SEEDS LOCAL MAX_PARALLEL \
    OFFLINE_START USE_LARGE_DATASET_PATH LARGE_DATASET_PATH CLUSTER_PARTITION CLUSTER_TIME \
    CLUSTER_CPUS CLUSTER_MEM CLUSTER_GPUS CLUSTER_ONLINE_CPUS CLUSTER_ONLINE_MEM \
    CLUSTER_ONLINE_GPUS CLUSTER_OFFLINE_CPUS CLUSTER_OFFLINE_MEM CLUSTER_OFFLINE_GPUS \
    CLUSTER_PLOT_MEM CLUSTER_ACCOUNT CLUSTER_EXTRA CLUSTER_SIGNAL_MARGIN ONLINE_EXTRA_ARGS \
    OFFLINE_EXTRA_ARGS BLENDRL_ONLINE_EXTRA_ARGS BLENDRL_OFFLINE_EXTRA_ARGS RESUME

# The project folder (outputs go there unless --work_dir says otherwise); relative paths given in
# knobs or flags are taken from the current folder.
root="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
"$root/scripts/setup_venv.sh"
exec "$root/.venv/bin/python" "$root/run_full_cycle.py" "$@"
