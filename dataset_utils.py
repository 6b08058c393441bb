"""Chunked offline datasets: the bridge between the online runs and the offline runs.

An online run hands every environment step of its ``num_envs`` parallel copies to a
:class:`DatasetWriter`; an offline run reads a prefix of it with a :class:`DatasetReader`.

Order
    Transitions are kept step-major, exactly as the online agent experienced them: the
    transition of environment ``i`` at step ``t`` has index ``t * num_envs + i``. So the first
    ``n`` transitions of a dataset are what the online agent had seen after ``n`` transitions.

On disk (``format_version`` 2; version-1 datasets and chunks still read)
    ``manifest.json``
        ``format_version``, ``env``, ``num_envs``, ``n_actions``, ``logic_shape``/``logic_dtype``,
        ``neural_shape``/``neural_dtype``, ``neural_encoding``, ``action_dtype``,
        ``reward_dtype``, ``has_life_lost``, ``chunk_rows``, ``chunks`` (one ``{"file", "start",
        "count", "bytes", "crc32", "n_keys", "n_next", "sidecars"}`` per chunk, in order;
        ``sidecars`` maps ``logic`` and ``neural`` to ``{"file", "bytes", "crc32"}``), ``count``
        (transitions in all listed chunks), ``marks`` (sorted online evaluation marks, each <=
        ``count``), the writer's free ``metadata`` dict, ``created_at``/``updated_at``. Replaced
        atomically. ``has_life_lost``: whether every transition records ``life_lost`` (a life
        was lost in it; Atari) -- a dataset holds it for all transitions or for none.
    ``chunk_{start:012d}_{count:09d}.pkl`` and its sidecars ``chunk_..._{count:09d}.logic.npy``,
    ``chunk_..._{count:09d}.neural.npy``
        Whole environment steps ``[start, start + count)``. The pickle is a plain ``dict`` of
        the small per-transition numpy arrays (protocol 5); the sidecars are ``.npy`` files (format
        1.0, C order) of the chunk's two pools, which can be memory-mapped. Each file is written
        to a temp file, fsynced, then renamed (sidecars first, the manifest last); a chunk's files
        are never modified afterwards (resuming in the middle of a chunk writes a new, shorter
        chunk). A chunk is self-contained: it never refers to a row of another chunk.

    In a chunk, row ``r`` holds the state ``s``, the ``action`` (the smallest unsigned dtype that
    holds ``n_actions``), the ``reward`` (float64, what the writer was given, exactly), the
    ``terminated``/``truncated`` flags and, where recorded, ``life_lost``. The next state ``s'``
    of row ``r`` is the state of row ``r + num_envs`` (the same environment's next step), except
    for the rows listed in ``next_rows`` whose ``s'`` is stored explicitly: the rows where ``s'``
    differs bit-wise from that following state (where an episode ended: the true final state)
    and the rows of the chunk's last step. States are numbered rows first (``0..c-1``), then the
    ``m`` explicit next states (``c..c+m-1``); the ``logic`` pool is float32 ``[c + m, O, F]`` in
    that order.

    ``neural_encoding == "frames"`` (3-D neural states, ``[S, H, W]`` stacks whose newest frame is
    last, e.g. Atari ``[4, 84, 84]`` uint8): a row stores only its newest frame; its ``S - 1``
    older frames are the previous step's stack shifted by one, except at the rows listed in
    ``key_rows`` (every row of the chunk's first step, and every row whose stack is not such a
    shift, e.g. an episode's first state), which also store their older frames. The ``neural``
    pool is the frame pool ``[c + k * (S - 1) + m * S, H, W]``: the rows' newest frames, the key
    rows' older frames, the explicit next states' whole stacks. Stacks are rebuilt exactly on
    read, from an index table into the frame pool. About one frame per transition on disk.
    ``neural_encoding == "array"``: the ``neural`` pool holds whole states ``[c + m, *shape]``.

    Format 1 kept every array, the states included, in the pickle (``logic``, ``next_logic``,
    ``neural`` or ``frame`` + ``key_older``, ``next_neural``) and had no ``sidecars`` and no
    ``has_life_lost``. A writer resuming a format-1 dataset leaves its chunks as they are.

Crash safety
    A process killed at any moment leaves the last manifest and every chunk it lists intact;
    stray temp files and chunk files the manifest does not list are ignored by readers and
    removed by the next writer. ``DatasetWriter(..., resume_at=n)`` continues a dataset at
    ``n`` transitions (the count of the online checkpoint), dropping everything beyond.

Safe loading
    Chunks are read with a restricted unpickler that admits exactly what protocol-5 pickles of
    numpy arrays need (``numpy.dtype`` for plain numeric dtypes only, and numpy's ``_frombuffer``
    with every argument checked) and a few builtin types; anything else (functions, classes,
    object arrays, ndarray subclasses, structured dtypes) is refused before it is called, so
    loading never runs code from a file. Every array is then checked against the manifest.

CLI
    ``python dataset_utils.py inspect DIR`` and ``python dataset_utils.py verify DIR``.
    Exit status: 0 fine; 1 the dataset is broken (the message names the file and the problem);
    2 bad argument (``DIR`` missing or not a dataset).
"""

from __future__ import annotations

import datetime as _dt
import fcntl
import io
import json
import os
import pickle
import re
import sys
import warnings
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, NamedTuple

import numpy as np
import tyro

FORMAT_VERSION = 2
READABLE_VERSIONS = (1, 2)
MANIFEST_NAME = "manifest.json"
LOCK_NAME = ".writer.lock"
_CHUNK_RE = re.compile(r"^chunk_\d{12}_\d{9}\.pkl$")
_DATA_FILE_RE = re.compile(r"^chunk_\d{12}_\d{9}(\.pkl|\.(logic|neural)\.npy)$")
SIDECARS = ("logic", "neural")
"""The pools a version-2 chunk keeps in ``.npy`` sidecar files (see the module docstring)."""
_TMP_RE = re.compile(r"^\..+\.tmp$")


class DatasetError(Exception):
    """A dataset is missing, broken, of an unknown format, or was given bad data."""


# --------------------------------------------------------------------------- layout


@dataclass(frozen=True)
class _Layout:
    """What every row of a dataset looks like (from the writer's arguments or the manifest)."""

    env: str
    num_envs: int
    n_actions: int
    logic_shape: tuple[int, ...]
    neural_shape: tuple[int, ...]
    neural_dtype: np.dtype
    frames: bool

    @property
    def action_dtype(self) -> np.dtype:
        for dt in (np.uint8, np.uint16, np.uint32):
            if self.n_actions - 1 <= np.iinfo(dt).max:
                return np.dtype(dt)
        return np.dtype(np.int64)

    @property
    def stack(self) -> int:
        return self.neural_shape[0]

    @property
    def frame_shape(self) -> tuple[int, ...]:
        return self.neural_shape[1:]

    def manifest_fields(self) -> dict[str, Any]:
        return {
            "env": self.env,
            "num_envs": self.num_envs,
            "n_actions": self.n_actions,
            "logic_shape": list(self.logic_shape),
            "logic_dtype": "float32",
            "neural_shape": list(self.neural_shape),
            "neural_dtype": self.neural_dtype.name,
            "neural_encoding": "frames" if self.frames else "array",
            "action_dtype": self.action_dtype.name,
            "reward_dtype": "float64",
        }

    @staticmethod
    def from_manifest(m: dict[str, Any], where: Path) -> "_Layout":
        try:
            layout = _Layout(
                env=str(m["env"]),
                num_envs=int(m["num_envs"]),
                n_actions=int(m["n_actions"]),
                logic_shape=tuple(int(x) for x in m["logic_shape"]),
                neural_shape=tuple(int(x) for x in m["neural_shape"]),
                neural_dtype=np.dtype(m["neural_dtype"]),
                frames=m["neural_encoding"] == "frames",
            )
        except (KeyError, TypeError, ValueError) as e:
            raise DatasetError(f"{where}: malformed manifest ({e!r})") from e
        if layout.neural_dtype.kind not in "biuf":
            raise DatasetError(f"{where}: neural_dtype {layout.neural_dtype} is not numeric")
        if layout.manifest_fields() != {k: m.get(k) for k in layout.manifest_fields()}:
            raise DatasetError(f"{where}: inconsistent manifest fields")
        return layout


def _make_layout(env: str, num_envs: int, logic_shape: Iterable[int], neural_shape: Iterable[int],
                 neural_dtype: Any, n_actions: int) -> _Layout:
    """Validate the writer's arguments into a layout (DatasetError on nonsense)."""
    if not isinstance(env, str) or not env:
        raise DatasetError(f"env must be a non-empty string, got {env!r}")
    for name, v in (("num_envs", num_envs), ("n_actions", n_actions)):
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1:
            raise DatasetError(f"{name} must be a positive int, got {v!r}")
    shapes = {}
    for name, shape in (("logic_shape", logic_shape), ("neural_shape", neural_shape)):
        try:
            t = tuple(int(x) for x in shape)
        except TypeError as e:
            raise DatasetError(f"{name} must be a tuple of ints, got {shape!r}") from e
        if not t or any(x < 1 for x in t):
            raise DatasetError(f"{name} must be a non-empty tuple of positive ints, got {shape!r}")
        shapes[name] = t
    if len(shapes["logic_shape"]) != 2:
        raise DatasetError(f"logic_shape must be (n_objects, n_features), got {shapes['logic_shape']}")
    try:
        dtype = np.dtype(neural_dtype)
    except TypeError as e:
        raise DatasetError(f"neural_dtype {neural_dtype!r} is not a numpy dtype") from e
    if dtype.hasobject or dtype.kind not in "biuf":
        raise DatasetError(f"neural_dtype must be a numeric dtype, got {dtype}")
    neural = shapes["neural_shape"]
    return _Layout(env=env, num_envs=int(num_envs), n_actions=int(n_actions),
                   logic_shape=shapes["logic_shape"], neural_shape=neural, neural_dtype=dtype,
                   frames=len(neural) == 3 and neural[0] >= 2)


# --------------------------------------------------------------------------- files


def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


def _tmp_path(path: Path) -> Path:
    return path.with_name(f".{path.name}.{os.getpid()}.tmp")


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class _CrcFile:
    """A write-only file wrapper that counts bytes and their CRC-32 on the way through."""

    def __init__(self, f: io.BufferedWriter):
        self._f = f
        self.crc = 0
        self.size = 0

    def write(self, b: Any) -> int:
        mv = memoryview(b)
        if mv.ndim != 1 or mv.format != "B":
            mv = mv.cast("B")  # a C-contiguous array of any shape and dtype, as raw bytes
        self.crc = zlib.crc32(mv, self.crc)
        self.size += mv.nbytes
        return self._f.write(mv)


def _write_pickle_atomic(path: Path, obj: Any) -> tuple[int, int]:
    """Pickle ``obj`` into ``path`` atomically; returns (bytes, crc32) of the file."""
    tmp = _tmp_path(path)
    with open(tmp, "wb") as f:
        cf = _CrcFile(f)
        pickle.dump(obj, cf, protocol=5)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    _fsync_dir(path.parent)
    return cf.size, cf.crc


def _write_npy_atomic(path: Path, parts: list[np.ndarray]) -> tuple[int, int]:
    """Write the concatenation of ``parts`` (same dtype and trailing shape) as one ``.npy`` file,
    atomically and without concatenating in memory; returns (bytes, crc32) of the file."""
    dtype, tail = parts[0].dtype, parts[0].shape[1:]
    assert all(p.dtype == dtype and p.shape[1:] == tail for p in parts)
    header = {"descr": np.lib.format.dtype_to_descr(dtype), "fortran_order": False,
              "shape": (sum(len(p) for p in parts), *tail)}
    tmp = _tmp_path(path)
    with open(tmp, "wb") as f:
        cf = _CrcFile(f)
        np.lib.format.write_array_header_1_0(cf, header)
        for p in parts:
            cf.write(np.ascontiguousarray(p).data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    _fsync_dir(path.parent)
    return cf.size, cf.crc


def _files_of(entries: list[dict[str, Any]]) -> set[str]:
    """Every file the given manifest chunk entries refer to (pickles and sidecar pools)."""
    files = set()
    for e in entries:
        files.add(e["file"])
        files.update(side["file"] for side in e.get("sidecars", {}).values())
    return files


def _write_json_atomic(path: Path, obj: Any) -> None:
    tmp = _tmp_path(path)
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(obj, f, indent=1)
        f.write("\n")
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    _fsync_dir(path.parent)


def _chunk_name(start: int, count: int) -> str:
    return f"chunk_{start:012d}_{count:09d}.pkl"


# --------------------------------------------------------------------------- safe unpickling


def _plain_dtype(dt: np.dtype) -> bool:
    """A plain numeric dtype: bool, int, uint or float, no fields, no sub-array, no objects."""
    return dt.kind in "biuf" and dt.fields is None and dt.subdtype is None and not dt.hasobject


def _safe_dtype(*args: Any) -> np.dtype:
    dt = np.dtype(*args)
    if not _plain_dtype(dt):
        raise pickle.UnpicklingError(f"refusing numpy dtype {dt!r}: only plain numeric dtypes are allowed")
    return dt


def _safe_frombuffer(buf: Any, dtype: Any, shape: Any, order: Any) -> np.ndarray:
    """numpy's protocol-5 array reconstructor, with every argument checked first."""
    if not isinstance(dtype, np.dtype):
        raise pickle.UnpicklingError(f"refusing an array whose dtype is a {type(dtype).__name__}")
    clean = np.dtype(dtype.str)  # drops whatever a crafted __setstate__ may have done to `dtype`
    if not _plain_dtype(clean):
        raise pickle.UnpicklingError(f"refusing numpy dtype {clean!r}")
    if not isinstance(buf, (bytes, bytearray)):
        raise pickle.UnpicklingError(f"refusing an array buffer of type {type(buf).__name__}")
    if not isinstance(shape, tuple) or not all(type(x) is int and x >= 0 for x in shape):
        raise pickle.UnpicklingError(f"refusing array shape {shape!r}")
    if order not in ("C", "F"):
        raise pickle.UnpicklingError(f"refusing array order {order!r}")
    return np.frombuffer(buf, dtype=clean).reshape(shape, order=order)


# Chunks are written with pickle protocol 5, where numpy arrays need exactly these two globals.
_ALLOWED_GLOBALS: dict[tuple[str, str], Any] = {
    ("numpy", "dtype"): _safe_dtype,
    ("numpy.core.numeric", "_frombuffer"): _safe_frombuffer,
    ("numpy._core.numeric", "_frombuffer"): _safe_frombuffer,  # numpy >= 2
    ("builtins", "dict"): dict,
    ("builtins", "list"): list,
    ("builtins", "tuple"): tuple,
    ("builtins", "int"): int,
    ("builtins", "float"): float,
    ("builtins", "str"): str,
    ("builtins", "bool"): bool,
}


class _ArrayUnpickler(pickle.Unpickler):
    """Admits numpy arrays and plain containers only; any other global is refused unloaded."""

    def find_class(self, module: str, name: str) -> Any:
        try:
            return _ALLOWED_GLOBALS[(module, name)]
        except KeyError:
            raise pickle.UnpicklingError(
                f"refusing to load {module}.{name}: only numpy arrays and plain containers are "
                "allowed in a dataset chunk") from None


def safe_load_pickle(data: bytes, where: Path | str) -> Any:
    """Unpickle ``data`` with the restricted unpickler; any failure is a DatasetError naming ``where``."""
    try:
        return _ArrayUnpickler(io.BytesIO(data)).load()
    except Exception as e:  # noqa: BLE001 - whatever went wrong, the file is not a valid chunk
        raise DatasetError(f"{where}: not a readable dataset chunk ({type(e).__name__}: {e})") from e


# --------------------------------------------------------------------------- encoding


def _rows_equal(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Per leading row: are ``a[i]`` and ``b[i]`` bit-identical? (NaN == NaN, -0.0 != 0.0)."""
    n = a.shape[0]
    return (a.reshape(n, -1).view(np.uint8) == b.reshape(n, -1).view(np.uint8)).all(axis=1)


class _ChunkEncoder:
    """Accumulates whole environment steps into one chunk's arrays (see the module docstring)."""

    def __init__(self, layout: _Layout, start: int, capacity: int):
        self.layout = layout
        self.start = start
        self.capacity = capacity
        self.rows = 0
        n_row_neural = layout.frame_shape if layout.frames else layout.neural_shape
        self._logic = np.empty((capacity, *layout.logic_shape), np.float32)
        self._neural = np.empty((capacity, *n_row_neural), layout.neural_dtype)
        self._action = np.empty(capacity, layout.action_dtype)
        self._reward = np.empty(capacity, np.float64)
        self._terminated = np.empty(capacity, bool)
        self._truncated = np.empty(capacity, bool)
        self._life_lost = np.empty(capacity, bool)
        self.has_life_lost: bool | None = None  # decided by the first step
        self._next_rows: list[np.ndarray] = []
        self._next_logic: list[np.ndarray] = []
        self._next_neural: list[np.ndarray] = []
        self._key_rows: list[np.ndarray] = []
        self._key_older: list[np.ndarray] = []
        self._pending: tuple[np.ndarray, np.ndarray] | None = None  # last step's next states
        self._prev_neural: np.ndarray | None = None  # last step's stacks (frames encoding)

    @property
    def full(self) -> bool:
        return self.rows >= self.capacity

    def add_step(self, logic: np.ndarray, neural: np.ndarray, action: np.ndarray,
                 reward: np.ndarray, next_logic: np.ndarray, next_neural: np.ndarray,
                 terminated: np.ndarray, truncated: np.ndarray,
                 life_lost: np.ndarray | None = None) -> None:
        """Append one validated, C-contiguous step of ``num_envs`` rows."""
        n = self.layout.num_envs
        if self.has_life_lost is None:
            self.has_life_lost = life_lost is not None
        assert self.has_life_lost == (life_lost is not None)
        r0 = self.rows
        if self._pending is not None:
            p_logic, p_neural = self._pending
            differs = ~(_rows_equal(p_logic, logic) & _rows_equal(p_neural, neural))
            if differs.any():
                idx = np.flatnonzero(differs)
                self._next_rows.append(r0 - n + idx)
                self._next_logic.append(p_logic[idx])
                self._next_neural.append(p_neural[idx])
        rows = slice(r0, r0 + n)
        self._logic[rows] = logic
        if self.layout.frames:
            self._neural[rows] = neural[:, -1]
            if self._prev_neural is None:
                key = np.ones(n, bool)
            else:
                # bytes view: exact comparison for any dtype
                cur = neural.view(np.uint8).reshape(n, self.layout.stack, -1)
                prev = self._prev_neural.view(np.uint8).reshape(n, self.layout.stack, -1)
                key = ~(cur[:, :-1] == prev[:, 1:]).all(axis=(1, 2))
            if key.any():
                idx = np.flatnonzero(key)
                self._key_rows.append(r0 + idx)
                self._key_older.append(neural[idx, :-1].copy())
            self._prev_neural = neural.copy()
        else:
            self._neural[rows] = neural
        self._action[rows] = action
        self._reward[rows] = reward
        self._terminated[rows] = terminated
        self._truncated[rows] = truncated
        if life_lost is not None:
            self._life_lost[rows] = life_lost
        self._pending = (next_logic.copy(), next_neural.copy())
        self.rows += n

    def finish(self) -> tuple[dict[str, Any], dict[str, list[np.ndarray]]]:
        """The chunk's plain dict of small arrays and the parts of its two pools, in pool order
        (the last step's next states become explicit)."""
        if self.rows == 0:
            raise DatasetError("internal: an empty chunk cannot be written")
        lay = self.layout
        n = lay.num_envs
        assert self._pending is not None
        next_rows = self._next_rows + [np.arange(self.rows - n, self.rows)]
        next_logic = np.concatenate(self._next_logic + [self._pending[0]])
        next_neural = np.concatenate(self._next_neural + [self._pending[1]])
        c = self.rows
        chunk: dict[str, Any] = {
            "format_version": FORMAT_VERSION,
            "start": self.start,
            "count": c,
            "action": self._action[:c],
            "reward": self._reward[:c],
            "terminated": self._terminated[:c],
            "truncated": self._truncated[:c],
            "next_rows": np.concatenate(next_rows).astype(np.int64),
        }
        if self.has_life_lost:
            chunk["life_lost"] = self._life_lost[:c]
        pools = {"logic": [self._logic[:c], next_logic]}
        if lay.frames:
            chunk["key_rows"] = np.concatenate(self._key_rows).astype(np.int64)
            key_older = np.concatenate(self._key_older)
            pools["neural"] = _frame_pool_parts(self._neural[:c], key_older, next_neural, lay)
        else:
            pools["neural"] = [self._neural[:c], next_neural]
        return chunk, pools


def _expected_arrays(lay: _Layout, c: int, m: int, k: int, version: int,
                     life_lost: bool) -> dict[str, tuple[tuple[int, ...], np.dtype]]:
    """Shape and dtype of each array in the pickle of a chunk with ``c`` rows, ``m`` explicit next
    states and ``k`` key rows (version 1 holds the states too; version 2 keeps them in pools)."""
    f32 = np.dtype(np.float32)
    out = {
        "action": ((c,), lay.action_dtype),
        "reward": ((c,), np.dtype(np.float64)),
        "terminated": ((c,), np.dtype(bool)),
        "truncated": ((c,), np.dtype(bool)),
        "next_rows": ((m,), np.dtype(np.int64)),
    }
    if life_lost:
        out["life_lost"] = ((c,), np.dtype(bool))
    if lay.frames:
        out["key_rows"] = ((k,), np.dtype(np.int64))
    if version == 1:
        out["logic"] = ((c, *lay.logic_shape), f32)
        out["next_logic"] = ((m, *lay.logic_shape), f32)
        out["next_neural"] = ((m, *lay.neural_shape), lay.neural_dtype)
        if lay.frames:
            out["frame"] = ((c, *lay.frame_shape), lay.neural_dtype)
            out["key_older"] = ((k, lay.stack - 1, *lay.frame_shape), lay.neural_dtype)
        else:
            out["neural"] = ((c, *lay.neural_shape), lay.neural_dtype)
    return out


def _pool_shapes(lay: _Layout, c: int, m: int, k: int) -> dict[str, tuple[tuple[int, ...], np.dtype]]:
    """Shape and dtype of a version-2 chunk's two pools (its ``.logic.npy`` and ``.neural.npy``)."""
    if lay.frames:
        neural = ((c + k * (lay.stack - 1) + m * lay.stack, *lay.frame_shape), lay.neural_dtype)
    else:
        neural = ((c + m, *lay.neural_shape), lay.neural_dtype)
    return {"logic": ((c + m, *lay.logic_shape), np.dtype(np.float32)), "neural": neural}


def _check_index_set(name: str, idx: np.ndarray, c: int, must: np.ndarray, where: Path) -> None:
    if idx.size and (np.any(np.diff(idx) <= 0) or idx[0] < 0 or idx[-1] >= c):
        raise DatasetError(f"{where}: {name} must be strictly increasing rows in [0, {c})")
    if not np.isin(must, idx).all():
        raise DatasetError(f"{where}: {name} lacks rows {must.tolist()} that must be listed")


def _read_checked(path: Path, entry: dict[str, Any], what: str) -> bytes:
    """A file's bytes, checked against the size and CRC-32 its manifest entry records."""
    try:
        data = path.read_bytes()
    except OSError as e:
        raise DatasetError(f"{path}: cannot read {what} ({e.strerror or e})") from e
    if len(data) != entry["bytes"]:
        raise DatasetError(f"{path}: truncated or altered {what}: {len(data)} bytes on disk, "
                           f"the manifest says {entry['bytes']}")
    if zlib.crc32(data) != entry["crc32"]:
        raise DatasetError(f"{path}: {what} corrupted (CRC-32 differs from the manifest)")
    return data


def _parse_npy(data: bytes | memoryview, path: Path, shape: tuple[int, ...], dtype: np.dtype) -> np.ndarray:
    """The array of a ``.npy`` file's bytes, which must be exactly ``dtype`` ``shape``, C order."""
    buf = io.BytesIO(data[:65536 + 16])
    try:
        version = np.lib.format.read_magic(buf)
        if version != (1, 0):
            raise ValueError(f"npy format version {version}, expected (1, 0)")
        got_shape, fortran, got_dtype = np.lib.format.read_array_header_1_0(buf)
    except Exception as e:  # noqa: BLE001 - whatever is wrong, it is not a pool file
        raise DatasetError(f"{path}: not a readable .npy pool ({type(e).__name__}: {e})") from e
    if fortran or got_dtype != dtype or tuple(got_shape) != shape:
        raise DatasetError(f"{path}: pool should be {dtype} {shape} in C order, found {got_dtype} "
                           f"{tuple(got_shape)}{' (Fortran order)' if fortran else ''}")
    offset = buf.tell()
    nbytes = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    if len(data) != offset + nbytes:
        raise DatasetError(f"{path}: pool holds {len(data) - offset} data bytes, expected {nbytes}")
    return np.frombuffer(data, dtype=dtype, count=nbytes // dtype.itemsize, offset=offset).reshape(shape)


def _read_chunk(directory: Path, entry: dict[str, Any], lay: _Layout,
                life_lost: bool = False) -> dict[str, Any]:
    """Load one chunk listed in the manifest (its pickle and, version 2, its pools) and check it
    completely against ``entry``. Returns the version-1 form: a dict holding every array."""
    path = directory / str(entry["file"])
    chunk = safe_load_pickle(_read_checked(path, entry, "chunk"), path)
    if not isinstance(chunk, dict):
        raise DatasetError(f"{path}: a chunk is a dict, found {type(chunk).__name__}")
    version = chunk.get("format_version")
    if version not in READABLE_VERSIONS:
        raise DatasetError(f"{path}: unknown chunk format_version {version!r} "
                           f"(this reader knows {', '.join(map(str, READABLE_VERSIONS))})")
    if (version == 2) != ("sidecars" in entry):
        raise DatasetError(f"{path}: a format-{version} chunk, but the manifest entry "
                           f"{'lacks' if version == 2 else 'lists'} sidecar pools")
    c, m, k = int(entry["count"]), int(entry["n_next"]), int(entry["n_keys"])
    if chunk.get("start") != entry["start"] or chunk.get("count") != c:
        raise DatasetError(f"{path}: chunk says start={chunk.get('start')} count={chunk.get('count')}, "
                           f"the manifest says start={entry['start']} count={c}")
    for name, (shape, dtype) in _expected_arrays(lay, c, m, k, version, life_lost).items():
        a = chunk.get(name)
        if not isinstance(a, np.ndarray) or a.dtype != dtype or a.shape != shape:
            got = f"{a.dtype} {a.shape}" if isinstance(a, np.ndarray) else type(a).__name__
            raise DatasetError(f"{path}: array {name!r} should be {dtype} {shape}, found {got}")
    if version == 2:
        pools = {}
        for name, (shape, dtype) in _pool_shapes(lay, c, m, k).items():
            side = entry["sidecars"][name]
            side_path = directory / side["file"]
            pools[name] = _parse_npy(_read_checked(side_path, side, "pool"), side_path, shape, dtype)
        chunk["logic"], chunk["next_logic"] = pools["logic"][:c], pools["logic"][c:]
        if lay.frames:
            fs, s = lay.frame_shape, lay.stack
            chunk["frame"] = pools["neural"][:c]
            chunk["key_older"] = pools["neural"][c:c + k * (s - 1)].reshape(k, s - 1, *fs)
            chunk["next_neural"] = pools["neural"][c + k * (s - 1):].reshape(m, s, *fs)
        else:
            chunk["neural"], chunk["next_neural"] = pools["neural"][:c], pools["neural"][c:]
    if not life_lost:
        chunk["life_lost"] = np.zeros(c, bool)
    n = lay.num_envs
    _check_index_set("next_rows", chunk["next_rows"], c, np.arange(c - n, c), path)
    if lay.frames:
        _check_index_set("key_rows", chunk["key_rows"], c, np.arange(n), path)
    if c and int(chunk["action"].max()) >= lay.n_actions:
        raise DatasetError(f"{path}: an action is >= n_actions={lay.n_actions}")
    return chunk


class _ChunkIndex(NamedTuple):
    """Where each state of one chunk lives, in chunk-local numbering.

    States are numbered rows first (``0..c-1``), then the explicit next states (``c..c+m-1``).
    ``next_of[r]`` is the state number of row ``r``'s next state. For the frames encoding,
    ``frame_src[s, j]`` is the index of frame ``j`` of state ``s``'s stack in the chunk's frame
    pool ``[frame (c) | key_older (k * (S-1)) | next_neural (m * S)]``.
    """

    next_of: np.ndarray
    frame_src: np.ndarray | None


def _index_chunk(chunk: dict[str, Any], lay: _Layout) -> _ChunkIndex:
    c = int(chunk["count"])
    n = lay.num_envs
    next_rows = chunk["next_rows"]
    m = next_rows.size
    next_of = np.arange(n, c + n, dtype=np.int64)
    next_of[next_rows] = c + np.arange(m, dtype=np.int64)
    if not lay.frames:
        return _ChunkIndex(next_of, None)
    s = lay.stack
    t_steps = c // n
    key_rows = chunk["key_rows"]
    k = key_rows.size
    key_pos = np.full(c, -1, np.int64)
    key_pos[key_rows] = np.arange(k)
    steps = np.arange(t_steps, dtype=np.int64)[:, None]
    is_key = (key_pos >= 0).reshape(t_steps, n)
    last_key = np.maximum.accumulate(np.where(is_key, steps, -1), axis=0)  # >= 0: step 0 is all keys
    since = steps - last_key  # steps since the last key row of the same env (0 at a key row)
    rows = np.arange(c, dtype=np.int64).reshape(t_steps, n)
    key_row = rows - since * n
    src = np.empty((c + m, s), np.int64)
    src_rows = src[:c].reshape(t_steps, n, s)
    for j in range(s):
        back = s - 1 - j  # frame j of a stack is the newest frame of the state `back` steps earlier
        from_frame = back <= since
        older = c + key_pos[key_row] * (s - 1) + np.minimum(j + since, s - 2)
        src_rows[..., j] = np.where(from_frame, rows - back * n, older)
    src[c:] = c + k * (s - 1) + np.arange(m * s, dtype=np.int64).reshape(m, s)
    return _ChunkIndex(next_of, src)


def _frame_pool_parts(frame: np.ndarray, key_older: np.ndarray, next_neural: np.ndarray,
                      lay: _Layout) -> list[np.ndarray]:
    """A chunk's frame pool, in order: ``[frame (c) | key_older (k * (S-1)) | next_neural (m * S)]``."""
    fs = lay.frame_shape
    return [frame, key_older.reshape(-1, *fs), next_neural.reshape(-1, *fs)]


def _chunk_steps(chunk: dict[str, Any], lay: _Layout, upto: int) -> Iterable[tuple[np.ndarray, ...]]:
    """Decode rows ``[0, upto)`` of a chunk step by step (the arguments of ``add``), exactly."""
    idx = _index_chunk(chunk, lay)
    c = int(chunk["count"])
    logic_all = np.concatenate([chunk["logic"], chunk["next_logic"]])
    if lay.frames:
        pool = np.concatenate(_frame_pool_parts(chunk["frame"], chunk["key_older"], chunk["next_neural"], lay))

        def neural_of(states: np.ndarray) -> np.ndarray:
            return pool[idx.frame_src[states]]
    else:
        neural_all = np.concatenate([chunk["neural"], chunk["next_neural"]])

        def neural_of(states: np.ndarray) -> np.ndarray:
            return neural_all[states]
    n = lay.num_envs
    for r0 in range(0, min(upto, c), n):
        rows = np.arange(r0, r0 + n)
        nxt = idx.next_of[rows]
        yield (logic_all[rows], neural_of(rows), chunk["action"][rows], chunk["reward"][rows],
               logic_all[nxt], neural_of(nxt), chunk["terminated"][rows], chunk["truncated"][rows],
               chunk["life_lost"][rows])


# --------------------------------------------------------------------------- manifest


def _check_version(version: Any, where: Path) -> None:
    if isinstance(version, int) and not isinstance(version, bool) and version > FORMAT_VERSION:
        raise DatasetError(f"{where}: format version {version} is newer than this reader (knows "
                           f"{FORMAT_VERSION}); update the code to read it")
    if version not in READABLE_VERSIONS:
        raise DatasetError(f"{where}: unknown format_version {version!r} (this reader knows "
                           f"{', '.join(map(str, READABLE_VERSIONS))})")


def _sidecar_name(chunk_file: str, pool: str) -> str:
    return f"{chunk_file[:-len('.pkl')]}.{pool}.npy"


def _check_sidecars(e: dict[str, Any], path: Path) -> None:
    side = e["sidecars"]
    if not isinstance(side, dict) or sorted(side) != sorted(SIDECARS):
        raise DatasetError(f"{path}: chunk {e['file']}: sidecars must be {list(SIDECARS)}")
    for pool in SIDECARS:
        f = side[pool]
        if f.get("file") != _sidecar_name(e["file"], pool):
            raise DatasetError(f"{path}: chunk {e['file']}: bad {pool} sidecar name {f.get('file')!r}")
        for key in ("bytes", "crc32"):
            if not isinstance(f.get(key), int) or f[key] < 0:
                raise DatasetError(f"{path}: sidecar {f['file']}: bad {key} {f.get(key)!r}")


def has_life_lost(manifest: dict[str, Any]) -> bool:
    """Whether a dataset records ``life_lost`` (never in format 1)."""
    return bool(manifest.get("has_life_lost", False)) if manifest["format_version"] >= 2 else False


def _read_manifest(directory: Path) -> dict[str, Any]:
    """Read and check ``manifest.json`` (version, chunk list contiguity, marks)."""
    path = directory / MANIFEST_NAME
    if not path.is_file():
        raise DatasetError(f"{directory}: not a dataset (no {MANIFEST_NAME})")
    try:
        m = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise DatasetError(f"{path}: unreadable manifest ({e})") from e
    if not isinstance(m, dict):
        raise DatasetError(f"{path}: a manifest is a JSON object")
    _check_version(m.get("format_version"), path)
    lay = _Layout.from_manifest(m, path)
    if m["format_version"] >= 2 and not isinstance(m.get("has_life_lost"), bool):
        raise DatasetError(f"{path}: has_life_lost must be true or false, got {m.get('has_life_lost')!r}")
    try:
        chunks = m["chunks"]
        pos = 0
        for e in chunks:
            if not _CHUNK_RE.match(str(e["file"])):
                raise DatasetError(f"{path}: bad chunk file name {e['file']!r}")
            for key in ("start", "count", "bytes", "crc32", "n_keys", "n_next"):
                if not isinstance(e[key], int) or e[key] < 0:
                    raise DatasetError(f"{path}: chunk {e['file']}: bad {key} {e[key]!r}")
            if "sidecars" in e:
                if m["format_version"] < 2:
                    raise DatasetError(f"{path}: chunk {e['file']}: sidecar pools in a format-1 manifest")
                _check_sidecars(e, path)
            if e["start"] != pos or e["count"] == 0 or e["count"] % lay.num_envs:
                raise DatasetError(f"{path}: chunk {e['file']} covers [{e['start']}, "
                                   f"{e['start'] + e['count']}), expected a whole number of steps from {pos}")
            pos += e["count"]
        if m["count"] != pos:
            raise DatasetError(f"{path}: count {m['count']} but the chunks hold {pos} transitions")
        marks = m["marks"]
        if any(not isinstance(x, int) for x in marks) or marks != sorted(set(marks)) or \
                (marks and (marks[0] < 0 or marks[-1] > pos)):
            raise DatasetError(f"{path}: marks must be sorted distinct counts in [0, {pos}]")
        if not isinstance(m.get("metadata", {}), dict):
            raise DatasetError(f"{path}: metadata must be an object")
    except (KeyError, TypeError) as e:
        raise DatasetError(f"{path}: malformed manifest ({e!r})") from e
    return m


# --------------------------------------------------------------------------- writer


class DatasetWriter:
    """Appends the transitions of an online run, one environment step of all copies at a time.

    ``chunk_size`` transitions (rounded up to whole steps) make a chunk. A new (missing or empty)
    ``directory`` starts a dataset; an existing dataset is only continued with ``resume_at``
    (the transition count to continue at, e.g. the checkpoint's); anything beyond it is dropped.
    Only one writer may hold a dataset at a time (an advisory lock, released if the process dies).
    ``metadata`` (JSON-serialisable) is stored in the manifest; when resuming it updates the
    stored one key by key.
    """

    def __init__(self, directory: str | os.PathLike, *, env: str, num_envs: int,
                 logic_shape: tuple, neural_shape: tuple, neural_dtype: Any, n_actions: int,
                 chunk_size: int = 50_000, metadata: dict | None = None,
                 resume_at: int | None = None):
        self._layout = _make_layout(env, num_envs, logic_shape, neural_shape, neural_dtype, n_actions)
        if isinstance(chunk_size, bool) or not isinstance(chunk_size, (int, np.integer)) or chunk_size < 1:
            raise DatasetError(f"chunk_size must be a positive int, got {chunk_size!r}")
        if metadata is not None:
            if not isinstance(metadata, dict):
                raise DatasetError(f"metadata must be a dict, got {type(metadata).__name__}")
            try:
                json.dumps(metadata)
            except (TypeError, ValueError) as e:
                raise DatasetError(f"metadata must be JSON-serialisable: {e}") from e
        if resume_at is not None and (isinstance(resume_at, bool)
                                      or not isinstance(resume_at, (int, np.integer))):
            raise DatasetError(f"resume_at must be an int or None, got {resume_at!r}")
        n = self._layout.num_envs
        self._rows_per_chunk = -(-int(chunk_size) // n) * n
        self.directory = Path(directory)
        self._closed = True  # until fully opened
        self._marks_dirty = False
        self._lock_fd: int | None = None
        self.directory.mkdir(parents=True, exist_ok=True)
        self._lock()
        try:
            if (self.directory / MANIFEST_NAME).exists():
                self._open_existing(resume_at, metadata)
            else:
                self._open_new(resume_at, metadata)
        except BaseException:
            self._unlock()
            raise
        self._encoder: _ChunkEncoder | None = None
        self._closed = False

    # ---- opening

    def _lock(self) -> None:
        fd = os.open(self.directory / LOCK_NAME, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise DatasetError(f"{self.directory}: another writer holds this dataset") from None
        except OSError as e:  # a file system without flock (some network mounts): go on unlocked
            warnings.warn(f"{self.directory}: cannot lock the dataset ({e}); make sure only one "
                          "writer uses it", stacklevel=3)
        self._lock_fd = fd

    def _unlock(self) -> None:
        if self._lock_fd is not None:
            os.close(self._lock_fd)  # closing releases the flock
            self._lock_fd = None

    def _open_new(self, resume_at: int | None, metadata: dict | None) -> None:
        if resume_at is not None:
            raise DatasetError(f"{self.directory}: resume_at={resume_at} given but there is no dataset "
                               f"(no {MANIFEST_NAME})")
        foreign = [p.name for p in self.directory.iterdir()
                   if p.name != LOCK_NAME and not _TMP_RE.match(p.name)]
        if foreign:
            raise DatasetError(f"{self.directory}: not empty and not a dataset (holds {sorted(foreign)[:5]})")
        self._remove_strays(referenced=set())
        now = _now()
        self._manifest: dict[str, Any] = {
            "format_version": FORMAT_VERSION,
            **self._layout.manifest_fields(),
            "has_life_lost": False,
            "chunk_rows": self._rows_per_chunk,
            "chunks": [],
            "count": 0,
            "marks": [],
            "metadata": dict(metadata or {}),
            "created_at": now,
            "updated_at": now,
        }
        self._marks: list[int] = []
        self._life_lost: bool | None = None  # decided by the first add of an empty dataset
        _write_json_atomic(self.directory / MANIFEST_NAME, self._manifest)

    def _open_existing(self, resume_at: int | None, metadata: dict | None) -> None:
        m = _read_manifest(self.directory)
        if resume_at is None:
            raise DatasetError(
                f"{self.directory}: already holds a dataset of {m['count']} transitions; pass "
                "resume_at=N to continue it, or DatasetWriter.remove(directory) to start over")
        on_disk = m["count"]
        if resume_at < 0 or resume_at > on_disk or resume_at % self._layout.num_envs:
            raise DatasetError(f"{self.directory}: cannot resume at {resume_at}: it must be a multiple "
                               f"of num_envs={self._layout.num_envs} in [0, {on_disk}]")
        mine = self._layout.manifest_fields()
        diffs = [f"{k}: dataset has {m[k]!r}, writer got {v!r}" for k, v in mine.items() if m[k] != v]
        if diffs:
            raise DatasetError(f"{self.directory}: the dataset does not match this writer: "
                               + "; ".join(diffs))
        self._manifest = m
        self._life_lost = has_life_lost(m) if resume_at > 0 else None
        m["format_version"] = FORMAT_VERSION  # chunks of format 1 stay readable as they are
        m["has_life_lost"] = bool(self._life_lost)
        m["chunk_rows"] = self._rows_per_chunk
        self._marks = [x for x in m["marks"] if x <= resume_at]
        if metadata:
            m["metadata"].update(metadata)
        self._truncate(resume_at)

    def _truncate(self, at: int) -> None:
        """Make the dataset on disk hold exactly the first ``at`` transitions."""
        m = self._manifest
        lay = self._layout
        keep = [e for e in m["chunks"] if e["start"] + e["count"] <= at]
        cut = [e for e in m["chunks"] if e["start"] < at < e["start"] + e["count"]]
        if cut:
            old = cut[0]
            chunk = _read_chunk(self.directory, old, lay, bool(self._life_lost))
            enc = _ChunkEncoder(lay, old["start"], at - old["start"])
            for step in _chunk_steps(chunk, lay, at - old["start"]):
                *arrays, life_lost = (np.ascontiguousarray(a) for a in step)
                enc.add_step(*arrays, life_lost if self._life_lost else None)
            keep.append(self._write_chunk_file(enc))
        m["chunks"] = keep
        m["count"] = at
        m["marks"] = list(self._marks)
        self._write_manifest()
        self._remove_strays(referenced=_files_of(keep))

    def _remove_strays(self, referenced: set[str]) -> None:
        """Delete temp files and chunk files that the manifest does not list (never anything else)."""
        for p in self.directory.iterdir():
            if _TMP_RE.match(p.name) or (_DATA_FILE_RE.match(p.name) and p.name not in referenced):
                p.unlink(missing_ok=True)

    @staticmethod
    def remove(directory: str | os.PathLike) -> None:
        """Delete a dataset (its manifest, chunks, temp and lock files; the folder if then empty).

        Refuses a folder that holds other files but no manifest, and a dataset a writer holds.
        """
        d = Path(directory)
        if not d.exists():
            return
        ours = [p for p in d.iterdir() if p.name in (MANIFEST_NAME, LOCK_NAME)
                or _DATA_FILE_RE.match(p.name) or _TMP_RE.match(p.name)]
        others = [p.name for p in d.iterdir() if p not in ours]
        if not (d / MANIFEST_NAME).exists() and others:
            raise DatasetError(f"{d}: not a dataset; refusing to delete anything in it")
        fd = os.open(d / LOCK_NAME, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                raise DatasetError(f"{d}: a writer holds this dataset; not removing it") from None
            except OSError:
                pass  # no flock on this file system: nothing to check
            (d / MANIFEST_NAME).unlink(missing_ok=True)  # first: the rest is then unreferenced
            for p in ours:
                p.unlink(missing_ok=True)
        finally:
            os.close(fd)
        (d / LOCK_NAME).unlink(missing_ok=True)
        if not others:
            d.rmdir()

    # ---- writing

    @property
    def count(self) -> int:
        """Transitions added so far, including those of a resumed dataset and those buffered."""
        return self._manifest["count"] + (self._encoder.rows if self._encoder else 0)

    @property
    def marks(self) -> list[int]:
        return list(self._marks)

    def _check(self, name: str, a: Any, shape: tuple[int, ...], dtype: np.dtype) -> np.ndarray:
        a = np.asarray(a)
        if a.dtype != dtype:
            raise DatasetError(f"add: {name} must be {dtype}, got {a.dtype} (no casting is done)")
        if a.shape != shape:
            raise DatasetError(f"add: {name} must have shape {shape}, got {a.shape}")
        return np.ascontiguousarray(a)

    def add(self, logic: Any, neural: Any, action: Any, reward: Any, next_logic: Any,
            next_neural: Any, terminated: Any, truncated: Any, life_lost: Any = None) -> None:
        """Append one environment step of all ``num_envs`` copies (leading dimension ``num_envs``).

        ``logic``/``next_logic``: float32 ``[N, *logic_shape]``; ``neural``/``next_neural``:
        ``[N, *neural_shape]`` of ``neural_dtype``; ``action``: any integer dtype ``[N]`` with
        values in ``[0, n_actions)``; ``reward``: float32 or float64 ``[N]`` (kept as float64);
        ``terminated``/``truncated``: bool ``[N]``. ``next_*`` are the true successor states.
        ``life_lost``: bool ``[N]`` (a life was lost in the transition; Atari), or None when the
        writer does not record it. A dataset records it for every transition or for none: the
        first step of a dataset decides, and every later step (resumed writers too) must agree.
        """
        if self._closed:
            raise DatasetError(f"{self.directory}: add() on a closed writer")
        lay = self._layout
        n = lay.num_envs
        f32 = np.dtype(np.float32)
        logic = self._check("logic", logic, (n, *lay.logic_shape), f32)
        next_logic = self._check("next_logic", next_logic, (n, *lay.logic_shape), f32)
        neural = self._check("neural", neural, (n, *lay.neural_shape), lay.neural_dtype)
        next_neural = self._check("next_neural", next_neural, (n, *lay.neural_shape), lay.neural_dtype)
        terminated = self._check("terminated", terminated, (n,), np.dtype(bool))
        truncated = self._check("truncated", truncated, (n,), np.dtype(bool))
        action = np.asarray(action)
        if action.dtype.kind not in "iu" or action.shape != (n,):
            raise DatasetError(f"add: action must be an integer array of shape ({n},), "
                               f"got {action.dtype} {action.shape}")
        if action.min() < 0 or action.max() >= lay.n_actions:
            raise DatasetError(f"add: actions must lie in [0, {lay.n_actions}), got {action.tolist()}")
        reward = np.asarray(reward)
        if reward.dtype not in (np.float32, np.float64) or reward.shape != (n,):
            raise DatasetError(f"add: reward must be a float32/float64 array of shape ({n},), "
                               f"got {reward.dtype} {reward.shape}")
        if life_lost is not None:
            life_lost = self._check("life_lost", life_lost, (n,), np.dtype(bool))
        given = life_lost is not None
        if self._life_lost is None:
            self._life_lost = given
        elif self._life_lost != given:
            raise DatasetError(
                f"add: {self.directory} records life_lost for every step, none given here" if self._life_lost
                else f"add: life_lost given, but {self.directory} records no life_lost (its earlier "
                     "steps were added without it)")
        if self._encoder is None:
            self._encoder = _ChunkEncoder(lay, self._manifest["count"], self._rows_per_chunk)
        self._encoder.add_step(logic, neural, action, reward, next_logic, next_neural,
                               terminated, truncated, life_lost)
        if self._encoder.full:
            self._write_chunk()

    def mark(self, n_transitions: int) -> None:
        """Record an online evaluation mark (a transition count ``<= count``), kept sorted.

        Marks reach the manifest with the next chunk, ``flush()`` or ``close()``.
        """
        if self._closed:
            raise DatasetError(f"{self.directory}: mark() on a closed writer")
        if isinstance(n_transitions, bool) or not isinstance(n_transitions, (int, np.integer)):
            raise DatasetError(f"mark: n_transitions must be an int, got {n_transitions!r}")
        x = int(n_transitions)
        if x < 0 or x > self.count:
            raise DatasetError(f"mark: {x} is outside [0, count={self.count}]")
        if x not in self._marks:
            self._marks.append(x)
            self._marks.sort()
            self._marks_dirty = True

    def flush(self) -> None:
        """Write everything buffered (a possibly short chunk) and the marks: all of ``count`` on disk."""
        if self._closed:
            return
        if self._encoder is not None and self._encoder.rows:
            self._write_chunk()
        elif self._marks_dirty:
            self._write_manifest()

    def close(self) -> None:
        """Flush, write the final manifest and release the dataset. Idempotent."""
        if self._closed:
            return
        try:
            self.flush()
        finally:
            self._closed = True
            self._unlock()

    def __enter__(self) -> "DatasetWriter":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def _write_chunk_file(self, enc: _ChunkEncoder) -> dict[str, Any]:
        """The pools (``.npy``), then the pickle; returns the chunk's manifest entry."""
        chunk, pools = enc.finish()
        name = _chunk_name(enc.start, enc.rows)
        sidecars = {}
        for pool in SIDECARS:
            side = _sidecar_name(name, pool)
            size, crc = _write_npy_atomic(self.directory / side, pools[pool])
            sidecars[pool] = {"file": side, "bytes": size, "crc32": crc}
        size, crc = _write_pickle_atomic(self.directory / name, chunk)
        return {"file": name, "start": enc.start, "count": enc.rows, "bytes": size, "crc32": crc,
                "n_keys": int(chunk["key_rows"].size) if self._layout.frames else 0,
                "n_next": int(chunk["next_rows"].size), "sidecars": sidecars}

    def _write_chunk(self) -> None:
        assert self._encoder is not None
        entry = self._write_chunk_file(self._encoder)
        self._manifest["chunks"].append(entry)
        self._manifest["count"] += entry["count"]
        self._manifest["has_life_lost"] = bool(self._life_lost)
        self._encoder = None
        self._write_manifest()

    def _write_manifest(self) -> None:
        m = self._manifest
        m["marks"] = [x for x in self._marks if x <= m["count"]]
        m["updated_at"] = _now()
        _write_json_atomic(self.directory / MANIFEST_NAME, m)
        self._marks_dirty = len(m["marks"]) != len(self._marks)


# --------------------------------------------------------------------------- reader


class Batch(NamedTuple):
    """A minibatch of transitions (numpy arrays; leading dimension = batch size).

    ``logic_state``/``next_logic_state`` float32 ``[B, O, F]``; ``neural_state``/
    ``next_neural_state`` ``[B, *neural_shape]`` of the dataset's dtype (uint8 frames stay uint8);
    ``action`` int64 ``[B]``; ``reward`` float64 ``[B]``; ``terminated``/``truncated``/``life_lost``
    bool ``[B]``. ``life_lost`` (a life was lost in the transition) is all False where the dataset
    does not record it; a Batch built by hand may leave it None (``to_torch`` then gives zeros).
    """

    logic_state: Any
    neural_state: Any
    action: Any
    reward: Any
    next_logic_state: Any
    next_neural_state: Any
    terminated: Any
    truncated: Any
    life_lost: Any = None

    def to_torch(self, device: Any = "cpu") -> "Batch":
        """The same batch as torch tensors on ``device``.

        States keep their dtype (float32; uint8 frames stay uint8, the network scales them);
        ``action`` int64; ``reward``, ``terminated``, ``truncated`` and ``life_lost`` float32
        (ready for ``r + gamma * (1 - terminated) * v``).
        """
        import torch

        def t(a: np.ndarray, dtype: Any = None) -> Any:
            x = torch.from_numpy(np.ascontiguousarray(a))
            return x.to(device=device, dtype=dtype) if dtype is not None else x.to(device)

        life_lost = self.life_lost if self.life_lost is not None else np.zeros(len(self.terminated), bool)
        return Batch(t(self.logic_state), t(self.neural_state), t(self.action, torch.int64),
                     t(self.reward, torch.float32), t(self.next_logic_state), t(self.next_neural_state),
                     t(self.terminated, torch.float32), t(self.truncated, torch.float32),
                     t(life_lost, torch.float32))


class DatasetReader:
    """The first ``limit`` transitions of a dataset (all of them when ``limit`` is None).

    The chunks that hold them are loaded once into contiguous arrays (states first, then the
    explicit next states; frames of the ``frames`` encoding go to one pool with an index table),
    so :meth:`sample` and :meth:`get` are fancy indexing.
    """

    def __init__(self, directory: str | os.PathLike, limit: int | None = None):
        self.directory = Path(directory)
        self.manifest = _read_manifest(self.directory)
        lay = _Layout.from_manifest(self.manifest, self.directory / MANIFEST_NAME)
        self._layout = lay
        total = self.manifest["count"]
        if limit is None:
            limit = total
        elif isinstance(limit, bool) or not isinstance(limit, (int, np.integer)) or not 1 <= limit <= total:
            raise DatasetError(f"{self.directory}: limit {limit!r} must be an int in [1, {total}] "
                               f"(the dataset holds {total} transitions)")
        self._limit = int(limit)
        self._rng = np.random.default_rng()
        self._load([e for e in self.manifest["chunks"] if e["start"] < self._limit])

    def _load(self, entries: list[dict[str, Any]]) -> None:
        lay = self._layout
        rows = sum(e["count"] for e in entries)
        nexts = sum(e["n_next"] for e in entries)
        self._logic = np.empty((rows + nexts, *lay.logic_shape), np.float32)
        self._next_of = np.empty(rows, np.int64)
        self._action = np.empty(rows, lay.action_dtype)  # int64 in a Batch
        self._reward = np.empty(rows, np.float64)
        self._terminated = np.empty(rows, bool)
        self._truncated = np.empty(rows, bool)
        self._life_lost = np.empty(rows, bool)
        if lay.frames:
            s = lay.stack
            pool = sum(e["count"] + e["n_keys"] * (s - 1) + e["n_next"] * s for e in entries)
            self._frames = np.empty((pool, *lay.frame_shape), lay.neural_dtype)
            self._frame_src = np.empty((rows + nexts, s), np.int64)
        else:
            self._neural = np.empty((rows + nexts, *lay.neural_shape), lay.neural_dtype)
        m_off = rows  # where the next chunk's explicit next states go
        f_off = 0
        for e in entries:
            chunk = _read_chunk(self.directory, e, lay, self.has_life_lost)
            idx = _index_chunk(chunk, lay)
            r0, c, m = e["start"], e["count"], e["n_next"]
            here = slice(r0, r0 + c)
            there = slice(m_off, m_off + m)
            self._logic[here] = chunk["logic"]
            self._logic[there] = chunk["next_logic"]
            self._next_of[here] = np.where(idx.next_of < c, idx.next_of + r0, idx.next_of - c + m_off)
            self._action[here] = chunk["action"]
            self._reward[here] = chunk["reward"]
            self._terminated[here] = chunk["terminated"]
            self._truncated[here] = chunk["truncated"]
            self._life_lost[here] = chunk["life_lost"]
            if lay.frames:
                parts = _frame_pool_parts(chunk["frame"], chunk["key_older"], chunk["next_neural"], lay)
                for p in parts:
                    self._frames[f_off:f_off + len(p)] = p
                    f_off += len(p)
                base = f_off - sum(len(p) for p in parts)
                self._frame_src[here] = idx.frame_src[:c] + base
                self._frame_src[there] = idx.frame_src[c:] + base
            else:
                self._neural[here] = chunk["neural"]
                self._neural[there] = chunk["next_neural"]
            m_off += m
            del chunk, idx

    def __len__(self) -> int:
        return self._limit

    @property
    def marks(self) -> list[int]:
        """The online evaluation marks recorded in the manifest (transition counts, sorted)."""
        return list(self.manifest["marks"])

    @property
    def env(self) -> str:
        return self.manifest["env"]

    @property
    def has_life_lost(self) -> bool:
        """Whether the dataset records ``life_lost`` (otherwise batches hold all False)."""
        return has_life_lost(self.manifest)

    @property
    def num_envs(self) -> int:
        return self._layout.num_envs

    @property
    def n_actions(self) -> int:
        return self._layout.n_actions

    @property
    def logic_shape(self) -> tuple[int, ...]:
        return self._layout.logic_shape

    @property
    def neural_shape(self) -> tuple[int, ...]:
        return self._layout.neural_shape

    @property
    def neural_dtype(self) -> np.dtype:
        return self._layout.neural_dtype

    @property
    def metadata(self) -> dict[str, Any]:
        return dict(self.manifest.get("metadata", {}))

    def _neural_of(self, states: np.ndarray) -> np.ndarray:
        if self._layout.frames:
            return np.take(self._frames, np.take(self._frame_src, states, axis=0), axis=0)
        return np.take(self._neural, states, axis=0)

    def _batch(self, idx: np.ndarray) -> Batch:
        nxt = np.take(self._next_of, idx)
        return Batch(np.take(self._logic, idx, axis=0), self._neural_of(idx),
                     np.take(self._action, idx).astype(np.int64), np.take(self._reward, idx),
                     np.take(self._logic, nxt, axis=0), self._neural_of(nxt),
                     np.take(self._terminated, idx), np.take(self._truncated, idx),
                     np.take(self._life_lost, idx))

    def sample(self, batch_size: int, rng: np.random.Generator | None = None) -> Batch:
        """``batch_size`` transitions drawn uniformly (with replacement) from positions ``[0, len)``.

        Without ``rng``, the reader's own unseeded generator is used.
        """
        if self._limit == 0:
            raise DatasetError(f"{self.directory}: cannot sample from an empty dataset")
        if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
            raise DatasetError(f"sample: batch_size must be a positive int, got {batch_size!r}")
        return self._batch((rng or self._rng).integers(0, self._limit, size=int(batch_size)))

    def get(self, indices: Any) -> Batch:
        """The transitions at the given positions (each in ``[0, len)``), in the given order."""
        idx = np.asarray(indices)
        if idx.ndim != 1 or (idx.size and idx.dtype.kind not in "iu"):
            raise DatasetError(f"get: indices must be a 1-D integer sequence, got {idx.dtype} {idx.shape}")
        idx = idx.astype(np.int64, copy=False)
        if idx.size and (idx.min() < 0 or idx.max() >= self._limit):
            raise DatasetError(f"get: positions must lie in [0, {self._limit}), got "
                               f"min {idx.min()} max {idx.max()}")
        return self._batch(idx)


# --------------------------------------------------------------------------- inspect / verify


def summarize(directory: str | os.PathLike) -> dict[str, Any]:
    """What ``inspect`` prints: the manifest's description plus bytes per transition."""
    d = Path(directory)
    m = _read_manifest(d)
    chunk_bytes = sum(e["bytes"] + sum(side["bytes"] for side in e.get("sidecars", {}).values())
                      for e in m["chunks"])
    return {
        "directory": str(d),
        "format_version": m["format_version"],
        **{k: m[k] for k in _Layout.from_manifest(m, d).manifest_fields()},
        "has_life_lost": has_life_lost(m),
        "count": m["count"],
        "chunks": len(m["chunks"]),
        "chunk_rows": m.get("chunk_rows"),
        "bytes": chunk_bytes,
        "bytes_per_transition": chunk_bytes / m["count"] if m["count"] else None,
        "marks": m["marks"],
        "metadata": m.get("metadata", {}),
        "created_at": m.get("created_at"),
        "updated_at": m.get("updated_at"),
    }


def verify(directory: str | os.PathLike) -> tuple[list[str], list[str]]:
    """Check a dataset completely: ``(problems, notes)``; it is good when ``problems`` is empty.

    Every chunk the manifest lists is read (size, CRC-32, safe unpickling, every array's dtype
    and shape, index consistency). Notes report leftovers of an interrupted writer (temp files,
    chunk files the manifest does not list), which readers ignore.
    """
    d = Path(directory)
    m = _read_manifest(d)  # raises: a dataset without a readable manifest has nothing to verify
    lay = _Layout.from_manifest(m, d / MANIFEST_NAME)
    problems: list[str] = []
    for e in m["chunks"]:
        try:
            chunk = _read_chunk(d, e, lay, has_life_lost(m))
            _index_chunk(chunk, lay)
        except DatasetError as err:
            problems.append(str(err))
    listed = _files_of(m["chunks"])
    notes = [f"{p}: leftover of an interrupted writer, ignored" for p in sorted(d.iterdir())
             if _TMP_RE.match(p.name) or (_DATA_FILE_RE.match(p.name) and p.name not in listed)]
    return problems, notes


@dataclass
class InspectArgs:
    """Print what a dataset holds: env, count, shapes, dtypes, chunks, marks, bytes per transition."""

    directory: tyro.conf.Positional[Path]
    """the dataset folder (holds manifest.json)"""
    json: bool = False
    """print the summary as one JSON object"""


@dataclass
class VerifyArgs:
    """Read every chunk of a dataset and check it against the manifest; exit 1 if anything is wrong."""

    directory: tyro.conf.Positional[Path]
    """the dataset folder (holds manifest.json)"""


def main(argv: list[str] | None = None) -> int:
    """The CLI; returns the exit status (0 fine, 1 broken dataset, 2 bad argument)."""
    args = tyro.extras.subcommand_cli_from_dict({"inspect": InspectArgs, "verify": VerifyArgs}, args=argv,
                                                description="Inspect or verify an offline dataset.")
    d = Path(args.directory)
    if not d.is_dir():
        print(f"error: {d} is not a folder", file=sys.stderr)
        return 2
    if not (d / MANIFEST_NAME).is_file():
        print(f"error: {d} is not a dataset (no {MANIFEST_NAME})", file=sys.stderr)
        return 2
    try:
        if isinstance(args, InspectArgs):
            s = summarize(d)
            if args.json:
                print(json.dumps(s, indent=1))
            else:
                for k, v in s.items():
                    print(f"{k:21s} {v}")
            return 0
        problems, notes = verify(d)
    except DatasetError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    for note in notes:
        print(f"note: {note}")
    if problems:
        for p in problems:
            print(f"error: {p}", file=sys.stderr)
        print(f"FAILED: {len(problems)} problem(s) in {d}", file=sys.stderr)
        return 1
    m = _read_manifest(d)
    print(f"OK: {m['count']} transitions in {len(m['chunks'])} chunk(s), {len(m['marks'])} mark(s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
