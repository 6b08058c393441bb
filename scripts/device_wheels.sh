#!/usr/bin/env bash
# Fetch, here, the wheels the lent GPU machine lacks for bench/device_checks.sh (its image has
# PyTorch, CUDA, numpy, pandas, matplotlib, scikit-*, seaborn, tensorboard, opencv-headless, but
# not these), for its Python 3.12 on x86-64, into .whl/ (git-ignored; ~40 MB, carried with
# `carry: [".whl"]`). numpy 1.26.4 (the project's pin) goes to .whl/numpy1/, used there only if the
# project does not import under the image's numpy 2.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
mkdir -p .whl/numpy1
plat=(--only-binary=:all: --python-version 3.12 --implementation cp --platform manylinux_2_28_x86_64
      --platform manylinux_2_27_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64
      --platform manylinux1_x86_64)
pin() { grep -i "^$1==" requirements.txt; }
python3 -m pip download -q --no-deps "${plat[@]}" -d .whl \
    "$(pin tyro)" "$(pin docstring_parser)" "$(pin typeguard)" "$(pin gymnasium)" \
    "$(pin Farama-Notifications)" "$(pin ale-py)" "$(pin pyfiglet)" "$(pin pygame)" "$(pin termcolor)" \
    "$(pin keyboard)" "$(pin typing_extensions)"  # typeguard 4.6 needs typing_extensions >= 4.14
python3 -m pip download -q --no-deps "${plat[@]}" -d .whl/numpy1 "$(pin numpy)"
# OCAtari is published as a source archive only: build its (pure-Python) wheel here
tmp="$(mktemp -d)"
python3 -m pip download -q --no-deps --no-binary :all: -d "$tmp" "$(pin ocatari)"
python3 -m pip wheel -q --no-deps -w .whl "$tmp"/ocatari-*.tar.gz
rm -rf "$tmp"
ls .whl .whl/numpy1
du -sh .whl
