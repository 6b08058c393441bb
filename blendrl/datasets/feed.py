"""Minibatches on the training device, at the device's speed.

Four feeds give the same minibatches for the same generator (the positions come from
:meth:`DatasetReader.draw`, so a run's batches do not depend on where the data lives):

* :class:`DirectFeed` -- the reader samples in the training thread, the batch is copied to the
  device (CPU training);
* :class:`~blendrl.datasets.device_pool.DevicePool` -- the prefix's pools and tables are kept on
  the device (frames as uint8) and stacks are gathered there: no host work per step but drawing
  the positions;
* :class:`PrefetchFeed` -- the host feed: the training thread draws each batch's positions in
  order, ``workers`` background threads gather batches ahead into (pinned) host buffers (numpy's
  gathers release the GIL), copied to the device without blocking, in order; the generator the
  caller holds is advanced only by the batches consumed, so a checkpoint and ``--resume`` see
  exactly the batches trained on, whatever the number of workers;
* :class:`AutoFeed` -- ``--dataset_device auto`` on CUDA: per interval, a device pool while the
  prefix fits on the device with headroom, else the host feed.

Jobs sharing a GPU claim the device memory they mean to hold
(:class:`~blendrl.datasets.claims.DeviceClaims`), so two jobs started together cannot both count
on the same free memory. CUDA work happens on the training device only
(:class:`~blendrl.datasets.cuda_sync.CudaSync`).

:func:`choose_dataset_device` decides between a device pool and host sampling for one prefix.
"""

from __future__ import annotations

import contextlib
import queue
import threading
from typing import Any, Callable, Protocol, Sequence

import numpy as np
import torch

from blendrl.datasets.claims import Claim, DeviceClaims, headroom_bytes
from blendrl.datasets.cuda_sync import CudaSync, sync_for
from blendrl.datasets.device_pool import DevicePool, device_bytes_needed, torch_dtype
from blendrl.datasets.reader import Batch, DatasetReader, empty_batch

DATASET_DEVICES = ("auto", "cpu", "cuda")
MAX_DEFAULT_WORKERS = 8


class Feed(Protocol):
    """What the offline loop draws its minibatches from."""

    def set_limit(self, limit: int) -> None:
        """Sample from the first ``limit`` transitions from now on (opening what that adds)."""

    def next(self) -> Batch:
        """The next minibatch, as torch tensors on the training device (``Batch.to_torch`` dtypes)."""

    def close(self) -> None:
        """Stop any background work (and give back what it holds on the device)."""


class DatasetDeviceError(ValueError):
    """``--dataset_device`` cannot be honoured (no CUDA, or the data does not fit)."""


def default_feed_workers() -> int:
    """Sampling threads of the host feed: the job's CPUs but one (the training thread's), at
    least 1, at most :data:`MAX_DEFAULT_WORKERS`."""
    from blendrl.machine import default_threads

    return max(1, min(default_threads(True) - 1, MAX_DEFAULT_WORKERS))


# --------------------------------------------------------------------------- choosing


def _gib(n: int) -> str:
    return f"{n / 2**30:.1f} GiB"


def shortfall_message(device: torch.device, need: int, free: int, keep: int, held: int = 0) -> str:
    """Why ``need`` bytes do not fit on ``device``."""
    text = f"the dataset prefix needs {_gib(need)} on {device}, which has {_gib(free)} free (keeping {_gib(keep)} for training"
    if held:
        text += f"; {_gib(held)} claimed by other jobs on this GPU"
    return text + ")"


def choose_dataset_device(choice: str, device: torch.device, need: int,
                          free_total: tuple[int, int] | None = None, held: int = 0) -> str:
    """Where one prefix lives for training on ``device``: ``"cuda"`` (a :class:`DevicePool`) or
    ``"cpu"`` (host sampling). ``auto`` keeps it on the device when ``need`` bytes fit in the
    free memory with :func:`headroom_bytes` to spare (and ``held`` bytes that other jobs claimed,
    :class:`DeviceClaims`); a forced ``cuda`` that cannot be honoured is a
    :class:`DatasetDeviceError` (asked before any work). ``free_total`` (free, total bytes)
    replaces the device's own figures (tests). An offline run's ``auto`` decides per interval
    (:class:`AutoFeed`)."""
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
    if need + keep + held <= free:
        return "cuda"
    if choice == "cuda":
        raise DatasetDeviceError(f"--dataset_device cuda: {shortfall_message(device, need, free, keep, held)}; "
                                 "use --dataset_device cpu or auto")
    return "cpu"


# --------------------------------------------------------------------------- making a feed


def make_feed(reader: Any, device: torch.device, dataset_device: str, batch_size: int,
              rng: np.random.Generator, capacity: int, workers: int | None = None,
              limits: Sequence[int] | None = None, claim: Claim | None = None,
              claims: DeviceClaims | None = None, say: Callable[[str], None] | None = None) -> Feed:
    """The feed for training on ``device`` with the data on ``dataset_device``: ``"cuda"`` (a
    :class:`DevicePool` of ``capacity`` transitions; ``claim``, when given, is marked allocated),
    ``"cpu"`` (the host feed with ``workers`` sampling threads on CUDA, the direct feed on CPU) or
    ``"auto"`` (:class:`AutoFeed` over the data ``limits`` still to train, claiming through
    ``claims``)."""
    if dataset_device == "cuda":
        pool = DevicePool(reader, device, batch_size, rng, capacity)
        if claim is not None:
            claim.allocated()
        return pool
    if device.type != "cuda" or not isinstance(reader, DatasetReader):
        return DirectFeed(reader, device, batch_size, rng)
    if dataset_device == "auto":
        return AutoFeed(reader, device, batch_size, rng, list(limits or [capacity]), workers,
                        claims if claims is not None else DeviceClaims.for_device(device), say)
    return PrefetchFeed(reader, device, batch_size, rng, workers=workers)


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


# --------------------------------------------------------------------------- the host feed


class _Slot:
    """One host batch a worker fills and the training thread copies from: the reader's batch
    (``host``) and, converted by the worker, its reward and flags as float32 rows of one tensor
    (``flags``: reward, terminated, truncated, life_lost), so that the training thread copies
    six tensors and converts none."""

    FLAGS = ("reward", "terminated", "truncated", "life_lost")

    def __init__(self, layout: Any, batch_size: int, pin: bool):
        tensors: list[torch.Tensor] = []

        def alloc(shape: tuple[int, ...], dtype: np.dtype) -> np.ndarray:
            t = torch.empty(shape, dtype=torch_dtype(dtype), pin_memory=pin)
            tensors.append(t)
            return t.numpy()

        self.host = empty_batch(layout, batch_size, alloc)
        self.tensors = Batch(*tensors)
        self.flags = torch.empty((len(self.FLAGS), batch_size), dtype=torch.float32, pin_memory=pin)
        self.event: Any = None

    def convert(self) -> None:
        """The flags' float32 rows from the batch just gathered (``Batch.to_torch``'s values)."""
        rows = self.flags.numpy()
        for i, name in enumerate(self.FLAGS):
            np.copyto(rows[i], getattr(self.host, name), casting="unsafe")

    def batch(self, move: Callable[[torch.Tensor], torch.Tensor]) -> Batch:
        t = self.tensors
        f = move(self.flags)
        return Batch(move(t.logic_state), move(t.neural_state), move(t.action), f[0],
                     move(t.next_logic_state), move(t.next_neural_state), f[1], f[2], f[3])


class _Failure:
    def __init__(self, error: BaseException):
        self.error = error


class PrefetchFeed:
    """The host feed: ``workers`` background threads gather batches ahead into host buffers
    (pinned on CUDA), each copied to the device without blocking.

    Determinism: the training thread alone draws the positions, batch after batch, from its own
    copy of the generator (:meth:`DatasetReader.draw`); a worker is handed the generator state
    before its batch's draw and gathers exactly those positions (``reader.sample`` from that
    state), and the batches are handed out in the order drawn. Each batch carries the state
    after its draw, which :meth:`next` sets the caller's generator to. So the caller's generator
    is always where it would be after sampling the consumed batches in its own thread, and the
    batches are exactly :class:`DirectFeed`'s whatever ``workers`` is. A worker's error is raised
    by the :meth:`next` of its batch.

    A buffer is filled again only once the copy out of it is done (:class:`CudaSync`). On a CPU
    ``device`` without ``sync`` the buffers themselves are handed out (no copy; a batch stays
    valid until the next-but-one :meth:`next`, as :class:`DirectFeed`'s).
    """

    def __init__(self, reader: Any, device: torch.device, batch_size: int, rng: np.random.Generator,
                 depth: int | None = None, pin: bool | None = None, workers: int | None = None,
                 sync: CudaSync | None = None):
        self.reader, self.device, self.batch_size, self.rng = reader, device, batch_size, rng
        self.pin = device.type == "cuda" if pin is None else pin
        self.workers = default_feed_workers() if workers is None else int(workers)
        if self.workers < 1:
            raise ValueError(f"PrefetchFeed: workers must be >= 1, got {workers}")
        self.sync = sync if sync is not None else sync_for(device)
        self._handoff = self.sync is None and device.type == "cpu"
        held = 2 if self._handoff else 0
        self.depth = max(held + 1, depth if depth is not None else 2 * self.workers + held)
        self._slots: list[_Slot] | None = None
        self._threads: list[threading.Thread] = []
        self._held: list[_Slot] = []  # handed out, not to be refilled yet (CPU hand-off)

    # -- the workers
    def _start(self) -> None:
        if self._slots is None:
            with self.sync.scope() if self.sync is not None else contextlib.nullcontext():
                self._slots = [_Slot(self.reader.layout, self.batch_size, self.pin) for _ in range(self.depth)]
        self._tasks: queue.SimpleQueue = queue.SimpleQueue()
        self._done: dict[int, Any] = {}
        self._cond = threading.Condition()
        self._stop = threading.Event()
        self._draw_rng = np.random.Generator(type(self.rng.bit_generator)())
        self._draw_rng.bit_generator.state = self.rng.bit_generator.state
        self._issued = self._taken = 0
        self._threads = [threading.Thread(target=self._work, name=f"dataset-feed-{i}", daemon=True,
                                          args=(self._stop, self._tasks, self._done, self._cond))
                         for i in range(self.workers)]
        for t in self._threads:
            t.start()
        for slot in self._slots:
            if not any(slot is h for h in self._held):
                self._issue(slot)

    def _issue(self, slot: _Slot) -> None:
        """Draw the next batch's positions (advancing the drawing generator) and queue its gather."""
        before = self._draw_rng.bit_generator.state
        self.reader.draw(self.batch_size, self._draw_rng)
        self._tasks.put((self._issued, slot, before, self._draw_rng.bit_generator.state))
        self._issued += 1

    def _work(self, stop: threading.Event, tasks: queue.SimpleQueue, done: dict[int, Any],
              cond: threading.Condition) -> None:
        rng = np.random.Generator(type(self.rng.bit_generator)())
        with self.sync.scope() if self.sync is not None else contextlib.nullcontext():
            while True:
                task = tasks.get()
                if task is None or stop.is_set():
                    return
                seq, slot, before, after = task
                try:
                    if slot.event is not None:
                        self.sync.wait(slot.event)  # the copy out of this buffer is done
                    rng.bit_generator.state = before
                    self.reader.sample(self.batch_size, rng, out=slot.host)
                    slot.convert()
                    item: Any = (slot, after)
                except BaseException as e:  # noqa: BLE001 - raised by the next() of this batch
                    item = _Failure(e)
                with cond:
                    done[seq] = item
                    cond.notify_all()

    def _halt(self) -> None:
        if self._threads:
            self._stop.set()
            for _ in self._threads:
                self._tasks.put(None)
            for t in self._threads:
                t.join()
            self._threads = []

    # -- the feed
    def set_limit(self, limit: int) -> None:
        self._halt()  # batches gathered ahead from the old prefix are dropped; the generator is not
        self.reader.extend(limit)
        self._start()

    def next(self) -> Batch:
        if not self._threads:
            self._start()
        seq = self._taken
        with self._cond:
            while seq not in self._done:
                self._cond.wait()
            item = self._done.pop(seq)
        if isinstance(item, _Failure):
            self._halt()
            raise item.error
        self._taken += 1
        slot, state = item
        if self._handoff:
            batch = slot.batch(lambda x: x)
            self._held.append(slot)
            if len(self._held) > 2:
                self._issue(self._held.pop(0))
        else:
            dev, pin = self.device, self.pin
            batch = slot.batch(lambda x: x.to(dev, non_blocking=pin) if dev.type != "cpu" else x.clone())
            if self.sync is not None:
                slot.event = self.sync.copies_done()
            self._issue(slot)
        self.rng.bit_generator.state = state
        return batch

    def close(self) -> None:
        self._halt()


# --------------------------------------------------------------------------- auto, per interval


class AutoFeed:
    """``--dataset_device auto`` on CUDA, decided per interval: a :class:`DevicePool` while the
    prefix fits on the device (with headroom, next to what other jobs on the GPU claimed:
    :class:`DeviceClaims`), else the host feed (:class:`PrefetchFeed`).

    A pool is sized for the largest of the ``limits`` still to come that fits when it is made,
    so it is filled chunk by chunk as the intervals grow; an interval beyond it gives the pool
    back (and its claim) and decides again: another, larger pool if the device now has the room,
    else the host feed, which each later interval checks again. All feeds draw the same
    positions from the same generator, so the batches and the generator's states are those of
    :class:`DirectFeed` whichever feed serves an interval. ``say`` reports each change.
    """

    def __init__(self, reader: DatasetReader, device: torch.device, batch_size: int,
                 rng: np.random.Generator, limits: Sequence[int], workers: int | None,
                 claims: DeviceClaims, say: Callable[[str], None] | None = None,
                 sync: CudaSync | None = None):
        self.reader, self.device, self.batch_size, self.rng = reader, device, batch_size, rng
        self.limits = sorted(set(int(x) for x in limits))
        self.workers, self.claims, self.say = workers, claims, say or (lambda text: None)
        self.sync = sync
        self.current: Any = None
        self.claim: Claim | None = None
        self.history: list[tuple[int, str]] = []
        """(limit, "pool" or "host") of each :meth:`set_limit`"""

    def set_limit(self, limit: int) -> None:
        if isinstance(self.current, DevicePool) and limit <= self.current.capacity:
            self.current.set_limit(limit)
            self.history.append((limit, "pool"))
            return
        was_pool = isinstance(self.current, DevicePool)
        if was_pool:
            self._drop()
        pool = self._pool_for(limit)
        if pool is not None:
            if self.current is not None:
                self.current.close()
            self.current = pool
            self.say(f"data limit {limit}: minibatches gathered on {self.device} from a device pool of "
                     f"{pool.capacity} transitions ({_gib(self.claim.bytes)})")
        elif not isinstance(self.current, PrefetchFeed):
            self.current = PrefetchFeed(self.reader, self.device, self.batch_size, self.rng,
                                        workers=self.workers, sync=self.sync)
            self.say(f"data limit {limit}: minibatches sampled on the host by {self.current.workers} "
                     f"worker(s) ({self._why})")
        self.current.set_limit(limit)
        self.history.append((limit, "pool" if isinstance(self.current, DevicePool) else "host"))

    def _pool_for(self, limit: int) -> DevicePool | None:
        """A pool for the largest upcoming limit that fits (claimed), or None."""
        caps = [x for x in self.limits if x >= limit] or [limit]
        caps = caps[::-1]
        needs = [device_bytes_needed(self.reader.manifest, c) for c in caps]
        claim, room = self.claims.claim(needs)
        if claim is None:
            self._why = (shortfall_message(self.device, needs[-1], room.free, room.keep, room.held)
                         .replace("the dataset prefix", "the prefix"))
            return None
        try:
            pool = DevicePool(self.reader, self.device, self.batch_size, self.rng, caps[claim.index], sync=self.sync)
        except torch.cuda.OutOfMemoryError as e:
            claim.release()
            self._empty_cache()
            self._why = f"allocating the pool failed: {str(e).splitlines()[0]}"
            return None
        claim.allocated()
        self.claim = claim
        return pool

    def _drop(self) -> None:
        self.current.close()
        self.current = None
        if self.claim is not None:
            self.claim.release()
            self.claim = None
        self._empty_cache()

    def _empty_cache(self) -> None:
        if self.device.type == "cuda":
            with torch.cuda.device(self.device):
                torch.cuda.empty_cache()  # the pool's blocks back to the device, seen as free

    def next(self) -> Batch:
        return self.current.next()

    def close(self) -> None:
        if self.current is not None:
            if isinstance(self.current, DevicePool):
                self._drop()
            else:
                self.current.close()
                self.current = None
        if self.claim is not None:
            self.claim.release()
            self.claim = None
