"""GPU memory claims: jobs sharing a GPU claim the device memory they mean to hold
(:class:`DeviceClaims`: a claims file per GPU under an ``fcntl`` lock; dead jobs' claims are
dropped), so two jobs started together cannot both count on the same free memory. Each job keeps
:func:`headroom_bytes` free for its training.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import re
import socket
import sys
import time
from pathlib import Path
from typing import Callable, Iterator, NamedTuple, Sequence

import torch

CLAIMS_DIR_ENV = "BLENDRL_GPU_CLAIMS_DIR"
"""Folder of the per-GPU claims files (default: ``/tmp/blendrl-gpu-claims-$UID``: one node's
GPUs, one user's jobs; set it where a batch system gives each job its own ``/tmp``)."""


def headroom_bytes(total: int) -> int:
    """Device memory left free for the networks, optimisers and activations: 15% of the device,
    at least 4 GiB."""
    return max(4 << 30, int(0.15 * total))


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
