"""A dataset prefix on the training device: :class:`DevicePool` keeps the prefix's pools and
tables on the device (frames as uint8) and gathers stacks there, so that a step costs no host work
but drawing the positions; :func:`device_bytes_needed` is the device memory it takes.
"""

from __future__ import annotations

import contextlib
from typing import Any

import numpy as np
import torch

from blendrl.datasets.cuda_sync import CudaSync, sync_for
from blendrl.datasets.layout import DatasetError, Layout
from blendrl.datasets.manifest import chunks_below, pool_bytes
from blendrl.datasets.reader import Batch, DatasetReader

DEVICE_TABLE_BYTES = 8 * 2 + 8 + 4 * 4
"""Device bytes per transition besides its pools: row and next-state indices (int64), action
(int64), reward and three flags (float32); the frames encoding adds ``8 * S`` per state (the
frame indices of its stack, int64)."""
UPLOAD_BYTES = 64 << 20
"""Size of the host staging buffer a chunk's pools are copied to the device through."""


def device_bytes_needed(manifest: dict[str, Any], limit: int) -> int:
    """Device memory a :class:`DevicePool` of the first ``limit`` transitions takes."""
    lay = Layout.from_manifest(manifest, "manifest")
    pools = [lay.pools_of(e) for e in chunks_below(manifest, limit)]
    frame_index = sum(p.n_states for p in pools) * lay.stack * 8 if lay.frames else 0
    return pool_bytes(manifest, limit) + sum(p.count for p in pools) * DEVICE_TABLE_BYTES + frame_index


# --------------------------------------------------------------------------- on the device


class _PinnedRing:
    """A few pinned host buffers of positions, each reused only once the copy from it is done
    (an event per buffer, :class:`CudaSync`: the host waits only when the device is that many
    steps behind). Without a ``sync`` (CPU) the positions are handed over as they are."""

    def __init__(self, size: int, device: torch.device, slots: int = 8, sync: CudaSync | None = None):
        self.device = device
        self.sync = sync
        pin = device.type == "cuda"
        self.buffers = [torch.empty(size, dtype=torch.int64, pin_memory=pin) for _ in range(slots)] if sync else []
        self.events: list[Any] = [None] * slots
        self.k = 0

    def upload(self, positions: np.ndarray) -> torch.Tensor:
        if self.sync is None:
            return torch.from_numpy(positions.astype(np.int64)).to(self.device)
        k = self.k
        self.k = (k + 1) % len(self.buffers)
        if self.events[k] is not None:
            self.sync.wait(self.events[k])
        buf = self.buffers[k][:positions.size]
        buf.numpy()[:] = positions
        out = buf.to(self.device, non_blocking=True)
        self.events[k] = self.sync.copies_done()
        return out


class DevicePool:
    """The pools and per-transition tables of the first ``capacity`` transitions' chunks on
    ``device`` (allocated once; filled chunk by chunk as :meth:`set_limit` grows the prefix),
    and minibatches gathered there: ``frames[frame_src[state]]`` for the stacks.
    :attr:`capacity` is the transitions it can hold (those of the chunks below ``capacity``)."""

    def __init__(self, reader: DatasetReader, device: torch.device, batch_size: int,
                 rng: np.random.Generator, capacity: int, sync: CudaSync | None = None):
        if not isinstance(reader, DatasetReader):
            raise TypeError(f"a DevicePool needs a DatasetReader, got {type(reader).__name__}")
        self.reader, self.device, self.batch_size, self.rng = reader, device, batch_size, rng
        self.sync = sync if sync is not None else sync_for(device)
        with self.sync.scope() if self.sync is not None else contextlib.nullcontext():
            self._allocate(capacity)

    def _allocate(self, capacity: int) -> None:
        lay, device = self.reader.layout, self.device
        self.layout = lay
        entries = chunks_below(self.reader.manifest, capacity)
        pools = [lay.pools_of(e) for e in entries]
        self.rows = sum(p.count for p in pools)
        states = sum(p.n_states for p in pools)
        self._state_base = np.cumsum([0] + [p.n_states for p in pools])
        self._neural_base = np.cumsum([0] + [p.neural_rows for p in pools])
        t = dict(device=device)
        self.logic = torch.empty((states, *lay.logic_shape), dtype=torch.float32, **t)
        self.neural = torch.empty((int(self._neural_base[-1]), *lay.neural_row_shape),
                                  dtype=torch_dtype(lay.neural_dtype), **t)
        self.frame_src = torch.empty((states, lay.stack), dtype=torch.int64, **t) if lay.frames else None
        self.row_state = torch.empty(self.rows, dtype=torch.int64, **t)
        self.next_state = torch.empty(self.rows, dtype=torch.int64, **t)
        self.action = torch.empty(self.rows, dtype=torch.int64, **t)
        self.flags = {name: torch.empty(self.rows, dtype=torch.float32, **t)
                      for name in ("reward", "terminated", "truncated", "life_lost")}
        self.loaded = 0  # chunks on the device
        self.capacity = self.rows
        self._ring = _PinnedRing(self.batch_size, device, sync=self.sync)
        self._staging = torch.empty(UPLOAD_BYTES, dtype=torch.uint8, pin_memory=device.type == "cuda")

    def set_limit(self, limit: int) -> None:
        if limit > self.capacity:
            raise DatasetError(f"DevicePool: limit {limit} beyond its capacity of {self.capacity} transitions")
        self.reader.extend(limit)
        chunks = self.reader.chunks
        while self.loaded < len(chunks):
            self._load(self.loaded, chunks[self.loaded])
            self.loaded += 1

    def _load(self, i: int, chunk: Any) -> None:
        """Copy one opened chunk's pools and tables to the device."""
        e, sb, nb = chunk.entry, int(self._state_base[i]), int(self._neural_base[i])
        p = chunk.pools
        self._upload(self.logic[sb:sb + p.n_states], chunk.logic)
        self._upload(self.neural[nb:nb + p.neural_rows], chunk.neural)
        rows = slice(e["start"], e["start"] + e["count"])
        tab = self.reader.tables(e["start"] + e["count"])
        local = np.arange(p.count, dtype=np.int64)
        self._upload(self.row_state[rows], sb + local)
        self._upload(self.next_state[rows], sb + tab["next_local"][rows].astype(np.int64))
        self._upload(self.action[rows], tab["action"][rows].astype(np.int64))
        for name, dest in self.flags.items():
            self._upload(dest[rows], tab[name][rows].astype(np.float32))
        if self.frame_src is not None:
            self._upload(self.frame_src[sb:sb + p.n_states], nb + self.reader.frame_sources(i).astype(np.int64))

    def _upload(self, dest: torch.Tensor, src: np.ndarray) -> None:
        """``dest[...] = src`` through the staging buffer, in pieces (``src`` may be a read-only map)."""
        flat = dest.view(-1).view(torch.uint8)
        raw = np.ascontiguousarray(src).reshape(-1).view(np.uint8)
        assert flat.numel() == raw.size, (flat.numel(), raw.size)
        host = self._staging.numpy()
        for a in range(0, raw.size, UPLOAD_BYTES):
            b = min(a + UPLOAD_BYTES, raw.size)
            host[:b - a] = raw[a:b]
            flat[a:b].copy_(self._staging[:b - a], non_blocking=True)
            if self.device.type == "cuda":
                torch.cuda.current_stream(self.device).synchronize()  # the staging buffer is reused

    def next(self) -> Batch:
        positions = self.reader.draw(self.batch_size, self.rng)
        return self.gather(self._ring.upload(positions))

    def gather(self, idx: torch.Tensor) -> Batch:
        """The batch of the given positions (an int64 tensor on the device)."""
        b = idx.numel()
        states = torch.cat([self.row_state.index_select(0, idx), self.next_state.index_select(0, idx)])
        logic = self.logic.index_select(0, states)
        if self.frame_src is not None:
            frames = self.frame_src.index_select(0, states).view(-1)
            neural = self.neural.index_select(0, frames).view(2 * b, *self.layout.neural_shape)
        else:
            neural = self.neural.index_select(0, states)
        f = {name: t.index_select(0, idx) for name, t in self.flags.items()}
        return Batch(logic[:b], neural[:b], self.action.index_select(0, idx), f["reward"], logic[b:],
                     neural[b:], f["terminated"], f["truncated"], f["life_lost"])

    def close(self) -> None:
        """Drop the device tensors (a closed pool cannot be used again)."""
        for name in ("logic", "neural", "frame_src", "row_state", "next_state", "action", "_staging"):
            setattr(self, name, None)
        self.flags = {}
        self._ring = None


def torch_dtype(dt: np.dtype) -> torch.dtype:
    return torch.from_numpy(np.empty(0, dt)).dtype
