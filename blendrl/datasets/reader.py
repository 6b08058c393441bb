"""``DatasetReader``: uniform minibatches from the first ``limit`` transitions of a dataset, read in
place, and grown interval by interval with :meth:`DatasetReader.extend`."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from blendrl.datasets.chunks import Chunk, check_values, index_chunk, open_chunk
from blendrl.datasets.layout import DatasetError, Layout
from blendrl.datasets.manifest import has_life_lost, read_manifest


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

    def to_torch(self, device: Any = "cpu", non_blocking: bool = False) -> "Batch":
        """The same batch as torch tensors on ``device``.

        States keep their dtype (float32; uint8 frames stay uint8, the network scales them);
        ``action`` int64; ``reward``, ``terminated``, ``truncated`` and ``life_lost`` float32
        (ready for ``r + gamma * (1 - terminated) * v``). ``non_blocking`` copies asynchronously
        where the arrays are in pinned memory.
        """
        import torch

        def t(a: np.ndarray, dtype: Any = None) -> Any:
            x = torch.from_numpy(np.ascontiguousarray(a))
            return x.to(device=device, dtype=dtype, non_blocking=non_blocking)

        life_lost = self.life_lost if self.life_lost is not None else np.zeros(len(self.terminated), bool)
        return Batch(t(self.logic_state), t(self.neural_state), t(self.action, torch.int64),
                     t(self.reward, torch.float32), t(self.next_logic_state), t(self.next_neural_state),
                     t(self.terminated, torch.float32), t(self.truncated, torch.float32),
                     t(life_lost, torch.float32))


def empty_batch(layout: Layout, size: int, alloc: Any = np.empty) -> Batch:
    """A Batch of ``size`` uninitialised rows, each array made by ``alloc(shape, dtype)``."""
    logic = (size, *layout.logic_shape)
    neural = (size, *layout.neural_shape)
    return Batch(alloc(logic, np.dtype(np.float32)), alloc(neural, layout.neural_dtype),
                 alloc((size,), np.dtype(np.int64)), alloc((size,), np.dtype(np.float64)),
                 alloc(logic, np.dtype(np.float32)), alloc(neural, layout.neural_dtype),
                 alloc((size,), np.dtype(bool)), alloc((size,), np.dtype(bool)),
                 alloc((size,), np.dtype(bool)))


class DatasetReader:
    """The first ``limit`` transitions of a dataset (all of them when ``limit`` is None).

    Reads in place: the states stay in the chunks' pools, memory-mapped from their ``.npy``
    sidecars (format 2), and only small per-transition tables live in memory (next-state and
    frame indices, actions, rewards, flags: about 32 bytes a transition). A format-1 chunk has
    no sidecars; its pools are loaded into memory. :meth:`extend` grows the prefix, opening only
    the chunks it adds. With ``verify`` every chunk it opens, at construction and in
    :meth:`extend`, is checked whole before its rows can be sampled: the CRC-32 of its pools
    (which reads them) and that its floats are finite. Without it, pickles are still CRC-checked
    and pool sizes checked (the pools' contents are not read until sampled). ``manifest``: the
    dataset's manifest as :func:`read_manifest` has already read and checked it (otherwise it is
    read here).
    """

    def __init__(self, directory: str | os.PathLike, limit: int | None = None, verify: bool = False,
                 manifest: dict[str, Any] | None = None):
        self.directory = Path(directory)
        self._chunks: list[Chunk] = []
        self._limit = 0
        self._rng = np.random.default_rng()
        self._verify = bool(verify)
        self._index(manifest if manifest is not None else read_manifest(self.directory))
        total = self.manifest["count"]
        if limit is None:
            limit = total
        self._check_limit(limit)
        self._open_until(int(limit))
        self._limit = int(limit)

    # ---- growing

    _TABLES = ("_next_local", "_action", "_reward", "_terminated", "_truncated", "_life_lost")

    def _index(self, manifest: dict[str, Any]) -> None:
        """Take ``manifest`` as the dataset's: chunk starts, state numbering and the per-transition
        tables for every listed transition (np.empty costs no memory until a chunk fills its part;
        the rows of chunks already open are kept)."""
        lay = Layout.from_manifest(manifest, self.directory)
        entries, total = manifest["chunks"], manifest["count"]
        pools = [lay.pools_of(e) for e in entries]
        old = {name: getattr(self, name) for name in self._TABLES} if self._chunks else {}
        old_frames = self._frame_src if self._chunks else None
        filled = int(self._starts[len(self._chunks)]) if self._chunks else 0
        filled_states = int(self._state_base[len(self._chunks)]) if self._chunks else 0
        self.manifest, self._layout, self._life, self._entries = manifest, lay, has_life_lost(manifest), entries
        self._starts = np.array([e["start"] for e in entries] + [total], np.int64)
        self._state_base = np.cumsum([0] + [p.n_states for p in pools]).astype(np.int64)
        biggest = max([p.n_states for p in pools] + [p.neural_rows for p in pools] + [0])
        self._index_dtype = np.dtype(np.int32 if biggest < 2**31 else np.int64)
        self._next_local = np.empty(total, self._index_dtype)  # chunk-local state of the next state
        self._action = np.empty(total, lay.action_dtype)
        self._reward = np.empty(total, np.float64)
        self._terminated = np.empty(total, bool)
        self._truncated = np.empty(total, bool)
        self._life_lost = np.empty(total, bool)
        self._frame_src = (np.empty((int(self._state_base[-1]), lay.stack), self._index_dtype)
                           if lay.frames else None)  # per state: chunk-local frame-pool rows
        for name, table in old.items():
            getattr(self, name)[:filled] = table[:filled]
        if old_frames is not None:
            self._frame_src[:filled_states] = old_frames[:filled_states]

    def refresh(self) -> "DatasetReader":
        """Read the manifest again (a dataset its online run is still writing has grown): the
        chunks listed since can be opened by :meth:`extend`. The chunks already open must be
        listed unchanged (a DatasetError otherwise: the dataset was rewritten below what was read)."""
        manifest = read_manifest(self.directory)
        opened = len(self._chunks)
        if manifest["chunks"][:opened] != self._entries[:opened] or \
                Layout.from_manifest(manifest, self.directory) != self._layout:
            raise DatasetError(f"{self.directory}: the dataset was rewritten below the "
                               f"{int(self._starts[opened])} transitions already read")
        self._index(manifest)
        return self

    def _check_limit(self, limit: Any) -> None:
        total = self.manifest["count"]
        if isinstance(limit, bool) or not isinstance(limit, (int, np.integer)) or not 1 <= limit <= total:
            if not (limit == 0 == total and not isinstance(limit, bool)):
                raise DatasetError(f"{self.directory}: limit {limit!r} must be an int in [1, {total}] "
                                   f"(the dataset holds {total} transitions)")

    def extend(self, limit: int) -> "DatasetReader":
        """Make the reader hold the first ``limit`` transitions, opening only the chunks not yet
        open (a smaller ``limit`` than before just narrows what is sampled)."""
        self._check_limit(limit)
        self._open_until(int(limit))
        self._limit = int(limit)
        return self

    def _open_until(self, limit: int) -> None:
        lay = self._layout
        while len(self._chunks) < len(self._entries) and self._entries[len(self._chunks)]["start"] < limit:
            i = len(self._chunks)
            e = self._entries[i]
            chunk = open_chunk(self.directory, e, lay, self._life, check_crc=self._verify)
            if self._verify:
                check_values(self.directory, chunk)
            idx = index_chunk(chunk)
            here = slice(e["start"], e["start"] + e["count"])
            a = chunk.arrays
            self._next_local[here] = idx.next_of
            self._action[here] = a["action"]
            self._reward[here] = a["reward"]
            self._terminated[here] = a["terminated"]
            self._truncated[here] = a["truncated"]
            self._life_lost[here] = a["life_lost"]
            if lay.frames:
                base = int(self._state_base[i])
                self._frame_src[base:base + chunk.pools.n_states] = idx.frame_src
            chunk.arrays = {}  # copied into the tables
            self._chunks.append(chunk)

    # ---- description

    def __len__(self) -> int:
        return self._limit

    @property
    def limit(self) -> int:
        return self._limit

    @property
    def chunks(self) -> list[Chunk]:
        """The chunks opened so far, in order (their pools: ``chunk.logic``, ``chunk.neural``)."""
        return list(self._chunks)

    @property
    def layout(self) -> Layout:
        return self._layout

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
        return self._life

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

    # ---- tables the device pool copies

    def tables(self, upto: int) -> dict[str, np.ndarray]:
        """The per-transition tables of rows ``[0, upto)`` (views; ``upto`` within the open chunks)."""
        return {"next_local": self._next_local[:upto], "action": self._action[:upto],
                "reward": self._reward[:upto], "terminated": self._terminated[:upto],
                "truncated": self._truncated[:upto], "life_lost": self._life_lost[:upto]}

    def frame_sources(self, chunk: int) -> np.ndarray:
        """Chunk-local frame-pool rows of each state of an open chunk ``[n_states, S]``."""
        base = int(self._state_base[chunk])
        return self._frame_src[base:int(self._state_base[chunk + 1])]

    def chunk_of(self, positions: np.ndarray) -> np.ndarray:
        """The chunk number of each transition position."""
        return np.searchsorted(self._starts, positions, side="right") - 1

    # ---- sampling

    def draw(self, batch_size: int, rng: np.random.Generator | None = None) -> np.ndarray:
        """``batch_size`` positions drawn uniformly (with replacement) from ``[0, len)``, ordered
        by chunk (stable): the order :meth:`sample` returns them in."""
        if self._limit == 0:
            raise DatasetError(f"{self.directory}: cannot sample from an empty dataset")
        if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
            raise DatasetError(f"sample: batch_size must be a positive int, got {batch_size!r}")
        idx = (rng or self._rng).integers(0, self._limit, size=int(batch_size))
        if len(self._chunks) > 1:
            idx = idx[np.argsort(self.chunk_of(idx), kind="stable")]
        return idx

    def sample(self, batch_size: int, rng: np.random.Generator | None = None,
               out: Batch | None = None) -> Batch:
        """``batch_size`` transitions drawn uniformly (with replacement) from positions ``[0, len)``,
        grouped by chunk (the order of a minibatch carries no meaning).

        Without ``rng``, the reader's own unseeded generator is used. ``out`` (arrays of
        :func:`empty_batch`'s shapes and dtypes) receives the batch instead of new arrays.
        """
        return self._gather(self.draw(batch_size, rng), out)

    def get(self, indices: Any) -> Batch:
        """The transitions at the given positions (each in ``[0, len)``), in the given order."""
        idx = np.asarray(indices)
        if idx.ndim != 1 or (idx.size and idx.dtype.kind not in "iu"):
            raise DatasetError(f"get: indices must be a 1-D integer sequence, got {idx.dtype} {idx.shape}")
        idx = idx.astype(np.int64, copy=False)
        if idx.size and (idx.min() < 0 or idx.max() >= self._limit):
            raise DatasetError(f"get: positions must lie in [0, {self._limit}), got "
                               f"min {idx.min()} max {idx.max()}")
        order = np.argsort(self.chunk_of(idx), kind="stable")
        grouped = self._gather(idx[order])
        inverse = np.empty_like(order)
        inverse[order] = np.arange(order.size)
        return Batch(*(a[inverse] for a in grouped))

    def _gather(self, idx: np.ndarray, out: Batch | None = None) -> Batch:
        """The batch of positions ``idx``, which are grouped by chunk. Everything that does not
        need a chunk's pools is looked up for the whole batch at once (chunk-local states, next
        states, the frame rows of their stacks); per chunk, one ``take`` from each pool straight
        into the output (a batch touches many chunks of a large dataset, so the per-chunk work
        is kept to those four calls)."""
        lay = self._layout
        if out is None:
            out = empty_batch(lay, idx.size)
        elif not all(a is None or a.flags.c_contiguous for a in out):
            raise DatasetError("sample: out= must hold C-contiguous arrays (as empty_batch makes)")
        out.action[:] = self._action[idx]  # the table's small unsigned dtype -> int64
        # mode="clip": the indices are the reader's own, in range by construction, and "raise"
        # would buffer every output once more
        self._reward.take(idx, out=out.reward, mode="clip")
        self._terminated.take(idx, out=out.terminated, mode="clip")
        self._truncated.take(idx, out=out.truncated, mode="clip")
        self._life_lost.take(idx, out=out.life_lost, mode="clip")
        if not idx.size:
            return out
        chunk = self.chunk_of(idx)
        rows = idx - self._starts[chunk]  # chunk-local states of the rows
        nxt = self._next_local[idx]  # and of their next states
        cuts = np.flatnonzero(chunk[1:] != chunk[:-1]) + 1
        bounds = [0, *cuts.tolist(), idx.size]
        if lay.frames:  # chunk-local frame rows of both stacks, [n * S] each
            s = lay.stack
            base = self._state_base[chunk]
            cur_src = self._frame_src.take(base + rows, axis=0).reshape(-1)
            nxt_src = self._frame_src.take(base + nxt, axis=0).reshape(-1)
            state = out.neural_state.reshape(-1, *lay.frame_shape)
            next_state = out.next_neural_state.reshape(-1, *lay.frame_shape)
        for a, b in zip(bounds[:-1], bounds[1:]):
            ch = self._chunks[int(chunk[a])]
            ch.logic.take(rows[a:b], axis=0, out=out.logic_state[a:b], mode="clip")
            ch.logic.take(nxt[a:b], axis=0, out=out.next_logic_state[a:b], mode="clip")
            if lay.frames:
                ch.neural.take(cur_src[a * s:b * s], axis=0, out=state[a * s:b * s], mode="clip")
                ch.neural.take(nxt_src[a * s:b * s], axis=0, out=next_state[a * s:b * s],
                               mode="clip")
            else:
                ch.neural.take(rows[a:b], axis=0, out=out.neural_state[a:b], mode="clip")
                ch.neural.take(nxt[a:b], axis=0, out=out.next_neural_state[a:b], mode="clip")
        return out
