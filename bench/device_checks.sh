#!/usr/bin/env bash
# The checks only a GPU can make, as one prepared run for a lent GPU machine (the `device` tool;
# about 15 minutes of device time per task, so one call of about 8 minutes, leaving room for a
# rerun). Prepare here once: scripts/device_wheels.sh (the wheels its image lacks, into .whl/).
# Then call the device tool's run with carry [".whl"], timeout_s 600 and the command
#     bash bench/device_checks.sh
# It writes under $OUT: checks.log (versions, each step's status), gpu.csv, cuda_tests.txt (the
# CUDA tests CI skips: feeds on the device, no host sync in the IQL step, compiled losses equal to
# eager), iql_off.{txt,json} and iql_reduce-overhead.{txt,json} (issue 12's gradient steps/s on a
# 200k-transition Atari-shaped dataset on disk, eager and with CUDA graphs): 7 files of the 8 that
# come back. The image's torch (2.11) and numpy (2.x) are not the project's pins (2.13, 1.26.4):
# say so beside any figure. Worst case about 9.5 minutes, so a rerun may not fit the 15 minutes.
# Not run on a device yet: written and its install step checked on this CPU machine only.
set -uo pipefail
OUT=${OUT:-/tmp/device_out}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1 PYTHONPATH="/tmp/site:$PWD"
log() { echo "[$(date +%T)] $*" | tee -a "$OUT/checks.log"; }
imports() {  # the modules, and a real Seaquest environment stepped (object extraction included)
    python3 -c "import tyro, gymnasium, ale_py, ocatari, blendrl.online, blendrl.offline, numpy as np
from blendrl.envs import make_vec_env
env = make_vec_env('seaquest', 2); env.reset(seed=0)
for _ in range(20): env.step(np.zeros(2, np.int64))
env.close()"
}

log "installing $(ls .whl/*.whl | wc -l) wheels into /tmp/site"
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site \
    .whl/*.whl >>"$OUT/checks.log" 2>&1 || { log "wheel install failed"; exit 1; }
if ! imports >>"$OUT/checks.log" 2>&1; then
    # a last resort: the image's compiled packages (cv2, pandas, scipy) were built against numpy 2
    # and may refuse 1.26; the log then says why
    log "the project does not run with the image's numpy (above); trying numpy 1.26.4"
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
        --target /tmp/site .whl/numpy1/*.whl >>"$OUT/checks.log" 2>&1
    imports >>"$OUT/checks.log" 2>&1 || { log "still does not run: see the lines above"; exit 1; }
fi
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv > "$OUT/gpu.csv" 2>&1
log "$(python3 -c 'import torch, numpy; print("torch", torch.__version__, "numpy", numpy.__version__, torch.cuda.get_device_name())')"

log "CUDA tests"
timeout 150 python3 -m pytest -q -p no:cacheprovider tests/test_dataset.py tests/test_agents.py -k cuda \
    > "$OUT/cuda_tests.txt" 2>&1
log "CUDA tests: exit $? ($(tail -n 1 "$OUT/cuda_tests.txt"))"

for mode in off reduce-overhead; do
    log "bench_iql --compile $mode"
    limit=150; [ "$mode" = off ] || limit=210  # cold inductor compiles of two agents
    timeout $limit python3 bench/bench_iql.py --envs seaquest --device cuda --dataset-transitions 200000 \
        --seconds 10 --compile "$mode" --json-out "$OUT/iql_$mode.json" > "$OUT/iql_$mode.txt" 2>&1
    log "bench_iql --compile $mode: exit $?"
done
log "done"
