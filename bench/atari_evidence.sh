#!/usr/bin/env bash
# Evidence (not a test): the commands behind each result of docs/results.md, kept in
# the work tree so that they can be rerun on a fresh machine. Each runs in the foreground and exits
# non-zero when one of its jobs failed or was interrupted; start long ones with nohup, e.g.
#     nohup bench/atari_evidence.sh kangaroo_1m 1 > kangaroo_1m_s1.log 2>&1 &
# Stop one with SIGTERM or Ctrl-C to the script (it passes the signal on; the jobs checkpoint and
# exit 75), a cycle's jobs (they run under the launcher's detached runner) with
#     kill_experiments.sh EXP --logs_dir $EVIDENCE_DIR/SUBDIR/logs --grace 120
# and continue either with RESUME=1 (CleanRL's run cannot resume: RESUME=1 leaves it out).
#
#   bench/atari_evidence.sh kangaroo_500k        PPO and BlendRL-PPO online, 500k steps, seed 1,
#                                                side by side; CleanRL's ppo_atari.py after PPO
#   bench/atari_evidence.sh seaquest_500k        PPO online and CleanRL, Seaquest, 500k, seed 1
#   bench/atari_evidence.sh kangaroo_1m SEED     the whole cycle at 1M steps: both online methods,
#                                                both offline methods on both datasets (1 epoch
#                                                per interval, --precision bf16), 10 marks, 8
#                                                evaluation episodes; flags after SEED go to
#                                                run_full_cycle.py (e.g. --dry_run to see the
#                                                plan, --max_parallel 1)
#   bench/atari_evidence.sh kangaroo_1m_online SEED   the same experiment, online methods only
#   bench/atari_evidence.sh kangaroo_1m_plot     plot_results.py of every kangaroo_1m seed
#   bench/atari_evidence.sh kangaroo_cycle_64k   the whole cycle at 64k steps (the CPU-sized one)
#   bench/atari_evidence.sh keep SUBDIR [NAME]   copy the small result files of $EVIDENCE_DIR/SUBDIR's
#                                                runs (run.json, results.json, timing.json,
#                                                training_log.pkl) into docs/evidence/NAME/runs of
#                                                the work tree, to commit: plot_results.py redraws
#                                                the figures from them on any machine
#
# EVIDENCE_DIR (default: out/atari_evidence of this project) holds every run, dataset and log
# (the cycles' plots too); CLEANRL_DIR is CleanRL's folder (default: ../shared/peers/cleanrl);
# KEEP_DIR is where keep writes (default: docs/evidence of this project).
# Every job uses one torch thread: two side by side fill a 2-core machine. The launcher's knob
# variables (run_full_cycle.sh's EXPERIMENT_ID, MAX_PARALLEL, ...) are ignored here except RESUME.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
ev="${EVIDENCE_DIR:-$root/out/atari_evidence}"
cleanrl="${CLEANRL_DIR:-$root/../shared/peers/cleanrl}"
py="$root/.venv/bin/python"
resume=()
case "$(echo "${RESUME:-0}" | tr '[:upper:]' '[:lower:]')" in
    1|true|yes|on) resume=(--resume) ;;
    0|false|no|off|"") ;;
    *) echo "error: RESUME must be 1/0, true/false, yes/no or on/off, got '$RESUME'" >&2; exit 2 ;;
esac
# the knobs come from this script's commands, not from whatever run_full_cycle.sh exported
for var in $(cd "$root" && "$py" -c "from blendrl.launch.knobs import KNOBS; print(*(k.env_var for k in KNOBS))"); do
    unset "$var"
done
mkdir -p "$ev"

pids=()
trap 'trap - TERM INT; [ "${#pids[@]}" -eq 0 ] || kill -TERM "${pids[@]}" 2>/dev/null; wait; exit 143' TERM INT

# online and cleanrl_ppo run in the background (&) and exec the training process, so that the
# pids in $pids are the processes themselves and the trap's SIGTERM reaches them
online() {  # online SCRIPT GAME STEPS SEED RUN_ID EXP_ID INTERVALS
    exec "$py" "$root/$1" --exp_id "$6" --env "$2" --total_timesteps "$3" --seed "$4" --threads 1 \
        --intervals "$7" --eval_episodes 8 --save_dataset --run_id "$5" \
        --runs_dir "$ev/$6/runs" --dataset_dir "$ev/$6/data" ${resume[@]+"${resume[@]}"}
}

cleanrl_ppo() {  # cleanrl_ppo ALE_ID STEPS SEED EXP_ID (CleanRL writes runs/ under its cwd)
    [ -z "${resume[*]:-}" ] || { echo "RESUME=1: CleanRL's $1 run cannot resume, left out" >&2; return 0; }
    mkdir -p "$ev/$4/cleanrl"
    cd "$ev/$4/cleanrl"
    OMP_NUM_THREADS=1 exec "$py" "$cleanrl/ppo_atari.py" --env_id "$1" --total_timesteps "$2" \
        --seed "$3" --num_envs 8
}

cycle() {  # cycle WORK_SUBDIR STEPS INTERVALS EPOCHS SEED EXP_ID [more run_full_cycle flags]
    local sub="$1" steps="$2" intervals="$3" epochs="$4" seed="$5" exp="$6"
    shift 6
    "$py" "$root/run_full_cycle.py" --experiment_id "$exp" --environment kangaroo \
        --online_steps "$steps" --intervals_count "$intervals" --eval_episodes 8 --seeds "$seed" \
        --offline_epochs "$epochs" --work_dir "$ev/$sub" --wait ${resume[@]+"${resume[@]}"} "$@"
}

rc=0
wait_for() {  # wait_for PID...: wait for these background jobs; rc=1 if one failed
    local p
    for p in "$@"; do wait "$p" || rc=1; done
}

case "${1:-}" in
    kangaroo_500k)
        online train_neuralppo.py kangaroo 500000 1 ppo_kangaroo_s1 atari_evidence 5 & pids+=($!)
        online train_blenderl.py kangaroo 500000 1 blendrl_kangaroo_s1 atari_evidence 5 & pids+=($!)
        wait_for "${pids[0]}"
        if [ "$rc" = 0 ]; then
            cleanrl_ppo ALE/Kangaroo-v5 500000 1 atari_evidence & pids+=($!)
            wait_for "${pids[2]}"
        fi
        wait_for "${pids[1]}"
        exit "$rc" ;;
    seaquest_500k)
        online train_neuralppo.py seaquest 500000 1 ppo_seaquest_s1 seaquest 5 & pids+=($!)
        cleanrl_ppo ALE/Seaquest-v5 500000 1 seaquest & pids+=($!)
        wait_for "${pids[@]}"
        exit "$rc" ;;
    kangaroo_1m)  # IQL in bf16: ~2x the gradient steps/s on a CPU (docs/speed.md)
        cycle kangaroo_1m 1000000 10 1 "${2:?the seed}" kangaroo_1m --offline_extra_args='--precision bf16' \
            "${@:3}" ;;
    kangaroo_1m_online)
        cycle "kangaroo_1m_online_s${2:?the seed}" 1000000 10 1 "$2" kangaroo_1m --offline_methods ;;
    kangaroo_1m_plot)
        # every kangaroo_1m run folder, from each seed's work folder, in one runs folder
        mkdir -p "$ev/kangaroo_1m_all/runs"
        for run in "$ev"/kangaroo_1m*/out/runs/*/; do
            [ -d "$run" ] && ln -sfn "$run" "$ev/kangaroo_1m_all/runs/$(basename "$run")"
        done
        "$py" "$root/plot_results.py" kangaroo_1m --runs_dir "$ev/kangaroo_1m_all/runs" \
            --output_dir "$ev/kangaroo_1m_all/plots" ;;
    kangaroo_cycle_64k)
        cycle kangaroo_cpu_cycle 64000 4 2 1 kangaroo_cpu_cycle ;;
    keep)
        sub="${2:?the folder under EVIDENCE_DIR}"; name="${3:-$sub}"
        src="$ev/$sub/out/runs"; [ -d "$src" ] || src="$ev/$sub/runs"
        [ -d "$src" ] || { echo "error: no runs folder under $ev/$sub" >&2; exit 2; }
        n=0
        for run in "$src"/*/; do
            [ -f "$run/run.json" ] || continue
            dst="${KEEP_DIR:-$root/docs/evidence}/$name/runs/$(basename "$run")"
            mkdir -p "$dst"
            for f in run.json results.json timing.json training_log.pkl; do
                [ ! -f "$run/$f" ] || cp "$run/$f" "$dst/"
            done
            n=$((n + 1))
        done
        echo "kept the result files of $n run(s) in ${KEEP_DIR:-$root/docs/evidence}/$name/runs" >&2 ;;
    *)
        sed -n '2,31p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//' >&2
        exit 2 ;;
esac
