#!/usr/bin/env bash
# Pull the results of the project on the cluster into this project folder with rsync:
# out/runs/, logs/ and plots/ (datasets in offline_dataset/ only with --datasets).
# Never loses a local file: nothing is deleted, files alike on both sides (same size and mtime)
# are untouched, new remote files are copied, and a remote file replaces a local one only when it
# is NEWER (mtimes compared to the second, as rsync does); the replaced file is kept under
# DEST/.sync-backup/<date-time>/ at the same path. A local file newer than the remote one, or as
# old but of another size, is kept and listed on stderr at the end as a conflict (exit status 0).
# Resumable: an interrupted transfer keeps its partial files (in .rsync-partial/) and the next run
# continues from them. Run it as often as you like.
# Usage: ./sync_logs.sh [--datasets] [--dest DIR] [--dry-run] [REMOTE]
#   REMOTE  user@host:/path/to/project (or a local folder); default: the REMOTE variable
#   --datasets  also pull offline_dataset/ (can be large)
#   --dest DIR  where to put the files (default: this project folder)
#   --dry-run   list what would be copied and the conflicts, change nothing
# Exit status: 0 (conflicts included), 2 for a usage error, else rsync's own status.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"

usage() {
    sed -n '2,16p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//' >&2
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
dest="$(cd "$dest" && pwd)"   # absolute: --backup-dir below must not be relative to DEST
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
echo "sync: $remote -> $dest ($( [ "$datasets" = 1 ] && echo "with" || echo "without") datasets)" >&2

# -a: recursive, keep times/permissions; --partial-dir: resumable; --ignore-missing-args: a folder
# the remote does not have (yet) is no error; temp files of atomic writes are not copied.
common=(-a --relative --partial-dir=.rsync-partial --ignore-missing-args --exclude='.*.tmp')

# 1) A dry run lists the files that differ, each with the remote mtime (UTC, to the second) and size.
rc=0
TZ=UTC rsync "${common[@]}" --dry-run --8-bit-output --no-human-readable \
    --out-format='%i|%M|%l|%n' "${sources[@]}" "$dest/" >"$tmp/plan" || rc=$?
[ "$rc" = 0 ] || [ "$rc" = 24 ] || exit "$rc"   # rsync said why on stderr

# 2) A local file that the remote one is not newer than is a conflict: kept, excluded from the copy.
: >"$tmp/keep"
: >"$tmp/conflicts"
while IFS='|' read -r item rtime rsize name; do
    [[ "$item" == ">f"* ]] || continue             # only a file whose content would be copied
    here="$dest/$name"
    [ -f "$here" ] && [ ! -L "$here" ] || continue   # nothing here yet: copied
    r="${rtime//[^0-9]/}"
    l="$(TZ=UTC date -r "$here" +%Y%m%d%H%M%S)"
    if [ "${#r}" = 14 ] && [ "$r" -gt "$l" ]; then
        continue                                     # the remote one is newer: it replaces this one
    fi
    why="local newer"
    [ "$r" != "$l" ] || why="same mtime, other size"
    [ "${#r}" = 14 ] || why="remote mtime unknown"
    printf '  %s: local %s %s B, remote %s %s B (%s)\n' "$name" \
        "$(TZ=UTC date -r "$here" +%Y/%m/%d-%H:%M:%S)" "$(stat -c %s "$here")" \
        "$rtime" "$rsize" "$why" >>"$tmp/conflicts"
    if [[ "$name" == *[][*?]* ]]; then              # a wildcard in a pattern: escape them all
        name="$(printf '%s' "$name" | sed 's/[][\\*?]/\\&/g')"
    fi
    printf '/%s\n' "$name" >>"$tmp/keep"             # anchored at the root of the transfer
done <"$tmp/plan"

# 3) The copy: --update also skips a local file that became newer since step 1; what is replaced
# goes to the backup folder (created only when something is replaced).
backup="$dest/.sync-backup/$(date +%Y%m%d-%H%M%S)"
[ ! -e "$backup" ] || backup="$backup-$$"
rc=0
rsync "${common[@]}" --update --backup --backup-dir="$backup" --exclude-from="$tmp/keep" \
    --human-readable --itemize-changes "${dry[@]}" "${sources[@]}" "$dest/" || rc=$?
if [ "$rc" = 24 ]; then   # files vanished on the remote while copying (a job rewrote them)
    echo "sync: some files changed on the remote during the transfer; run again to catch up" >&2
    rc=0
fi
if [ -d "$backup" ]; then
    echo "sync: the local files replaced by newer remote ones are kept in $backup/" >&2
fi
if [ -s "$tmp/conflicts" ]; then
    echo "sync: $(wc -l <"$tmp/conflicts") conflict(s): the local file is kept, the remote one is" \
         "not copied (mtimes in UTC):" >&2
    cat "$tmp/conflicts" >&2
fi
exit "$rc"
