#!/usr/bin/env bash
# Fetch, here, the wheels that bench/device_checks.sh installs on a lent GPU machine: everything the
# project imports that the machine's image may lack. The image (Python 3.12 on x86-64, torch 2.11
# with CUDA, numpy 2.x) ships pytest, SciPy, scikit-image, OpenCV-headless, matplotlib and
# TensorBoard (and what they need); not OCAtari and what it imports (gymnasium, ale-py with the
# ROMs, pygame, termcolor, ...), tyro, or the plots' statistics (rliable: arch, statsmodels, pandas,
# seaborn, ...). Each is taken at requirements.txt's pin, dependencies not followed (the list
# below is the closure; `device_checks.sh --rehearse` proves it complete in a venv holding only
# the image's packages). No numpy: the project runs under the image's numpy 2
# (tests/test_numpy2.py).
#
# Usage: scripts/device_wheels.sh [PYVER ...]
#   PYVER: a CPython version, default 3.12 (the image); each goes to .whl/cpXY/ (git-ignored).
#   `device_checks.sh --rehearse` on this machine needs its own Python's: scripts/device_wheels.sh 3.11
# The device tool then carries [".whl/cp312"] (about 45 MB; the carry limit is 64 MiB).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
WHEELS=(tyro docstring_parser typeguard typing_extensions  # typeguard 4.6 needs typing_extensions >= 4.14
        gymnasium Farama-Notifications cloudpickle ale-py pygame pyfiglet termcolor keyboard
        arch statsmodels patsy formulaic interface-meta narwhals wrapt pandas pytz tzdata seaborn)
pin() { grep -hi "^$1==" requirements.txt requirements-nodeps.txt || { echo "no pin for $1 in requirements.txt or requirements-nodeps.txt" >&2; exit 1; }; }
pins=()
for w in "${WHEELS[@]}"; do pins+=("$(pin "$w")"); done
SOURCE_ONLY=(ocatari rliable)  # published as source archives only: their (pure-Python) wheels built once
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
for w in "${SOURCE_ONLY[@]}"; do
    python3 -m pip download -q --no-deps --no-binary :all: -d "$tmp" "$(pin "$w")"
done
python3 -m pip wheel -q --no-deps -w "$tmp/wheel" "$tmp"/*.tar.gz
for ver in "${@:-3.12}"; do
    dir=".whl/cp${ver//./}"
    rm -rf "$dir"
    mkdir -p "$dir"
    python3 -m pip download -q --no-deps --only-binary=:all: --python-version "$ver" --implementation cp \
        --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 \
        --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 -d "$dir" "${pins[@]}"
    cp "$tmp"/wheel/*.whl "$dir"
    echo "$dir: $(ls "$dir" | wc -l) wheels, $(du -sh "$dir" | cut -f1)"
done
