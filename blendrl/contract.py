"""The on-disk contract's names and numbers (docs/FORMATS.md): the run format's version, the exit
statuses of the training scripts, the files of a run folder and of a dataset folder, and what an
experiment id may be.

The rest of the contract lives by concept: the methods in :mod:`blendrl.methods`
(``METHOD_TABLE``), atomic writes, JSON and the restricted loader of ``training_log.pkl`` in
:mod:`blendrl.file_io`, the scripts' errors in :mod:`blendrl.exits`. All of them are torch-free, so
the launcher and the plotting code use them directly; ``blendrl.run_dir`` and
``blendrl.checkpoints`` build run folders and checkpoints on top of them.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

RUN_FORMAT_VERSION = 1
EXIT_INTERRUPTED = 75
"""Exit status of a training script stopped by SIGTERM/SIGUSR1 after checkpointing: rerun with --resume."""
EXIT_DATA_FAULT = 65
"""Exit status of an offline job that found its dataset broken (a chunk whose size, CRC or values
are wrong) before training on it: nothing was trained on or recorded from the faulty data."""
EXIT_NO_SPACE = 74
"""Exit status of a training script that could not write (disk full, a folder not writable): what
it had written is intact; free space (or fix the folder), then rerun with --resume."""

# The names of the files of a run folder and of a dataset folder (docs/FORMATS.md), owned here
# and asked for everywhere else.
RUN_JSON = "run.json"
RESULTS_JSON = "results.json"
TIMING_JSON = "timing.json"
TRAINING_LOG = "training_log.pkl"
CHECKPOINTS_DIR = "checkpoints"
LATEST_CHECKPOINT = "latest.pt"
BEST_CHECKPOINT = "best.pt"
DATASET_MANIFEST = "manifest.json"

EXP_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
"""An experiment id: safe in paths and shells (at most :data:`MAX_EXP_ID_LEN` characters)."""
MAX_EXP_ID_LEN = 64


def latest_checkpoint(run_dir: str | os.PathLike) -> Path:
    """``{run_dir}/checkpoints/latest.pt``: what ``--resume`` continues from."""
    return Path(run_dir) / CHECKPOINTS_DIR / LATEST_CHECKPOINT
