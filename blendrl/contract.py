"""The on-disk contract's torch-free core (docs/FORMATS.md): method ids, exit statuses, atomic
file writes, and the restricted loader of ``training_log.pkl``.

Importing this module is cheap (no torch), so the launcher and the plotting code use it directly;
``blendrl.run_dir`` and ``blendrl.checkpoints`` build run folders and checkpoints on top of it.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import io
import json
import os
import pickle
import re
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO, Iterator

import numpy as np

RUN_FORMAT_VERSION = 1
EXIT_INTERRUPTED = 75
"""Exit status of a training script stopped by SIGTERM/SIGUSR1 after checkpointing: rerun with --resume."""
EXIT_DATA_FAULT = 65
"""Exit status of an offline job that found its dataset broken (a chunk whose size, CRC or values
are wrong) before training on it: nothing was trained on or recorded from the faulty data."""
EXIT_NO_SPACE = 74
"""Exit status of a training script that could not write (disk full, a folder not writable): what
it had written is intact; free space (or fix the folder), then rerun with --resume."""

@dataclass(frozen=True)
class Method:
    """One method of the comparison: everything the launcher, the plots and the loops need to
    know of it. Adding a method is one row of :data:`METHOD_TABLE` and its script."""

    id: str
    """the method id (run.json ``method``, the launcher's ONLINE_METHODS / OFFLINE_METHODS)"""
    kind: str
    """``"online"`` (PPO, writes a dataset) or ``"offline"`` (trains on an online run's dataset)"""
    script: str
    """its training script in the project folder"""
    label: str
    """its name in figures and reports"""
    blendrl: bool
    """its policy blends a neural and a logic actor (BlendRL Args; it records blend weights)"""
    marker: str
    """its marker in figures (matplotlib)"""
    colors: tuple[str, ...]
    """its colours in figures: an online method one; an offline method one per dataset source,
    in the order of the online methods (a test checks the count)"""
    data_linestyle: str = ""
    """an online method: the line style of the offline series trained on its data (its own
    series are solid)"""


METHOD_TABLE: tuple[Method, ...] = (
    Method("ppo", "online", "train_neuralppo.py", "PPO", False, "o", ("tab:blue",), "--"),
    Method("blendrl_ppo", "online", "train_blenderl.py", "BlendRL-PPO", True, "o",
           ("tab:orange",), ":"),
    Method("iql", "offline", "train_iql.py", "IQL", False, "s", ("tab:green", "tab:olive")),
    Method("blendrl_iql", "offline", "train_blendrl_iql.py", "BlendRL-IQL", True, "^",
           ("tab:purple", "tab:red")),
)
"""The methods, in the order figures and tables list them."""

METHOD_INFO: dict[str, Method] = {m.id: m for m in METHOD_TABLE}
METHODS: dict[str, str] = {m.id: m.kind for m in METHOD_TABLE}
"""Method id -> kind."""
ONLINE_METHODS: tuple[str, ...] = tuple(m.id for m in METHOD_TABLE if m.kind == "online")
OFFLINE_METHODS: tuple[str, ...] = tuple(m.id for m in METHOD_TABLE if m.kind == "offline")

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


class FileFormatError(ValueError):
    """A file of the contract that cannot be read as what it should be."""


def now_iso() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


@contextlib.contextmanager
def atomic_writer(path: Path, durable: bool = False) -> Iterator[BinaryIO]:
    """A binary file that replaces ``path`` atomically when the ``with`` block ends without error.

    It is a temp file ``.{name}.*.tmp`` in the same folder, fsynced, then renamed over ``path``;
    on an error it is removed and ``path`` is untouched. ``durable`` also fsyncs the folder, so
    that the rename itself survives a crash (before a later file that refers to this one).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.fchmod(fd, 0o644)  # mkstemp makes 0600; results are meant to be shared
        with os.fdopen(fd, "wb") as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as e:
        if os.path.exists(tmp):
            os.unlink(tmp)
        if isinstance(e, OSError) and e.filename is None:
            e.filename = str(path)  # a failed write names the file it was for
        raise
    if durable:
        dir_fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)


def atomic_write_bytes(path: Path, data: bytes, durable: bool = False) -> None:
    """Write ``data`` to ``path`` via a temp file in the same folder and ``os.replace``
    (see :func:`atomic_writer`)."""
    with atomic_writer(path, durable) as f:
        f.write(data)


def atomic_write_json(path: Path, obj: Any, durable: bool = False) -> None:
    atomic_write_bytes(path, (json.dumps(obj, indent=2, default=_json_default) + "\n").encode(), durable)


def read_json(path: Path) -> Any:
    with open(path) as f:
        return json.load(f)


def _json_default(o: Any) -> Any:
    if isinstance(o, (np.integer,)):
        return int(o)
    if isinstance(o, (np.floating,)):
        return float(o)
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, Path):
        return str(o)
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")


_SAFE_BUILTINS = {"dict", "list", "tuple", "set", "frozenset", "int", "float", "str", "bool",
                  "bytes", "complex"}


class _PlainUnpickler(pickle.Unpickler):
    """Admits only plain containers and scalars: loading never runs code from the file."""

    def find_class(self, module: str, name: str) -> Any:
        if module == "builtins" and name in _SAFE_BUILTINS:
            import builtins
            return getattr(builtins, name)
        raise pickle.UnpicklingError(f"refusing to load {module}.{name}: only plain containers allowed")


def load_training_log(path: Path) -> dict:
    """Read a ``training_log.pkl`` with a restricted unpickler (plain containers only)."""
    with open(path, "rb") as f:
        data = f.read()
    try:
        obj = _PlainUnpickler(io.BytesIO(data)).load()
    except Exception as e:  # noqa: BLE001 - any failure is a bad file
        raise FileFormatError(f"{path}: not a readable training log ({e})") from e
    if not isinstance(obj, dict):
        raise FileFormatError(f"{path}: a training log is a dict, found {type(obj).__name__}")
    return obj
