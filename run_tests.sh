#!/usr/bin/env bash
# The test command (also what CI runs): provisions what the suite needs, sets up .venv if needed,
# then runs the whole suite (extra arguments go to pytest, e.g. ./run_tests.sh -k dataset).
#   The suite runs on TEST_WORKERS pytest-xdist workers (default 3: most slow tests wait on
#   processes they started; -n 0 or TEST_WORKERS=0 runs it in this process). The tests on the real
#   SLURM cluster all go to one worker (tests/conftest.py).
#   System tools the suite needs: rsync (sync_logs.sh). A missing one is installed with apt-get
#   when running as root; otherwise the command stops before any test, naming it and how to
#   install it.
#   SLURM (tests/test_launch_slurm.py) is installed and started by those tests' own fixture
#   through ../shared/slurm/setup.sh when running as root; elsewhere they skip, saying why.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")"

# command:Debian package:what needs it
needs=("rsync:rsync:sync_logs.sh and its tests")
missing=()
why=()
for need in "${needs[@]}"; do
    IFS=: read -r cmd pkg what <<<"$need"
    if ! command -v "$cmd" >/dev/null 2>&1; then
        missing+=("$pkg")
        why+=("$cmd ($what)")
    fi
done
if [ "${#missing[@]}" -gt 0 ]; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
        echo "[setup] installing ${missing[*]} with apt-get: the test suite needs ${why[*]}" >&2
        if ! { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}"; } >&2; then
            echo "error: apt-get could not install ${missing[*]}; install it yourself, then run $0 again" >&2
            exit 1
        fi
    else
        echo "error: the test suite needs ${why[*]}, which is not installed here." >&2
        echo "  Install it as root, e.g. on Debian/Ubuntu: sudo apt-get install ${missing[*]}" >&2
        echo "  (or with your system's package manager), then run $0 again." >&2
        exit 1
    fi
fi
scripts/setup_venv.sh
exec .venv/bin/python -m pytest -q -n "${TEST_WORKERS:-3}" --dist loadgroup "$@"
