#!/usr/bin/env bash
# Create (or refresh) the project's virtual environment in .venv from requirements.txt, then
# requirements-nodeps.txt without dependencies (see that file for why).
# Idempotent and fast when nothing changed: the requirements' hash is remembered in the venv.
# Usage: scripts/setup_venv.sh        (PYTHON=python3.11 to choose the interpreter)
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="$root/.venv"
req="$root/requirements.txt"
nodeps="$root/requirements-nodeps.txt"
stamp="$venv/.requirements.sha256"
want="$(cat "$req" "$nodeps" | sha256sum | cut -d' ' -f1)"
if [ -x "$venv/bin/python" ] && [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
    exit 0
fi
py="${PYTHON:-python3}"
echo "[setup] creating virtual environment in $venv from requirements.txt (about a minute)..." >&2
[ -x "$venv/bin/python" ] || "$py" -m venv "$venv"
"$venv/bin/python" -m pip install -q --upgrade pip >&2
"$venv/bin/python" -m pip install -q -r "$req" >&2
"$venv/bin/python" -m pip install -q --no-deps -r "$nodeps" >&2
echo "$want" > "$stamp"
echo "[setup] done" >&2
