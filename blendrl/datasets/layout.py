"""What a dataset's rows look like, what its files are called, and where each state of a chunk
lives: the one description of the chunk pools (``ChunkPools``) that the encoder, the readers, the
device pool and ``verify`` all use.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable

import numpy as np

from blendrl.contract import DATASET_MANIFEST

FORMAT_VERSION = 2
READABLE_VERSIONS = (1, 2)
MANIFEST_NAME = DATASET_MANIFEST
LOCK_NAME = ".writer.lock"
SIDECARS = ("logic", "neural")
"""The two pools a format-2 chunk keeps in ``.npy`` sidecar files, in this order."""

CHUNK_RE = re.compile(r"^chunk_\d{12}_\d{9}\.pkl$")
DATA_FILE_RE = re.compile(r"^chunk_\d{12}_\d{9}(\.pkl|\.(logic|neural)\.npy)$")
"""A chunk's pickle or one of its sidecars (stray ones are removed by writers)."""
TMP_RE = re.compile(r"^\..+\.tmp$")


class DatasetError(Exception):
    """A dataset is missing, broken, of an unknown format, or was given bad data."""


def chunk_name(start: int, count: int) -> str:
    return f"chunk_{start:012d}_{count:09d}.pkl"


def sidecar_name(chunk_file: str, pool: str) -> str:
    return f"{chunk_file[:-len('.pkl')]}.{pool}.npy"


@dataclass(frozen=True)
class Layout:
    """What every row of a dataset looks like (from the writer's arguments or the manifest)."""

    env: str
    num_envs: int
    n_actions: int
    logic_shape: tuple[int, ...]
    neural_shape: tuple[int, ...]
    neural_dtype: np.dtype
    frames: bool
    """the ``frames`` encoding (3-D neural states ``[S, H, W]``, S >= 2): one frame per row"""

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

    @property
    def neural_row_shape(self) -> tuple[int, ...]:
        """Shape of one row of the neural pool: a frame (``frames``) or a whole neural state."""
        return self.frame_shape if self.frames else self.neural_shape

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
    def from_manifest(m: dict[str, Any], where: Path) -> "Layout":
        try:
            layout = Layout(
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

    def pools(self, count: int, n_next: int, n_keys: int) -> "ChunkPools":
        return ChunkPools(self, count, n_next, n_keys)

    def pools_of(self, entry: dict[str, Any]) -> "ChunkPools":
        """The pools of the chunk a manifest entry describes."""
        return ChunkPools(self, int(entry["count"]), int(entry["n_next"]), int(entry["n_keys"]))


@dataclass(frozen=True)
class ChunkPools:
    """Where each state of one chunk lives: the chunk's two pools.

    A chunk of ``count`` rows (``c``), ``n_next`` explicit next states (``m``) and ``n_keys`` key
    rows (``k``) numbers its states rows first (``0..c-1``), then the explicit next states
    (``c..c+m-1``).

    * the **logic pool** is float32 ``[c + m, *logic_shape]``, one row per state, in that order;
    * the **neural pool**, ``frames`` encoding: the frame pool
      ``[newest frame of each row (c) | older frames of each key row (k * (S-1)) | whole stacks of
      the explicit next states (m * S)]``, rows of ``[H, W]``;
      ``array`` encoding: ``[c + m, *neural_shape]``, one row per state.
    """

    layout: Layout
    count: int
    n_next: int
    n_keys: int

    @property
    def n_states(self) -> int:
        return self.count + self.n_next

    @property
    def key_older_start(self) -> int:
        """Frame-pool row of the first key row's oldest frame."""
        return self.count

    @property
    def next_stacks_start(self) -> int:
        """Frame-pool row of the first explicit next state's oldest frame."""
        return self.count + self.n_keys * (self.layout.stack - 1)

    @property
    def neural_rows(self) -> int:
        if not self.layout.frames:
            return self.n_states
        return self.next_stacks_start + self.n_next * self.layout.stack

    def shapes(self) -> dict[str, tuple[tuple[int, ...], np.dtype]]:
        """Shape and dtype of each pool, by sidecar name."""
        lay = self.layout
        return {"logic": ((self.n_states, *lay.logic_shape), np.dtype(np.float32)),
                "neural": ((self.neural_rows, *lay.neural_row_shape), lay.neural_dtype)}

    def nbytes(self) -> int:
        return sum(int(np.prod(shape, dtype=np.int64)) * dt.itemsize for shape, dt in self.shapes().values())

    def neural_parts(self, rows: np.ndarray, key_older: np.ndarray | None,
                     next_neural: np.ndarray) -> list[np.ndarray]:
        """The neural pool's parts in pool order, from the rows' neural data (the newest frames, or
        whole states), the key rows' older frames ``[k, S-1, H, W]`` and the explicit next
        states ``[m, *neural_shape]``."""
        if not self.layout.frames:
            return [rows, next_neural]
        fs = self.layout.frame_shape
        return [rows, key_older.reshape(-1, *fs), next_neural.reshape(-1, *fs)]

    def split_neural(self, pool: np.ndarray) -> tuple[np.ndarray, np.ndarray | None, np.ndarray]:
        """The inverse of :meth:`neural_parts` (views): ``(rows, key_older, next_neural)``."""
        lay, c = self.layout, self.count
        if not lay.frames:
            return pool[:c], None, pool[c:]
        s, fs = lay.stack, lay.frame_shape
        return (pool[:c], pool[c:self.next_stacks_start].reshape(self.n_keys, s - 1, *fs),
                pool[self.next_stacks_start:].reshape(self.n_next, s, *fs))


def make_layout(env: str, num_envs: int, logic_shape: Iterable[int], neural_shape: Iterable[int],
                neural_dtype: Any, n_actions: int) -> Layout:
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
    return Layout(env=env, num_envs=int(num_envs), n_actions=int(n_actions),
                  logic_shape=shapes["logic_shape"], neural_shape=neural, neural_dtype=dtype,
                  frames=len(neural) == 3 and neural[0] >= 2)
