#!/usr/bin/env bash
# The checks only a GPU can make, as one prepared run for a lent GPU machine (the `device` tool:
# 15 minutes of device time per task, so one call of at most 10 minutes), and their rehearsal here.
#
# Usage
#   scripts/device_wheels.sh            here, once: the wheels the image lacks, into .whl/cp312/
#   bash bench/device_checks.sh [PART ...]
#                                       there: the device tool's run with carry [".whl/cp312"] and
#                                       timeout_s 600; what it writes to $OUT comes back
#   scripts/device_wheels.sh 3.11 && bash bench/device_checks.sh --rehearse [PART ...]
#                                       here: the same sequence on this CPU at tiny sizes (a few
#                                       minutes), in a virtual environment like the image
#   bash bench/device_checks.sh [--rehearse] --plan [PART ...]
#                                       print the parts, their limits and commands; run nothing
#   bash bench/device_checks.sh --help
#
# Set-up: a fresh virtual environment, $ENV_DIR (/tmp/device_env), over the image's python3, seeing
# the image's packages after its own (a .pth file; so do the subprocesses of the launcher and the
# tests, whatever PYTHONPATH they set), gets the wheels of .whl/cpXY/ (XY: that Python); then
# an import check (tyro, gymnasium, ale_py, OCAtari, rliable, the project, a Seaquest env stepped
# with object extraction): nothing else runs if it fails. The project runs under the image's numpy
# 2 (tests/test_numpy2.py), so no numpy is installed. PARTs run in the order given (default: all,
# in this order), each under its own limit cut to what is left of DEADLINE_S (default 540) seconds
# from the start, set-up included; a part with under 45 s left (the cycle: 90 s), or needing CUDA
# where there is none (--rehearse), is skipped and checks.log says so:
#   compiled        90 s  the IQL step compiled with CUDA graphs (--compile reduce-overhead, fp32),
#                         neural and BlendRL, on pre-built Seaquest-shaped batches; first, so that a
#                         crash shows before anything else: iql_compiled.json
#   tests          120 s  the CUDA tests CI skips (pytest -k cuda): cuda_tests.txt
#   bench_eager     90 s  bench_iql.py on an Atari-shaped dataset of BENCH_TRANSITIONS (200000) on
#                         disk: neural and BlendRL; fp32, tf32, bf16; the prefix on the device and
#                         the host's prefetch into pinned memory: iql_eager.json
#   bench_compiled  90 s  the same with CUDA graphs (reduce-overhead), fp32 and bf16, the prefix on
#                         the device: iql_graphs.json
#   cycle          150 s  a complete CYCLE_ENV (kangaroo) cycle through run_full_cycle.py, seed 1,
#                         3 intervals: its online runs (PPO, BlendRL-PPO, CYCLE_STEPS=100000
#                         transitions, 8 evaluation episodes, --device cpu) start in the background
#                         right after the set-up, on CPUs apart from the GPU parts' (6 of them, with
#                         12 or more); this part then trains IQL and BlendRL-IQL on both datasets on
#                         the GPU (CYCLE_EPOCHS=2) and plots: cycle.txt (the launcher's output) and
#                         cycle.tar.gz (plots, every run's results/run/timing.json and
#                         training_log.pkl, the logs). A cycle cut by its limit is stopped
#                         (kill_experiments.sh's module) and plotted from what its runs wrote.
# checks.log: nvidia-smi, versions, each part's command, exit status and output (the figures).
# The benches print and write the device, threads and data path of every figure. The image's
# torch (2.11) and numpy (2.x) are not the project's pins (2.13, 1.26.4): say so beside a figure.
#
# --rehearse: the image simulated by a virtual environment in $REHEARSE_DIR (/tmp/device_rehearsal;
# built once, about 2 minutes; REHEARSE_FRESH=1 rebuilds it) holding only torch 2.13 (CPU, from
# local disk, in place of the image's), numpy 2, pytest, SciPy, scikit-image, OpenCV-headless,
# matplotlib and TensorBoard, in place of the image's python3; ENV_DIR is $REHEARSE_DIR/env. The CUDA parts are
# skipped, the tests run (their CUDA cases skip), bench_eager runs on the CPU (batch 16, 2000
# transitions, 1 s a figure, --dataset-device auto) and the cycle at 384 transitions (2 envs x 64
# steps, 1 evaluation episode, batch 16 offline). OUT defaults to $REHEARSE_DIR/out.
set -uo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.." || exit 1
ALL_PARTS=(compiled tests bench_eager bench_compiled cycle)
own_limit() {
    case $1 in
        compiled|bench_eager|bench_compiled) echo 90 ;; tests) echo 120 ;; cycle) echo 150 ;; *) echo 0 ;;
    esac
}
needs_cuda() { [[ $1 == compiled || $1 == bench_compiled || ($1 == bench_eager && -z $rehearse) ]]; }
help() { sed -n '2,/^set -uo/p' "$0" | sed '$d' | sed -E 's/^# ?//'; }

rehearse="" plan="" parts=()
for a in "$@"; do
    case $a in
        --rehearse) rehearse=1 ;; --plan) plan=1 ;; -h|--help) help; exit 0 ;;
        -*) echo "unknown option $a (--rehearse, --plan, --help)" >&2; exit 2 ;;
        *) [ "$(own_limit "$a")" -gt 0 ] || { echo "unknown part $a (${ALL_PARTS[*]})" >&2; exit 2; }
           parts+=("$a") ;;
    esac
done
[ ${#parts[@]} -gt 0 ] || parts=("${ALL_PARTS[@]}")

DEADLINE_S=${DEADLINE_S:-540}
CYCLE_ENV=${CYCLE_ENV:-kangaroo}
if [ -z "$rehearse" ]; then
    ENV_DIR=${ENV_DIR:-/tmp/device_env}
    OUT=$(realpath -m "${OUT:-/tmp/device_out}")
    base=python3 dev=cuda
    BENCH_TRANSITIONS=${BENCH_TRANSITIONS:-200000}
    bench_sizes=(--batch-size 256 --seconds 2 --dataset-transitions "$BENCH_TRANSITIONS")
    data_devs=(cuda cpu)
    CYCLE_STEPS=${CYCLE_STEPS:-100000} CYCLE_EPOCHS=${CYCLE_EPOCHS:-2} eval_episodes=8
    online_args="--device cpu" offline_args=""
else
    R=$(realpath -m "${REHEARSE_DIR:-/tmp/device_rehearsal}")
    ENV_DIR=$R/env
    OUT=$(realpath -m "${OUT:-$R/out}")
    base=$R/image/bin/python dev=cpu
    bench_sizes=(--batch-size 16 --seconds 1 --warmup-steps 1 --dataset-transitions 2000)
    data_devs=(auto)
    CYCLE_STEPS=${CYCLE_STEPS:-384} CYCLE_EPOCHS=${CYCLE_EPOCHS:-1} eval_episodes=1
    online_args="--device cpu --num_envs 2 --num_steps 64" offline_args="--batch_size 16"
fi
exp="${CYCLE_ENV}_device"
py=$ENV_DIR/bin/python
# With 12 CPUs or more the cycle's online runs keep off the 6 the GPU parts use.
ncpu=$(nproc) gpu_pin=() cycle_pin=()
if [ "$ncpu" -ge 12 ] && command -v taskset >/dev/null; then
    gpu_pin=(taskset -c 0-5) cycle_pin=(taskset -c "6-$((ncpu - 1))")
fi

part_cmd() {  # the command of part $1 (bench output goes to checks.log, figures to json)
    local bench=("$py" bench/bench_iql.py --envs seaquest --agents neural blendrl --device "$dev")
    case $1 in
        compiled) echo "${bench[*]} --seconds 3 --compile reduce-overhead --precision fp32 --json-out $OUT/iql_compiled.json" ;;
        tests) echo "$py -m pytest -q -p no:cacheprovider tests -k cuda" ;;
        bench_eager) echo "${bench[*]} ${bench_sizes[*]} --compile off --precision fp32 tf32 bf16 --dataset-device ${data_devs[*]} --json-out $OUT/iql_eager.json" ;;
        bench_compiled) echo "${bench[*]} ${bench_sizes[*]} --compile reduce-overhead --precision fp32 bf16 --dataset-device ${data_devs[0]} --json-out $OUT/iql_graphs.json" ;;
        cycle) echo "$py run_full_cycle.py --experiment_id $exp --environment $CYCLE_ENV --online_steps $CYCLE_STEPS --intervals_count 3 --eval_episodes $eval_episodes --seeds 1 --offline_epochs $CYCLE_EPOCHS --online_extra_args='$online_args' --offline_extra_args='$offline_args' --wait" ;;
    esac
}
if [ -n "$plan" ]; then
    echo "mode: $([ -n "$rehearse" ] && echo "rehearsal on this CPU" || echo device); deadline ${DEADLINE_S} s; OUT $OUT"
    for part in "${parts[@]}"; do
        echo "$part ($(own_limit "$part") s$(needs_cuda "$part" && echo ', needs CUDA')): $(part_cmd "$part")"
    done
    exit 0
fi

start=$SECONDS
mkdir -p "$OUT" || exit 1
rm -f "$OUT"/{checks.log,cuda_tests.txt,cycle.txt,cycle.tar.gz,iql_compiled.json,iql_eager.json,iql_graphs.json}
export PYTHONUNBUFFERED=1 PYTHONPATH="$PWD"
log() { echo "[$(date +%T) +$((SECONDS - start))s] $*" | tee -a "$OUT/checks.log"; }
left() { echo $((DEADLINE_S - (SECONDS - start))); }

log "parts: ${parts[*]}${rehearse:+ (rehearsal on this CPU)}; $ncpu CPUs"
timeout -k 5 20 nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv >> "$OUT/checks.log" 2>&1
if [ -n "$rehearse" ]; then  # the image, simulated (built once)
    if [ -n "${REHEARSE_FRESH:-}" ] || [ ! -f "$R/image/.built" ]; then
        log "building the image's stand-in in $R/image"
        rm -rf "$R/image"
        { python3 -m venv "$R/image" && "$R/image/bin/pip" install -q torch==2.13.0 "numpy>=2" pytest scipy \
              scikit-image opencv-python-headless matplotlib tensorboard && touch "$R/image/.built"; } \
            >> "$OUT/checks.log" 2>&1 || { log "could not build it"; exit 1; }
    fi
fi
cp=$("$base" -c 'import sys; print(f"cp{sys.version_info[0]}{sys.version_info[1]}")') || { log "no $base"; exit 1; }
[ -d ".whl/$cp" ] || { log "no .whl/$cp: run scripts/device_wheels.sh ${cp:2:1}.${cp:3} here first"; exit 1; }
rm -rf "$ENV_DIR"
"$base" -m venv --without-pip "$ENV_DIR" >> "$OUT/checks.log" 2>&1 || { log "no venv in $ENV_DIR"; exit 1; }
site=$("$py" -c 'import sysconfig; print(sysconfig.get_path("purelib"))')
"$base" -c 'import site; print("\n".join(site.getsitepackages()))' |
    sed -E "s|.*|import site; site.addsitedir('&')|" > "$site/zz_image.pth"
log "installing $(ls .whl/"$cp"/*.whl | wc -l) wheels of .whl/$cp into $ENV_DIR, over $base's packages"
timeout -k 10 120 "$base" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir \
    --target "$site" .whl/"$cp"/*.whl >> "$OUT/checks.log" 2>&1 || { log "wheel install failed"; exit 1; }
if ! timeout -k 10 120 "$py" -c "import tyro, gymnasium, ale_py, ocatari, blendrl.online, blendrl.offline
from rliable import library
import numpy as np, torch, scipy, pandas, cv2, matplotlib
from blendrl.envs import make_vec_env
env = make_vec_env('seaquest', 2); env.reset(seed=0)
for _ in range(50): env.step(np.zeros(2, np.int64))
env.close()
print('versions: python', __import__('sys').version.split()[0], 'torch', torch.__version__, 'numpy', np.__version__,
      'scipy', scipy.__version__, 'pandas', pandas.__version__, 'cv2', cv2.__version__,
      'matplotlib', matplotlib.__version__, 'ocatari', __import__('importlib.metadata').metadata.version('ocatari'))
print('versions: GPU', torch.cuda.get_device_name() if torch.cuda.is_available() else 'none: no CUDA')" > "$OUT/imports.txt" 2>&1; then
    cat "$OUT/imports.txt" >> "$OUT/checks.log"; rm -f "$OUT/imports.txt"
    log "the project does not import or run here (above): nothing else runs"
    exit 1
fi
log "imports and a Seaquest env: fine; $(grep ^versions: "$OUT/imports.txt" | cut -c11- | paste -sd ';')"
cuda=""; grep -q "no CUDA" "$OUT/imports.txt" || cuda=1
rm -f "$OUT/imports.txt"

# the cycle's online runs, in the background from now on (the cycle part trains offline and plots)
w="" online_pid=""
if [[ " ${parts[*]} " == *" cycle "* ]]; then
    w=$(mktemp -d /tmp/device_cycle.XXXXXX)
    cmd=$(part_cmd cycle)
    log "cycle: online runs start in the background (${cycle_pin[*]:-no pinning}; at most $(($(left) - 60)) s): $cmd --work_dir $w --offline_methods none --offline_datasets none --max_parallel 2"
    eval "timeout -k 10 $(($(left) - 60)) ${cycle_pin[*]} $cmd --work_dir $w --offline_methods none --offline_datasets none --max_parallel 2" \
        > "$OUT/cycle.txt" 2>&1 &
    online_pid=$!
fi

stop_cycle() { "$py" -m blendrl.launch.kill "$exp" --logs_dir "$w/logs" >> "$OUT/cycle.txt" 2>&1; }
cycle() {  # $1: seconds; the offline runs and the plots, once the online runs have ended
    local rc k t0=$SECONDS
    while kill -0 "$online_pid" 2>/dev/null && [ $((SECONDS - t0)) -lt $(($1 - 60)) ]; do sleep 2; done
    if kill -0 "$online_pid" 2>/dev/null; then
        log "cycle: the online runs are not done after $((SECONDS - t0)) s more"; rc=124
    else
        wait "$online_pid"; rc=$?
        log "cycle: online runs: exit $rc (waited $((SECONDS - t0)) s for them)"
    fi
    if [ $rc -eq 0 ]; then
        eval "timeout -k 10 $(($1 - (SECONDS - t0) - 30)) $(part_cmd cycle) --work_dir $w --skip_existing --max_parallel 4" \
            >> "$OUT/cycle.txt" 2>&1
        rc=$?
    fi
    if [ $rc -ne 0 ]; then  # cut (or failed): stop its jobs, plot what the runs wrote so far
        stop_cycle; k=$?
        log "cycle: exit $rc; stopping its jobs (blendrl.launch.kill): exit $k"
        timeout -k 5 20 "$py" plot_results.py "$exp" --runs_dir "$w/out/runs" --output_dir "$w/plots" \
            >> "$OUT/cycle.txt" 2>&1
    fi
    (cd "$w" && tar czf "$OUT/cycle.tar.gz" $(ls -d logs plots 2>/dev/null) \
        $(ls out/runs/*/{results.json,run.json,timing.json,training_log.pkl} 2>/dev/null))
    return $rc
}

for part in "${parts[@]}"; do
    secs=$(left); [ "$secs" -gt "$(own_limit "$part")" ] && secs=$(own_limit "$part")
    if needs_cuda "$part" && [ -z "$cuda" ]; then log "$part: skipped (needs CUDA)"; continue; fi
    if [ "$secs" -lt $([ "$part" = cycle ] && echo 90 || echo 45) ]; then log "$part: skipped, ${secs} s left of ${DEADLINE_S}"; continue; fi
    t0=$SECONDS
    log "$part (at most $secs s): $(part_cmd "$part")"
    case $part in
        cycle) cycle "$secs" ;;
        tests) eval "timeout -k 10 $((secs - 10)) ${gpu_pin[*]} $(part_cmd tests)" > "$OUT/cuda_tests.txt" 2>&1 ;;
        *) eval "timeout -k 10 $((secs - 10)) ${gpu_pin[*]} $(part_cmd "$part")" >> "$OUT/checks.log" 2>&1 ;;
    esac
    rc=$?
    extra=""; [ "$part" = tests ] && extra="; $(tail -n 1 "$OUT/cuda_tests.txt")"
    log "$part: exit $rc in $((SECONDS - t0)) s$extra"
done
[ -z "$w" ] || stop_cycle  # whatever of the cycle still runs (a skipped cycle part): stopped
log "done in $((SECONDS - start)) s; files: $(cd "$OUT" && ls | tr '\n' ' ')"
