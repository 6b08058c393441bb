#!/usr/bin/env bash
# Evidence (not a test): the commands behind each result of the README's "Atari results", kept in
# the work tree so that they can be rerun on a fresh machine. Each runs in the foreground; start
# long ones with nohup, e.g.
#     nohup bench/atari_evidence.sh kangaroo_1m 1 > kangaroo_1m_s1.log 2>&1 &
# and continue one that was stopped (a session end, SIGTERM: the jobs checkpoint) with RESUME=1.
#
#   bench/atari_evidence.sh kangaroo_500k        PPO and BlendRL-PPO online, 500k steps, seed 1,
#                                                side by side with CleanRL's ppo_atari.py
#   bench/atari_evidence.sh seaquest_500k        PPO online and CleanRL, Seaquest, 500k, seed 1
#   bench/atari_evidence.sh kangaroo_1m SEED     the whole cycle at 1M steps: both online methods,
#                                                both offline methods on both datasets (1 epoch
#                                                per interval), 10 marks, 8 evaluation episodes
#   bench/atari_evidence.sh kangaroo_1m_online SEED   the same, online methods only
#   bench/atari_evidence.sh kangaroo_cycle_64k   the whole cycle at 64k steps (the CPU-sized one)
#
# EVIDENCE_DIR (default: out/atari_evidence of this project) holds every run, dataset, log and
# plot; CLEANRL_DIR is CleanRL's folder (default: ../shared/peers/cleanrl). Every job uses one
# torch thread: two side by side fill a 2-core machine.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
ev="${EVIDENCE_DIR:-$root/out/atari_evidence}"
cleanrl="${CLEANRL_DIR:-$root/../shared/peers/cleanrl}"
py="$root/.venv/bin/python"
resume=()
[ "${RESUME:-0}" = 1 ] && resume=(--resume)
mkdir -p "$ev"

online() {  # online SCRIPT GAME STEPS SEED RUN_ID SUBDIR INTERVALS
    "$py" "$root/$1" --env "$2" --total_timesteps "$3" --seed "$4" --threads 1 --intervals "$7" \
        --eval_episodes 8 --save_dataset --run_id "$5" --runs_dir "$ev/$6/runs" \
        --dataset_dir "$ev/$6/data" "${resume[@]}"
}

cleanrl_ppo() {  # cleanrl_ppo ALE_ID STEPS SEED SUBDIR (CleanRL writes runs/ under its cwd)
    mkdir -p "$ev/$4/cleanrl"
    (cd "$ev/$4/cleanrl" && OMP_NUM_THREADS=1 "$py" "$cleanrl/ppo_atari.py" --env_id "$1" \
        --total_timesteps "$2" --seed "$3" --num_envs 8)
}

cycle() {  # cycle EXP_ID STEPS INTERVALS EPOCHS SEED [more run_full_cycle flags]
    local exp="$1" steps="$2" intervals="$3" epochs="$4" seed="$5"
    shift 5
    "$py" "$root/run_full_cycle.py" --experiment_id "$exp" --environment kangaroo \
        --online_steps "$steps" --intervals_count "$intervals" --eval_episodes 8 --seeds "$seed" \
        --offline_epochs "$epochs" --work_dir "$ev/$exp" --wait "${resume[@]}" "$@"
}

case "${1:-}" in
    kangaroo_500k)
        online train_neuralppo.py kangaroo 500000 1 ppo_kangaroo_s1 kangaroo_500k 5 &
        online train_blenderl.py kangaroo 500000 1 blendrl_kangaroo_s1 kangaroo_500k 5 &
        [ -n "${resume[*]}" ] || cleanrl_ppo ALE/Kangaroo-v5 500000 1 kangaroo_500k &
        wait ;;
    seaquest_500k)
        online train_neuralppo.py seaquest 500000 1 ppo_seaquest_s1 seaquest_500k 5 &
        [ -n "${resume[*]}" ] || cleanrl_ppo ALE/Seaquest-v5 500000 1 seaquest_500k &
        wait ;;
    kangaroo_1m)
        cycle kangaroo_1m 1000000 10 1 "${2:?the seed}" ;;
    kangaroo_1m_online)
        cycle "kangaroo_1m_online_s${2:?the seed}" 1000000 10 1 "$2" --offline_methods ;;
    kangaroo_cycle_64k)
        cycle kangaroo_cpu_cycle 64000 4 2 1 ;;
    *)
        sed -n '2,19p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//' >&2
        exit 2 ;;
esac
