"""Minibatches on the training device, at the device's speed.

Three feeds give the same minibatches for the same generator (the positions come from
:meth:`DatasetReader.draw`, so a run's batches do not depend on where the data lives):

* :class:`DirectFeed` -- the reader samples in the training thread, the batch is copied to the
  device (CPU training);
* :class:`DevicePool` -- the prefix's pools and tables are kept on the device (frames as uint8)
  and stacks are gathered there: no host work per step but drawing the positions;
* :class:`PrefetchFeed` -- a background thread samples ahead into (pinned) host buffers, copied to
  the device without blocking; the generator the caller holds is advanced only by the batches
  consumed, so a checkpoint and ``--resume`` see exactly the batches trained on.

:func:`choose_dataset_device` decides between the last two for ``--dataset_device``.
"""

from __future__ import annotations

import queue
import threading
from typing import Any, Protocol

import numpy as np
import torch

from blendrl.datasets.layout import DatasetError, Layout
from blendrl.datasets.manifest import chunks_below, pool_bytes
from blendrl.datasets.reader import Batch, DatasetReader, empty_batch

DATASET_DEVICES = ("auto", "cpu", "cuda")
DEVICE_TABLE_BYTES = 8 * 2 + 8 + 4 * 4
"""Device bytes per transition besides its pools: row and next-state indices (int64), action
(int64), reward and three flags (float32); the frames encoding adds ``8 * S`` per state (the
frame indices of its stack, int64)."""
UPLOAD_BYTES = 64 << 20
"""Size of the host staging buffer a chunk's pools are copied to the device through."""


class Feed(Protocol):
    """What the offline loop draws its minibatches from."""

    def set_limit(self, limit: int) -> None:
        """Sample from the first ``limit`` transitions from now on (opening what that adds)."""

    def next(self) -> Batch:
        """The next minibatch, as torch tensors on the training device (``Batch.to_torch`` dtypes)."""

    def close(self) -> None:
        """Stop any background work."""


class DatasetDeviceError(ValueError):
    """``--dataset_device`` cannot be honoured (no CUDA, or the data does not fit)."""


# --------------------------------------------------------------------------- choosing


def device_bytes_needed(manifest: dict[str, Any], limit: int) -> int:
    """Device memory a :class:`DevicePool` of the first ``limit`` transitions takes."""
    lay = Layout.from_manifest(manifest, "manifest")
    pools = [lay.pools_of(e) for e in chunks_below(manifest, limit)]
    frame_index = sum(p.n_states for p in pools) * lay.stack * 8 if lay.frames else 0
    return pool_bytes(manifest, limit) + sum(p.count for p in pools) * DEVICE_TABLE_BYTES + frame_index


def headroom_bytes(total: int) -> int:
    """Device memory left free for the networks, optimisers and activations: 15% of the device,
    at least 4 GiB."""
    return max(4 << 30, int(0.15 * total))


def choose_dataset_device(choice: str, device: torch.device, need: int,
                          free_total: tuple[int, int] | None = None) -> str:
    """Where the data lives for training on ``device``: ``"cuda"`` (a :class:`DevicePool`) or
    ``"cpu"`` (host sampling). ``auto`` keeps it on the device when ``need`` bytes fit in the
    free memory with :func:`headroom_bytes` to spare; a forced ``cuda`` that cannot be honoured is
    a :class:`DatasetDeviceError` (asked before any work). ``free_total`` (free, total bytes)
    replaces the device's own figures (tests)."""
    if choice not in DATASET_DEVICES:
        raise DatasetDeviceError(f"--dataset_device must be one of {', '.join(DATASET_DEVICES)}, got {choice!r}")
    if choice == "cuda" and not torch.cuda.is_available():
        raise DatasetDeviceError("--dataset_device cuda asked for, but CUDA is not available")
    if choice == "cuda" and device.type != "cuda":
        raise DatasetDeviceError(f"--dataset_device cuda needs a CUDA training --device, got {device}")
    if device.type != "cuda" or choice == "cpu":
        return "cpu"
    free, total = free_total if free_total is not None else torch.cuda.mem_get_info(device)
    keep = headroom_bytes(total)
    if need + keep <= free:
        return "cuda"
    if choice == "cuda":
        raise DatasetDeviceError(
            f"--dataset_device cuda: the dataset prefix needs {need / 2**30:.1f} GiB on {device}, "
            f"which has {free / 2**30:.1f} GiB free (keeping {keep / 2**30:.1f} GiB for training); "
            "use --dataset_device cpu or auto")
    return "cpu"


def make_feed(reader: Any, device: torch.device, dataset_device: str, batch_size: int,
              rng: np.random.Generator, capacity: int) -> Feed:
    """The feed for training on ``device`` with the data on ``dataset_device`` (as chosen by
    :func:`choose_dataset_device`); ``capacity`` is the largest limit it will be given."""
    if dataset_device == "cuda":
        return DevicePool(reader, device, batch_size, rng, capacity)
    if device.type == "cuda":
        return PrefetchFeed(reader, device, batch_size, rng)
    return DirectFeed(reader, device, batch_size, rng)


# --------------------------------------------------------------------------- direct


class DirectFeed:
    """``reader.sample(batch_size, rng).to_torch(device)`` in the calling thread.

    A :class:`DatasetReader` samples into two host batches used in turn (new arrays every step
    cost more than the gather itself: the kernel zeroes every fresh page), so a batch stays
    valid until the next-but-one :meth:`next`; any other reader samples new arrays.
    """

    def __init__(self, reader: Any, device: torch.device, batch_size: int, rng: np.random.Generator):
        self.reader, self.device, self.batch_size, self.rng = reader, device, batch_size, rng
        self._buffers: list[Batch] = []
        self._turn = 0

    def set_limit(self, limit: int) -> None:
        self.reader.extend(limit)

    def next(self) -> Batch:
        if not isinstance(self.reader, DatasetReader):
            return self.reader.sample(self.batch_size, self.rng).to_torch(self.device)
        if not self._buffers:
            self._buffers = [empty_batch(self.reader.layout, self.batch_size) for _ in range(2)]
        out = self._buffers[self._turn]
        self._turn = 1 - self._turn
        return self.reader.sample(self.batch_size, self.rng, out=out).to_torch(self.device)

    def close(self) -> None:
        pass


# --------------------------------------------------------------------------- on the device


class _PinnedRing:
    """A few pinned host buffers of positions, each reused only once the copy from it is done
    (an event per buffer: the host waits only when the device is that many steps behind)."""

    def __init__(self, size: int, device: torch.device, slots: int = 8):
        self.device = device
        self.pinned = device.type == "cuda"
        self.buffers = [torch.empty(size, dtype=torch.int64, pin_memory=self.pinned) for _ in range(slots)]
        self.events: list[Any] = [None] * slots
        self.k = 0

    def upload(self, positions: np.ndarray) -> torch.Tensor:
        if not self.pinned:
            return torch.from_numpy(positions.astype(np.int64)).to(self.device)
        k = self.k
        self.k = (k + 1) % len(self.buffers)
        if self.events[k] is not None:
            self.events[k].synchronize()
        buf = self.buffers[k][:positions.size]
        buf.numpy()[:] = positions
        out = buf.to(self.device, non_blocking=True)
        self.events[k] = torch.cuda.Event()
        self.events[k].record()
        return out


class DevicePool:
    """The pools and per-transition tables of the first ``capacity`` transitions' chunks on
    ``device`` (allocated once; filled chunk by chunk as :meth:`set_limit` grows the prefix),
    and minibatches gathered there: ``frames[frame_src[state]]`` for the stacks."""

    def __init__(self, reader: DatasetReader, device: torch.device, batch_size: int,
                 rng: np.random.Generator, capacity: int):
        if not isinstance(reader, DatasetReader):
            raise TypeError(f"a DevicePool needs a DatasetReader, got {type(reader).__name__}")
        self.reader, self.device, self.batch_size, self.rng = reader, device, batch_size, rng
        lay = reader.layout
        self.layout = lay
        entries = chunks_below(reader.manifest, capacity)
        pools = [lay.pools_of(e) for e in entries]
        self.rows = sum(p.count for p in pools)
        states = sum(p.n_states for p in pools)
        self._state_base = np.cumsum([0] + [p.n_states for p in pools])
        self._neural_base = np.cumsum([0] + [p.neural_rows for p in pools])
        t = dict(device=device)
        self.logic = torch.empty((states, *lay.logic_shape), dtype=torch.float32, **t)
        self.neural = torch.empty((int(self._neural_base[-1]), *lay.neural_row_shape),
                                  dtype=_torch_dtype(lay.neural_dtype), **t)
        self.frame_src = torch.empty((states, lay.stack), dtype=torch.int64, **t) if lay.frames else None
        self.row_state = torch.empty(self.rows, dtype=torch.int64, **t)
        self.next_state = torch.empty(self.rows, dtype=torch.int64, **t)
        self.action = torch.empty(self.rows, dtype=torch.int64, **t)
        self.flags = {name: torch.empty(self.rows, dtype=torch.float32, **t)
                      for name in ("reward", "terminated", "truncated", "life_lost")}
        self.loaded = 0  # chunks on the device
        self.capacity = self.rows
        self._ring = _PinnedRing(batch_size, device)
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
        pass


def _torch_dtype(dt: np.dtype) -> torch.dtype:
    return torch.from_numpy(np.empty(0, dt)).dtype


# --------------------------------------------------------------------------- prefetch


class _Slot:
    """One host batch the worker fills and the training thread copies from."""

    def __init__(self, layout: Any, batch_size: int, pin: bool):
        tensors: list[torch.Tensor] = []

        def alloc(shape: tuple[int, ...], dtype: np.dtype) -> np.ndarray:
            t = torch.empty(shape, dtype=_torch_dtype(dtype), pin_memory=pin)
            tensors.append(t)
            return t.numpy()

        self.host = empty_batch(layout, batch_size, alloc)
        self.tensors = Batch(*tensors)
        self.event: Any = None


class _Failure:
    def __init__(self, error: BaseException):
        self.error = error


class PrefetchFeed:
    """Samples ``depth`` batches ahead in a background thread into host buffers (pinned on CUDA)
    and copies each to the device without blocking.

    The worker draws from its own copy of the generator; each batch carries the generator state
    after its draw, and :meth:`next` sets the caller's generator to it. So the caller's generator
    is always where it would be after sampling the consumed batches in its own thread, and the
    batches are exactly :class:`DirectFeed`'s.
    """

    def __init__(self, reader: Any, device: torch.device, batch_size: int, rng: np.random.Generator,
                 depth: int = 3, pin: bool | None = None):
        self.reader, self.device, self.batch_size, self.rng = reader, device, batch_size, rng
        self.pin = device.type == "cuda" if pin is None else pin
        self.depth = depth
        self._slots: list[_Slot] | None = None
        self._thread: threading.Thread | None = None

    # -- the worker
    def _start(self) -> None:
        if self._slots is None:
            self._slots = [_Slot(self.reader.layout, self.batch_size, self.pin) for _ in range(self.depth)]
        self._free: queue.Queue = queue.Queue()
        self._ready: queue.Queue = queue.Queue()
        for s in self._slots:
            self._free.put(s)
        self._stop = threading.Event()
        worker_rng = np.random.Generator(type(self.rng.bit_generator)())
        worker_rng.bit_generator.state = self.rng.bit_generator.state
        self._thread = threading.Thread(target=self._work, args=(worker_rng, self._stop, self._free, self._ready),
                                        name="dataset-prefetch", daemon=True)
        self._thread.start()

    def _work(self, rng: np.random.Generator, stop: threading.Event, free: queue.Queue,
              ready: queue.Queue) -> None:
        try:
            while not stop.is_set():
                try:
                    slot = free.get(timeout=0.05)
                except queue.Empty:
                    continue
                if slot.event is not None:
                    slot.event.synchronize()  # the copy out of this buffer is done
                self.reader.sample(self.batch_size, rng, out=slot.host)
                ready.put((slot, rng.bit_generator.state))
        except BaseException as e:  # noqa: BLE001 - handed to the training thread
            ready.put(_Failure(e))

    def _halt(self) -> None:
        if self._thread is not None:
            self._stop.set()
            self._thread.join()
            self._thread = None

    # -- the feed
    def set_limit(self, limit: int) -> None:
        self._halt()  # batches sampled ahead from the old prefix are dropped; the generator is not
        self.reader.extend(limit)
        self._start()

    def next(self) -> Batch:
        if self._thread is None:
            self._start()
        item = self._ready.get()
        if isinstance(item, _Failure):
            self._halt()
            raise item.error
        slot, state = item
        t = slot.tensors
        dev = self.device

        def move(x: torch.Tensor, dtype: torch.dtype | None = None) -> torch.Tensor:
            y = x.to(dev, non_blocking=self.pin) if dev.type != "cpu" else x.clone()
            return y if dtype is None else y.to(dtype)

        f32 = torch.float32
        batch = Batch(move(t.logic_state), move(t.neural_state), move(t.action), move(t.reward, f32),
                      move(t.next_logic_state), move(t.next_neural_state), move(t.terminated, f32),
                      move(t.truncated, f32), move(t.life_lost, f32))
        if dev.type == "cuda":
            slot.event = torch.cuda.Event()
            slot.event.record()
        self._free.put(slot)
        self.rng.bit_generator.state = state
        return batch

    def close(self) -> None:
        self._halt()
