"""One chunk: encoding whole environment steps, writing its files atomically, and opening it
again -- its small arrays loaded and checked, its two pools memory-mapped (format 2) or loaded
(format 1) -- plus the index that rebuilds every state from the pools.
"""

from __future__ import annotations

import io
import mmap
import pickle
import threading
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO, Iterable, NamedTuple

import numpy as np

from blendrl.file_io import _PlainUnpickler, atomic_writer
from blendrl.datasets.layout import (FORMAT_VERSION, READABLE_VERSIONS, SIDECARS, ChunkPools,
                                     DatasetError, Layout, chunk_name, sidecar_name)

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
_NUMPY_GLOBALS: dict[tuple[str, str], Any] = {
    ("numpy", "dtype"): _safe_dtype,
    ("numpy.core.numeric", "_frombuffer"): _safe_frombuffer,
    ("numpy._core.numeric", "_frombuffer"): _safe_frombuffer,  # numpy >= 2
}


class _ArrayUnpickler(_PlainUnpickler):
    """The contract's plain-container unpickler, admitting numpy arrays of plain dtypes too; any
    other global is refused before it is loaded."""

    def find_class(self, module: str, name: str) -> Any:
        allowed = _NUMPY_GLOBALS.get((module, name))
        if allowed is not None:
            return allowed
        return super().find_class(module, name)


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


class ChunkEncoder:
    """Accumulates whole environment steps into one chunk's arrays (see ``docs/FORMATS.md``)."""

    def __init__(self, layout: Layout, start: int, capacity: int, life_lost: bool):
        self.layout = layout
        self.start = start
        self.capacity = capacity
        self.rows = 0
        self.life_lost = life_lost
        self._logic = np.empty((capacity, *layout.logic_shape), np.float32)
        self._neural = np.empty((capacity, *layout.neural_row_shape), layout.neural_dtype)
        self._action = np.empty(capacity, layout.action_dtype)
        self._reward = np.empty(capacity, np.float64)
        self._terminated = np.empty(capacity, bool)
        self._truncated = np.empty(capacity, bool)
        self._life_lost = np.empty(capacity if life_lost else 0, bool)
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
                 life_lost: np.ndarray | None) -> None:
        """Append one validated, C-contiguous step of ``num_envs`` rows."""
        n = self.layout.num_envs
        assert self.life_lost == (life_lost is not None)
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

    def finish(self) -> tuple[dict[str, Any], dict[str, list[np.ndarray]], ChunkPools]:
        """The chunk's dict of small arrays, the parts of its two pools (in pool order) and their
        layout; the last step's next states become explicit."""
        if self.rows == 0:
            raise DatasetError("internal: an empty chunk cannot be written")
        lay = self.layout
        n = lay.num_envs
        assert self._pending is not None
        c = self.rows
        next_rows = np.concatenate(self._next_rows + [np.arange(c - n, c)]).astype(np.int64)
        next_logic = np.concatenate(self._next_logic + [self._pending[0]])
        next_neural = np.concatenate(self._next_neural + [self._pending[1]])
        small: dict[str, Any] = {
            "format_version": FORMAT_VERSION,
            "start": self.start,
            "count": c,
            "action": self._action[:c],
            "reward": self._reward[:c],
            "terminated": self._terminated[:c],
            "truncated": self._truncated[:c],
            "next_rows": next_rows,
        }
        if self.life_lost:
            small["life_lost"] = self._life_lost[:c]
        key_older = None
        if lay.frames:
            small["key_rows"] = np.concatenate(self._key_rows).astype(np.int64)
            key_older = np.concatenate(self._key_older)
        pools = lay.pools(c, next_rows.size, small["key_rows"].size if lay.frames else 0)
        parts = {"logic": [self._logic[:c], next_logic],
                 "neural": pools.neural_parts(self._neural[:c], key_older, next_neural)}
        return small, parts, pools


# --------------------------------------------------------------------------- writing


class _CrcFile:
    """A write-only file wrapper that counts bytes and their CRC-32 on the way through."""

    def __init__(self, f: BinaryIO):
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


def _write_npy(path: Path, parts: list[np.ndarray]) -> dict[str, Any]:
    """The concatenation of ``parts`` as one ``.npy`` file (format 1.0), written atomically and
    durably without concatenating in memory; returns its ``{"file", "bytes", "crc32"}``."""
    dtype, tail = parts[0].dtype, parts[0].shape[1:]
    assert all(p.dtype == dtype and p.shape[1:] == tail for p in parts)
    header = {"descr": np.lib.format.dtype_to_descr(dtype), "fortran_order": False,
              "shape": (sum(len(p) for p in parts), *tail)}
    with atomic_writer(path, durable=True) as f:
        cf = _CrcFile(f)
        np.lib.format.write_array_header_1_0(cf, header)
        for p in parts:
            if p.size:
                cf.write(np.ascontiguousarray(p))
    return {"file": path.name, "bytes": cf.size, "crc32": cf.crc}


def write_chunk(directory: Path, enc: ChunkEncoder) -> dict[str, Any]:
    """The chunk's sidecar pools, then its pickle, each atomically; returns its manifest entry
    (the manifest, written after, is what makes the chunk part of the dataset)."""
    small, parts, pools = enc.finish()
    name = chunk_name(enc.start, enc.rows)
    sidecars = {pool: _write_npy(directory / sidecar_name(name, pool), parts[pool]) for pool in SIDECARS}
    with atomic_writer(directory / name, durable=True) as f:
        cf = _CrcFile(f)
        pickle.dump(small, cf, protocol=5)
    return {"file": name, "start": enc.start, "count": enc.rows, "bytes": cf.size, "crc32": cf.crc,
            "n_keys": pools.n_keys, "n_next": pools.n_next, "sidecars": sidecars}


# --------------------------------------------------------------------------- reading


def file_crc32(path: Path, block: int = 1 << 24) -> int:
    """CRC-32 of a whole file, read in blocks (a pool of hundreds of MB is never held at once)."""
    crc = 0
    with open(path, "rb") as f:
        while True:
            b = f.read(block)
            if not b:
                return crc
            crc = zlib.crc32(b, crc)


def check_file_size(path: Path, entry: dict[str, Any], what: str) -> None:
    """The file exists with the size its manifest entry records (DatasetError naming it)."""
    try:
        size = path.stat().st_size
    except OSError as e:
        raise DatasetError(f"{path}: {what} missing or unreadable ({e.strerror or e})") from e
    if size != entry["bytes"]:
        raise DatasetError(f"{path}: truncated or altered {what}: {size} bytes on disk, "
                           f"the manifest says {entry['bytes']}")


def check_file_crc(path: Path, entry: dict[str, Any], what: str) -> None:
    if file_crc32(path) != entry["crc32"]:
        raise DatasetError(f"{path}: {what} corrupted (CRC-32 differs from the manifest)")


def _read_checked(path: Path, entry: dict[str, Any], what: str) -> bytes:
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


_HEADER_LOCK = threading.Lock()
"""numpy reads a ``.npy`` header with ``ast.literal_eval``; CPython 3.11's AST constructor is not
thread-safe (seen: ``SystemError: AST constructor recursion depth mismatch`` when chunks were
verified side by side), so headers are parsed one at a time."""


def _map_npy(path: Path, entry: dict[str, Any], shape: tuple[int, ...], dtype: np.dtype,
             check_crc: bool) -> np.ndarray:
    """A read-only array over a memory map of a sidecar ``.npy`` file, which must hold exactly
    ``dtype`` ``shape`` in C order and have the size (and, with ``check_crc``, the CRC) of its
    manifest entry. Nothing is read beyond the header: the OS pages the data in on use."""
    check_file_size(path, entry, "pool")
    if check_crc:
        check_file_crc(path, entry, "pool")
    with open(path, "rb") as f:
        try:
            version = np.lib.format.read_magic(f)
            if version != (1, 0):
                raise ValueError(f"npy format version {version}, expected (1, 0)")
            with _HEADER_LOCK:  # numpy parses the header with ast, which is not thread-safe
                got_shape, fortran, got_dtype = np.lib.format.read_array_header_1_0(f)
        except Exception as e:  # noqa: BLE001 - whatever is wrong, it is not a pool file
            raise DatasetError(f"{path}: not a readable .npy pool ({type(e).__name__}: {e})") from e
        offset = f.tell()
        if fortran or got_dtype != dtype or tuple(got_shape) != shape:
            raise DatasetError(f"{path}: pool should be {dtype} {shape} in C order, found {got_dtype} "
                               f"{tuple(got_shape)}{' (Fortran order)' if fortran else ''}")
        nbytes = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
        if entry["bytes"] != offset + nbytes:
            raise DatasetError(f"{path}: pool holds {entry['bytes'] - offset} data bytes, expected {nbytes}")
        if nbytes == 0:
            return np.empty(shape, dtype)
        mm = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)  # stays open while the array lives
    return np.frombuffer(mm, dtype=dtype, count=nbytes // dtype.itemsize, offset=offset).reshape(shape)


def _expected_arrays(lay: Layout, c: int, m: int, k: int, version: int,
                     life_lost: bool) -> dict[str, tuple[tuple[int, ...], np.dtype]]:
    """Shape and dtype of each array in the pickle of a chunk (format 1 holds the states too;
    format 2 keeps them in its pools)."""
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


def _check_index_set(name: str, idx: np.ndarray, c: int, must: np.ndarray, where: Path) -> None:
    if idx.size and (np.any(np.diff(idx) <= 0) or idx[0] < 0 or idx[-1] >= c):
        raise DatasetError(f"{where}: {name} must be strictly increasing rows in [0, {c})")
    if not np.isin(must, idx).all():
        raise DatasetError(f"{where}: {name} lacks rows {must.tolist()} that must be listed")


@dataclass
class Chunk:
    """One opened chunk: its small per-transition arrays and its two pools (see ChunkPools)."""

    entry: dict[str, Any]
    version: int
    pools: ChunkPools
    arrays: dict[str, np.ndarray]
    """action, reward, terminated, truncated, life_lost (all False where not recorded),
    next_rows, and key_rows (frames encoding)"""
    logic: np.ndarray
    """the logic pool ``[c + m, *logic_shape]``"""
    neural: np.ndarray
    """the neural pool (the frame pool, or ``[c + m, *neural_shape]``)"""


def open_chunk(directory: Path, entry: dict[str, Any], lay: Layout, life_lost: bool,
               check_crc: bool = False) -> Chunk:
    """Open one chunk the manifest lists and check it against ``entry``.

    The pickle is read whole and CRC-checked. Format 2: each pool is memory-mapped after its size
    is checked (its CRC only with ``check_crc``: that reads the whole file). Format 1: the states
    are in the pickle; the pools are assembled in memory.
    """
    path = directory / str(entry["file"])
    small = safe_load_pickle(_read_checked(path, entry, "chunk"), path)
    if not isinstance(small, dict):
        raise DatasetError(f"{path}: a chunk is a dict, found {type(small).__name__}")
    version = small.get("format_version")
    if version not in READABLE_VERSIONS or isinstance(version, bool):
        raise DatasetError(f"{path}: unknown chunk format_version {version!r} "
                           f"(this reader knows {', '.join(map(str, READABLE_VERSIONS))})")
    if (version >= 2) != ("sidecars" in entry):
        raise DatasetError(f"{path}: a format-{version} chunk, but the manifest entry "
                           f"{'lacks' if version >= 2 else 'lists'} sidecar pools")
    pools = lay.pools_of(entry)
    c, m, k = pools.count, pools.n_next, pools.n_keys
    if small.get("start") != entry["start"] or small.get("count") != c:
        raise DatasetError(f"{path}: chunk says start={small.get('start')} count={small.get('count')}, "
                           f"the manifest says start={entry['start']} count={c}")
    for name, (shape, dtype) in _expected_arrays(lay, c, m, k, version, life_lost).items():
        a = small.get(name)
        if not isinstance(a, np.ndarray) or a.dtype != dtype or a.shape != shape:
            got = f"{a.dtype} {a.shape}" if isinstance(a, np.ndarray) else type(a).__name__
            raise DatasetError(f"{path}: array {name!r} should be {dtype} {shape}, found {got}")
    n = lay.num_envs
    _check_index_set("next_rows", small["next_rows"], c, np.arange(c - n, c), path)
    if lay.frames:
        _check_index_set("key_rows", small["key_rows"], c, np.arange(n), path)
    if c and int(small["action"].max()) >= lay.n_actions:
        raise DatasetError(f"{path}: an action is >= n_actions={lay.n_actions}")
    if version >= 2:
        shapes = pools.shapes()
        mapped = {pool: _map_npy(directory / entry["sidecars"][pool]["file"], entry["sidecars"][pool],
                                 *shapes[pool], check_crc) for pool in SIDECARS}
        logic, neural = mapped["logic"], mapped["neural"]
    else:
        logic = np.concatenate([small.pop("logic"), small.pop("next_logic")])
        rows = small.pop("frame") if lay.frames else small.pop("neural")
        neural = np.concatenate(pools.neural_parts(rows, small.pop("key_older", None), small.pop("next_neural")))
    arrays = {key: small[key] for key in ("action", "reward", "terminated", "truncated", "next_rows")}
    arrays["life_lost"] = small["life_lost"] if life_lost else np.zeros(c, bool)
    if lay.frames:
        arrays["key_rows"] = small["key_rows"]
    return Chunk(entry, version, pools, arrays, logic, neural)


class ChunkIndex(NamedTuple):
    """Where each state of one chunk lives, in chunk-local numbering (see ChunkPools).

    ``next_of[r]`` is the state number of row ``r``'s next state. For the frames encoding,
    ``frame_src[s, j]`` is the row of frame ``j`` of state ``s``'s stack in the frame pool.
    """

    next_of: np.ndarray
    frame_src: np.ndarray | None


def index_chunk(chunk: Chunk) -> ChunkIndex:
    pools, lay = chunk.pools, chunk.pools.layout
    c, n = pools.count, lay.num_envs
    next_rows = chunk.arrays["next_rows"]
    m = next_rows.size
    next_of = np.arange(n, c + n, dtype=np.int64)
    next_of[next_rows] = c + np.arange(m, dtype=np.int64)
    if not lay.frames:
        return ChunkIndex(next_of, None)
    s = lay.stack
    t_steps = c // n
    key_rows = chunk.arrays["key_rows"]
    key_pos = np.full(c, -1, np.int64)
    key_pos[key_rows] = np.arange(key_rows.size)
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
        older = pools.key_older_start + key_pos[key_row] * (s - 1) + np.minimum(j + since, s - 2)
        src_rows[..., j] = np.where(from_frame, rows - back * n, older)
    src[c:] = pools.next_stacks_start + np.arange(m * s, dtype=np.int64).reshape(m, s)
    return ChunkIndex(next_of, src)


def chunk_steps(chunk: Chunk, upto: int) -> Iterable[tuple[np.ndarray, ...]]:
    """Decode rows ``[0, upto)`` of a chunk step by step, exactly: the arguments of
    ``DatasetWriter.add`` with ``life_lost`` last."""
    idx = index_chunk(chunk)
    lay, a = chunk.pools.layout, chunk.arrays

    def neural_of(states: np.ndarray) -> np.ndarray:
        return chunk.neural[idx.frame_src[states]] if lay.frames else chunk.neural[states]

    n = lay.num_envs
    for r0 in range(0, min(upto, chunk.pools.count), n):
        rows = np.arange(r0, r0 + n)
        nxt = idx.next_of[rows]
        yield (chunk.logic[rows], neural_of(rows), a["action"][rows], a["reward"][rows],
               chunk.logic[nxt], neural_of(nxt), a["terminated"][rows], a["truncated"][rows],
               a["life_lost"][rows])


_VALUE_BLOCK = 1 << 22
"""Elements of a float array checked at a time by :func:`check_values` (memory stays flat)."""


def _first_non_finite(a: np.ndarray) -> int | None:
    """The first leading-row index of ``a`` holding a NaN or an infinity, or None; read in blocks."""
    if a.dtype.kind != "f" or a.size == 0:
        return None
    per_row = max(1, a.size // max(a.shape[0], 1))
    step = max(1, _VALUE_BLOCK // per_row)
    for r0 in range(0, a.shape[0], step):
        block = a[r0:r0 + step]
        if not np.isfinite(block).all():
            bad = ~np.isfinite(block.reshape(block.shape[0], -1)).all(axis=1)
            return r0 + int(np.flatnonzero(bad)[0])
    return None


def check_values(directory: Path, chunk: Chunk) -> None:
    """Every float of an opened chunk is finite: its rewards and its float pools (the logic pool;
    the neural pool where its dtype is a float). A DatasetError names the file and the row."""
    e = chunk.entry
    row = _first_non_finite(chunk.arrays["reward"])
    if row is not None:
        raise DatasetError(f"{directory / e['file']}: non-finite reward (NaN or inf) at transition "
                           f"{e['start'] + row}")
    for pool, arr in (("logic", chunk.logic), ("neural", chunk.neural)):
        row = _first_non_finite(arr)
        if row is not None:
            where = (directory / e["sidecars"][pool]["file"]) if "sidecars" in e else directory / e["file"]
            raise DatasetError(f"{where}: non-finite value (NaN or inf) in the {pool} pool at state "
                               f"row {row}")


def chunk_files_ok(directory: Path, entry: dict[str, Any]) -> None:
    """Every file of one chunk entry exists with its recorded size (no content read)."""
    check_file_size(directory / entry["file"], entry, "chunk")
    for pool in SIDECARS if "sidecars" in entry else ():
        side = entry["sidecars"][pool]
        check_file_size(directory / side["file"], side, "pool")
