#!/usr/bin/env bash
# Pull the results of the project on the cluster into this project folder with rsync:
# out/runs/, logs/ and plots/ (datasets in offline_dataset/ only with --datasets).
# Resumable: an interrupted transfer keeps its partial files (in .rsync-partial/) and the next run
# continues from them. Never deletes a local file (no --delete); run it as often as you like.
# Usage: ./sync_logs.sh [--datasets] [--dest DIR] [--dry-run] [REMOTE]
#   REMOTE  user@host:/path/to/project (or a local folder); default: the REMOTE variable
#   --datasets  also pull offline_dataset/ (can be large)
#   --dest DIR  where to put the files (default: this project folder)
#   --dry-run   list what would be copied, copy nothing
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"

usage() {
    sed -n '2,10p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//' >&2
}

remote="${REMOTE:-}"
dest="$root"
datasets=0
dry=()
while [ $# -gt 0 ]; do
    case "$1" in
        --datasets) datasets=1 ;;
        --dest) [ $# -ge 2 ] || { echo "error: --dest needs a folder" >&2; usage; exit 2; }
                dest="$2"; shift ;;
        --dest=*) dest="${1#--dest=}" ;;
        -n|--dry-run) dry=(--dry-run) ;;
        -h|--help) usage; exit 0 ;;
        -*) echo "error: unknown option $1" >&2; usage; exit 2 ;;
        *) remote="$1" ;;
    esac
    shift
done

if [ -z "$remote" ]; then
    echo "error: no REMOTE given (argument or REMOTE=user@host:/path/to/project)" >&2
    usage
    exit 2
fi
if ! command -v rsync >/dev/null 2>&1; then
    echo "error: rsync is not installed (Debian/Ubuntu: apt-get install rsync)" >&2
    exit 2
fi

remote="${remote%/}"
# "/./" marks where the path kept under DEST starts (rsync --relative).
sources=("$remote/./out/runs" "$remote/./logs" "$remote/./plots")
if [ "$datasets" = 1 ]; then
    sources+=("$remote/./offline_dataset")
fi
mkdir -p "$dest"
echo "sync: $remote -> $dest ($( [ "$datasets" = 1 ] && echo "with" || echo "without") datasets)" >&2
set +e
# -a: recursive, keep times/permissions; --partial-dir: resumable; --ignore-missing-args: a folder
# the remote does not have (yet) is no error; temp files of atomic writes are not copied.
rsync -a --relative --partial-dir=.rsync-partial --ignore-missing-args \
    --exclude='.*.tmp' --human-readable --itemize-changes "${dry[@]}" "${sources[@]}" "$dest/"
rc=$?
set -e
if [ "$rc" = 24 ]; then   # files vanished on the remote while copying (a job rewrote them)
    echo "sync: some files changed on the remote during the transfer; run again to catch up" >&2
    rc=0
fi
exit "$rc"
