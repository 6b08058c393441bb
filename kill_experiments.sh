#!/usr/bin/env bash
# Stop every job of an experiment: exactly the jobs recorded in logs/EXP/registry.json.
#   SLURM jobs: scancel by id.  Local jobs: SIGTERM to each process group and to the local runner,
#   SIGKILL after a grace period (they checkpoint on SIGTERM). Never matches processes by name;
#   deletes no data; records the jobs as cancelled.
# Usage: ./kill_experiments.sh EXP [--grace SECONDS] [--logs_dir DIR]
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
if [ $# -lt 1 ] || [ "$1" = "-h" ] || [ "$1" = "--help" ]; then
    echo "usage: $0 EXP [--grace SECONDS] [--logs_dir DIR]" >&2
    echo "  stops the jobs of experiment EXP listed in logs/EXP/registry.json" >&2
    [ $# -lt 1 ] && exit 2 || exit 0
fi
py="$root/.venv/bin/python"
[ -x "$py" ] || py="$(command -v python3)"
export PYTHONPATH="$root${PYTHONPATH:+:$PYTHONPATH}"
exec "$py" -m blendrl.launch.kill "$@"
