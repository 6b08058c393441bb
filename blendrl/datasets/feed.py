"""Minibatches on the training device, at the device's speed.

Four feeds give the same minibatches for the same generator (the positions come from
:meth:`DatasetReader.draw`, so a run's batches do not depend on where the data lives):

* :class:`DirectFeed` -- the reader samples in the training thread, the batch is copied to the
  device (CPU training);
* :class:`DevicePool` -- the prefix's pools and tables are kept on the device (frames as uint8)
  and stacks are gathered there: no host work per step but drawing the positions;
* :class:`PrefetchFeed` -- the host feed: the training thread draws each batch's positions in
  order, ``workers`` background threads gather batches ahead into (pinned) host buffers (numpy's
  gathers release the GIL), copied to the device without blocking, in order; the generator the
  caller holds is advanced only by the batches consumed, so a checkpoint and ``--resume`` see
  exactly the batches trained on, whatever the number of workers;
* :class:`AutoFeed` -- ``--dataset_device auto`` on CUDA: per interval, a :class:`DevicePool`
  while the prefix fits on the device with headroom, else the host feed.

Jobs sharing a GPU claim the device memory they mean to hold (:class:`DeviceClaims`: a claims
file per GPU under an ``fcntl`` lock; dead jobs' claims are dropped), so two jobs started
together cannot both count on the same free memory.

CUDA work happens on the training device only: every event is created and recorded on that
device's current stream (the stream its copies run on) and waited for under that device
(:class:`CudaSync`), so ``--device cuda:1`` never touches GPU 0.

:func:`choose_dataset_device` decides between a device pool and host sampling for one prefix.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import queue
import re
import socket
import sys
import threading
import time
from pathlib import Path
from typing import Any, Callable, Iterator, NamedTuple, Protocol, Sequence

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
MAX_DEFAULT_WORKERS = 8
CLAIMS_DIR_ENV = "BLENDRL_GPU_CLAIMS_DIR"
"""Folder of the per-GPU claims files (default: ``/tmp/blendrl-gpu-claims-$UID``: one node's
GPUs, one user's jobs; set it where a batch system gives each job its own ``/tmp``)."""


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


# --------------------------------------------------------------------------- CUDA, one device


class CudaSync:
    """How the feeds know that a non-blocking copy to ``device`` is done, touching that device
    only: an event created under ``device`` and recorded on its current stream (where the copies
    to it are queued; a bare ``torch.cuda.Event().record()`` records on the *current* device's
    stream -- GPU 0's when training on ``cuda:1`` -- which neither orders after the copy nor
    leaves GPU 0 alone), and waited for under ``device``.

    ``stream_of``, ``new_event`` and ``guard`` are ``torch.cuda.current_stream``,
    ``torch.cuda.Event`` and ``torch.cuda.device`` (tests give fakes).
    """

    def __init__(self, device: torch.device, stream_of: Callable[[Any], Any] | None = None,
                 new_event: Callable[[], Any] | None = None, guard: Callable[[Any], Any] | None = None):
        self.device = device
        self.stream_of = stream_of or torch.cuda.current_stream
        self.new_event = new_event or torch.cuda.Event
        self.guard = guard or torch.cuda.device

    def copies_done(self) -> Any:
        """An event that completes once everything queued so far on the device's current stream
        (the copies just issued) is done."""
        with self.guard(self.device):
            event = self.new_event()
            event.record(self.stream_of(self.device))
        return event

    def wait(self, event: Any) -> None:
        """Block this thread until ``event`` completed."""
        with self.guard(self.device):
            event.synchronize()

    def scope(self) -> Any:
        """``device`` as this thread's current CUDA device (a background thread's is GPU 0)."""
        return self.guard(self.device)


def _sync_for(device: torch.device) -> CudaSync | None:
    """The training device's :class:`CudaSync` (an indexed device: a background thread's
    "current device" is not the training thread's), None on CPU."""
    if device.type != "cuda":
        return None
    if device.index is None:
        device = torch.device("cuda", torch.cuda.current_device())
    return CudaSync(device)


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


# --------------------------------------------------------------------------- claims


def default_claims_dir() -> Path:
    """``$BLENDRL_GPU_CLAIMS_DIR``, else ``/tmp/blendrl-gpu-claims-$UID`` (not ``$TMPDIR``, which
    a batch system may make per job: the jobs sharing a GPU must share the folder)."""
    env = os.environ.get(CLAIMS_DIR_ENV)
    return Path(env) if env else Path("/tmp") / f"blendrl-gpu-claims-{os.getuid()}"


def gpu_key(device: torch.device) -> str:
    """A file name for the physical GPU ``device`` is, the same whatever ``CUDA_VISIBLE_DEVICES``
    a job has: its UUID (else this host and its PCI bus, else its index)."""
    props = torch.cuda.get_device_properties(device)
    ident = getattr(props, "uuid", None)
    if ident is None:
        bus = getattr(props, "pci_bus_id", None)
        ident = f"{socket.gethostname()}-pci{bus}" if bus is not None else \
            f"{socket.gethostname()}-cuda{torch.device(device).index or 0}"
    return "gpu-" + re.sub(r"[^A-Za-z0-9_.-]", "_", str(ident))


def _process_start(pid: int) -> str | None:
    """The start time of process ``pid`` (clock ticks since boot; Linux), to tell a reused pid."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = text.rsplit(")", 1)[-1].split()
    return fields[19] if len(fields) > 19 else None


def process_alive(pid: int, start: str | None) -> bool:
    """Whether ``pid`` is the process that made a claim (started at ``start``)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    if start is not None:
        now = _process_start(pid)
        if now is not None and now != start:
            return False  # the pid was reused
    return True


class Room(NamedTuple):
    """A device's memory as one claim saw it (bytes)."""

    free: int
    total: int
    keep: int
    """headroom kept for this job's training (:func:`headroom_bytes`)"""
    held: int
    """claimed by live jobs (in practice the others: a job holds one claim at a time) and not
    yet reflected in ``free``: the pools not allocated yet, and the jobs' headroom"""


class Claim:
    """One job's claim of device memory (``bytes`` for its data, ``reserve`` for its training)
    in a :class:`DeviceClaims` file; :meth:`release` (idempotent) gives it back."""

    def __init__(self, owner: "DeviceClaims | None", ident: str, nbytes: int, reserve: int, index: int = 0):
        self.owner, self.ident, self.bytes, self.reserve, self.index = owner, ident, nbytes, reserve, index
        self.released = False

    def allocated(self) -> None:
        """The claimed bytes are allocated now (other jobs see them in the free memory)."""
        if self.owner is not None and not self.released:
            self.owner._update(self.ident, allocated=True)

    def release(self) -> None:
        if self.owner is not None and not self.released:
            self.owner._update(self.ident, remove=True)
        self.released = True


class DeviceClaims:
    """Claims of one GPU's memory by the jobs sharing it: a JSON file per GPU in ``directory``,
    read and rewritten under an ``fcntl`` lock, one entry per claim (pid, its start time, host,
    bytes, reserve, allocated).

    A new claim of ``need`` bytes is granted when ``need + keep + held <= free``: ``free`` the
    device's free memory now, ``keep`` this job's headroom, ``held`` what other live jobs claimed
    and ``free`` does not show yet (their pools until allocated, their headroom until released).
    Claims of processes that are gone (or whose pid was reused) are dropped when the file is read.
    ``free_total`` gives (free, total) bytes (``torch.cuda.mem_get_info`` of the device; tests
    give a fake); ``pid`` and ``alive`` let tests play several jobs in one process.
    """

    def __init__(self, key: str, free_total: Callable[[], tuple[int, int]], directory: Path | None = None,
                 pid: int | None = None, alive: Callable[[int, str | None], bool] = process_alive):
        self.key = key
        self.free_total = free_total
        self.directory = Path(directory) if directory is not None else default_claims_dir()
        self.pid = os.getpid() if pid is None else pid
        self.alive = alive
        self._start = _process_start(self.pid)
        self._host = socket.gethostname()
        self._n = 0
        self._warned = False

    @classmethod
    def for_device(cls, device: torch.device, directory: Path | None = None) -> "DeviceClaims":
        return cls(gpu_key(device), lambda: torch.cuda.mem_get_info(device), directory)

    @property
    def path(self) -> Path:
        return self.directory / f"{self.key}.json"

    @contextlib.contextmanager
    def _locked(self) -> Iterator[dict[str, dict]]:
        """The live claims, under the lock; written back (atomically) when the block ends."""
        self.directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        with open(self.directory / f"{self.key}.lock", "a+") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                claims = self._read()
                before = dict(claims)
                for ident, c in list(claims.items()):
                    if c.get("host") == self._host and not self.alive(int(c["pid"]), c.get("start")):
                        del claims[ident]
                yield claims
                if claims != before:
                    tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}.tmp")
                    tmp.write_text(json.dumps(claims, indent=1, sort_keys=True))
                    os.replace(tmp, self.path)
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)

    def _read(self) -> dict[str, dict]:
        try:
            data = json.loads(self.path.read_text())
        except FileNotFoundError:
            return {}
        except (OSError, ValueError):
            return {}  # written atomically: only a hand-edited file can be broken; start afresh
        if not isinstance(data, dict):
            return {}
        return {k: v for k, v in data.items() if isinstance(v, dict) and isinstance(v.get("pid"), int)
                and isinstance(v.get("bytes"), int) and isinstance(v.get("reserve"), int)}

    @staticmethod
    def _held(claims: dict[str, dict]) -> int:
        """What the live claims hold that the free memory does not show (this job's own other
        claims too: a job normally holds one at a time)."""
        return sum((0 if c.get("allocated") else c["bytes"]) + c["reserve"] for c in claims.values())

    def room(self) -> Room:
        """The device's memory now, as a claim would see it."""
        try:
            with self._locked() as claims:
                held = self._held(claims)
        except OSError as e:
            self._warn(e)
            held = 0
        free, total = self.free_total()
        return Room(int(free), int(total), headroom_bytes(int(total)), held)

    def claim(self, needs: Sequence[int]) -> tuple[Claim | None, Room]:
        """Claim the first of ``needs`` (bytes) that fits next to the other jobs' claims; the
        claim (its ``index`` in ``needs``) or None, and the room it saw."""
        try:
            with self._locked() as claims:
                room = self._decide(claims, needs)
                if room[0] is None:
                    return None, room[1]
                index, r = room
                self._n += 1
                ident = f"{self._host}:{self.pid}:{self._n}"
                claims[ident] = {"pid": self.pid, "start": self._start, "host": self._host,
                                 "bytes": int(needs[index]), "reserve": r.keep, "allocated": False,
                                 "time": time.time()}
                return Claim(self, ident, int(needs[index]), r.keep, index), r
        except OSError as e:  # no claims folder: decide from the free memory alone
            self._warn(e)
            index, r = self._decide({}, needs)
            return (None if index is None else Claim(None, "", int(needs[index]), r.keep, index)), r

    def _decide(self, claims: dict[str, dict], needs: Sequence[int]) -> tuple[int | None, Room]:
        free, total = self.free_total()
        r = Room(int(free), int(total), headroom_bytes(int(total)), self._held(claims))
        for i, need in enumerate(needs):
            if need + r.keep + r.held <= r.free:
                return i, r
        return None, r

    def _update(self, ident: str, allocated: bool = False, remove: bool = False) -> None:
        try:
            with self._locked() as claims:
                if ident not in claims:
                    return
                if remove:
                    del claims[ident]
                elif allocated:
                    claims[ident] = {**claims[ident], "allocated": True}
        except OSError as e:
            self._warn(e)

    def _warn(self, e: OSError) -> None:
        if not self._warned:
            self._warned = True
            print(f"warning: GPU memory claims unavailable ({e}); deciding from the free memory "
                  f"alone (set {CLAIMS_DIR_ENV} to a writable folder)", file=sys.stderr, flush=True)


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
        self.sync = sync if sync is not None else _sync_for(device)
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
                                  dtype=_torch_dtype(lay.neural_dtype), **t)
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


def _torch_dtype(dt: np.dtype) -> torch.dtype:
    return torch.from_numpy(np.empty(0, dt)).dtype


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
            t = torch.empty(shape, dtype=_torch_dtype(dtype), pin_memory=pin)
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
        self.sync = sync if sync is not None else _sync_for(device)
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
