"""The contract's files written atomically and read safely (docs/FORMATS.md): atomic writes,
JSON, the timestamps they record, and the restricted loader of ``training_log.pkl``.

Torch-free, so the launcher and the plotting code import it directly.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import io
import json
import os
import pickle
import tempfile
from pathlib import Path
from typing import Any, BinaryIO, Iterator

import numpy as np


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
