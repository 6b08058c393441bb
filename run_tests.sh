#!/usr/bin/env bash
# The test command: sets up .venv if needed, then runs the whole suite (extra args go to pytest).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")"
scripts/setup_venv.sh
exec .venv/bin/python -m pytest -q "$@"
