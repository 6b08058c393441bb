#!/usr/bin/env bash
# The checks only a GPU can make, as one prepared run for a lent GPU machine (the `device` tool;
# about 15 minutes of device time per task, so one call of under 10 minutes). Prepare here once:
# scripts/device_wheels.sh (the wheels its image lacks, into .whl/). Then call the device tool's
# run with carry [".whl"], timeout_s 600 and the command
#     bash bench/device_checks.sh [PART ...]
# PARTs run in the order given (default: iql_off cycle tests iql_reduce-overhead), each under its
# own time limit cut to what is left of DEADLINE_S (default 570) seconds from the start, set-up
# included; a part with too little left is skipped (checks.log says so). With the defaults the
# last part is usually skipped and the tests may be cut.
#   iql_off, iql_reduce-overhead (150 s, 210 s)
#           issue 12's gradient steps/s on a 200k-transition Atari-shaped dataset on disk
#           (bench_iql.py, eager in fp32 and bf16, and fp32 with CUDA graphs): iql_*.txt and iql_*.json
#   cycle (360 s, its clean-up included; skipped with under 180 s left)
#           issue 13's offline figure, which this CPU cannot make (Atari IQL runs at 0.3 steps/s
#           here): run_full_cycle.py --wait on Kangaroo, seed 1, CYCLE_STEPS (default 64000)
#           transitions, 4 intervals, 8 sampled evaluation episodes, both online and both offline
#           methods on both datasets (IQL on the GPU). cycle.txt: the launcher's output, as it
#           goes; cycle.tar.gz: the plots (with interval_comparison.png), every run's
#           results.json, run.json, timing.json and training_log.pkl, and the logs. A cycle cut by
#           its limit is stopped with kill_experiments.sh and plotted from what its runs wrote.
#   tests (150 s)
#           the CUDA tests CI skips (feeds on the device, no host sync in the IQL step, compiled
#           losses equal to eager, an online run resumed on the GPU = uninterrupted): cuda_tests.txt
# Also checks.log (nvidia-smi, versions, each part's status): 8 files at most, what comes back.
# The image's torch (2.11) and numpy (2.x) are not the project's pins (2.13, 1.26.4): say so
# beside any figure. Not run on a device yet: written and checked on this CPU machine only
# (DEVICE_DRY=1 runs it here on the CPU with the venv; CYCLE_ENV, CYCLE_STEPS and CYCLE_EPOCHS
# make its cycle small).
set -uo pipefail
start=$SECONDS
DEADLINE_S=${DEADLINE_S:-570}
CYCLE_STEPS=${CYCLE_STEPS:-64000}
CYCLE_ENV=${CYCLE_ENV:-kangaroo}
CYCLE_EPOCHS=${CYCLE_EPOCHS:-5}
OUT=$(realpath -m "${OUT:-/tmp/device_out}")
mkdir -p "$OUT"
parts=("$@")
[ ${#parts[@]} -gt 0 ] || parts=(iql_off cycle tests iql_reduce-overhead)
own_limit() {  # a part's own limit, seconds; 0 for an unknown part
    case $1 in
        iql_off) echo 150 ;; iql_reduce-overhead) echo 210 ;;  # cold inductor compiles of two agents
        cycle) echo 360 ;; tests) echo 150 ;; *) echo 0 ;;
    esac
}
for part in "${parts[@]}"; do
    [ "$(own_limit "$part")" -gt 0 ] || { echo "unknown part $part (iql_off, cycle, tests, iql_reduce-overhead)" >&2; exit 2; }
done
export PYTHONUNBUFFERED=1 PYTHONPATH="/tmp/site:$PWD"
py=python3
[ -n "${DEVICE_DRY:-}" ] && py="$PWD/.venv/bin/python"
log() { echo "[$(date +%T)] $*" | tee -a "$OUT/checks.log"; }
imports() {  # the modules, and a real Seaquest environment stepped (object extraction included)
    timeout -k 10 120 "$py" -c "import tyro, gymnasium, ale_py, ocatari, blendrl.online, blendrl.offline, numpy as np
from blendrl.envs import make_vec_env
env = make_vec_env('seaquest', 2); env.reset(seed=0)
for _ in range(20): env.step(np.zeros(2, np.int64))
env.close()"
}
# seconds part $1 may take: its own limit, cut to what is left before the deadline
limit_for() { local own left=$((DEADLINE_S - (SECONDS - start))); own=$(own_limit "$1"); echo $(( own < left ? own : left )); }

log "parts: ${parts[*]}"
timeout -k 5 20 nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv >> "$OUT/checks.log" 2>&1
if [ -z "${DEVICE_DRY:-}" ]; then
    log "installing $(ls .whl/*.whl | wc -l) wheels into /tmp/site"
    timeout -k 10 120 python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
        --target /tmp/site .whl/*.whl >>"$OUT/checks.log" 2>&1 || { log "wheel install failed"; exit 1; }
fi
if ! imports >>"$OUT/checks.log" 2>&1; then
    # a last resort: the image's compiled packages (cv2, pandas, scipy) were built against numpy 2
    # and may refuse 1.26; the log then says why
    log "the project does not run with the image's numpy (above); trying numpy 1.26.4"
    timeout -k 10 60 python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
        --target /tmp/site .whl/numpy1/*.whl >>"$OUT/checks.log" 2>&1
    imports >>"$OUT/checks.log" 2>&1 || { log "still does not run: see the lines above"; exit 1; }
fi
log "$(timeout -k 5 60 "$py" -c 'import torch, numpy; print("torch", torch.__version__, "numpy", numpy.__version__,
    torch.cuda.get_device_name() if torch.cuda.is_available() else "no CUDA")' 2>&1)"

cycle() {  # $1: seconds, clean-up included
    local w exp="${CYCLE_ENV}_gpu" rc k
    w=$(mktemp -d /tmp/device_cycle.XXXXXX)
    timeout -k 10 $(($1 - 60)) "$py" run_full_cycle.py --experiment_id "$exp" --environment "$CYCLE_ENV" \
        --online_steps "$CYCLE_STEPS" --intervals_count 4 --eval_episodes 8 --seeds 1 \
        --offline_epochs "$CYCLE_EPOCHS" --work_dir "$w" --wait > "$OUT/cycle.txt" 2>&1
    rc=$?
    if [ $rc -ne 0 ]; then  # cut (or failed): stop its jobs, plot what the runs wrote so far
        bash kill_experiments.sh "$exp" --logs_dir "$w/logs" >> "$OUT/cycle.txt" 2>&1
        k=$?
        log "cycle: exit $rc; kill_experiments.sh: exit $k"
        timeout -k 5 30 "$py" plot_results.py "$exp" --runs_dir "$w/out/runs" --output_dir "$w/plots" \
            >> "$OUT/cycle.txt" 2>&1
    fi
    (cd "$w" && tar czf "$OUT/cycle.tar.gz" $(ls -d logs plots 2>/dev/null) \
        $(ls out/runs/*/{results.json,run.json,timing.json,training_log.pkl} 2>/dev/null))
    return $rc
}
tests() {
    timeout -k 10 "$1" "$py" -m pytest -q -p no:cacheprovider tests/test_dataset.py tests/test_agents.py tests/test_online.py -k cuda \
        > "$OUT/cuda_tests.txt" 2>&1
}
iql() {  # $1: seconds, $2: compile mode; both precisions eager only (bf16 compiles would not fit)
    local prec="fp32 bf16"
    [ "$2" = off ] || prec=fp32
    timeout -k 10 "$1" "$py" bench/bench_iql.py --envs seaquest --device cuda --dataset-transitions 200000 \
        --seconds 10 --compile "$2" --precision $prec --json-out "$OUT/iql_$2.json" > "$OUT/iql_$2.txt" 2>&1
}

for part in "${parts[@]}"; do
    secs=$(limit_for "$part")
    least=45; [ "$part" = cycle ] && least=180  # a shorter cycle would not get past its online runs
    if [ "$secs" -lt $least ]; then log "$part: skipped, ${secs} s left of ${DEADLINE_S}"; continue; fi
    log "$part (at most $secs s)"
    case $part in
        cycle) cycle "$secs" ;; tests) tests "$((secs - 10))" ;; iql_*) iql "$((secs - 10))" "${part#iql_}" ;;
    esac
    rc=$?
    extra=""; [ "$part" = tests ] && extra=" ($(tail -n 1 "$OUT/cuda_tests.txt"))"
    log "$part: exit $rc$extra"
done
log "done in $((SECONDS - start)) s"
