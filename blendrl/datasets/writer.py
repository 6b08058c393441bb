"""``DatasetWriter``: appends an online run's transitions, chunk by chunk, crash-safe and exactly
resumable (``resume_at``)."""

from __future__ import annotations

import fcntl
import json
import os
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from blendrl.file_io import atomic_write_json, now_iso
from blendrl.datasets.chunks import ChunkEncoder, chunk_steps, open_chunk, write_chunk
from blendrl.datasets.layout import (DATA_FILE_RE, FORMAT_VERSION, LOCK_NAME, MANIFEST_NAME, TMP_RE,
                                     DatasetError, make_layout)
from blendrl.datasets.manifest import files_of, has_life_lost, read_manifest


class DatasetWriter:
    """Appends the transitions of an online run, one environment step of all copies at a time.

    ``chunk_size`` transitions (rounded up to whole steps) make a chunk. A new (missing or empty)
    ``directory`` starts a dataset; an existing dataset is only continued with ``resume_at``
    (the transition count to continue at, e.g. the checkpoint's); anything beyond it is dropped.
    Only one writer may hold a dataset at a time (an advisory lock, released if the process dies).
    ``metadata`` (JSON-serialisable) is stored in the manifest; when resuming it updates the
    stored one key by key. ``life_lost``: whether every step will record ``life_lost`` (a game
    with lives), stated in the manifest from the moment it is opened, so that a reader of the
    still-empty dataset (a follower) sees what it will record; None leaves that to the first
    :meth:`add`.
    """

    def __init__(self, directory: str | os.PathLike, *, env: str, num_envs: int,
                 logic_shape: tuple, neural_shape: tuple, neural_dtype: Any, n_actions: int,
                 chunk_size: int = 50_000, metadata: dict | None = None,
                 resume_at: int | None = None, life_lost: bool | None = None):
        self._stated_life_lost = life_lost
        self._layout = make_layout(env, num_envs, logic_shape, neural_shape, neural_dtype, n_actions)
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
        self._encoder: ChunkEncoder | None = None
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
                   if p.name != LOCK_NAME and not TMP_RE.match(p.name)]
        if foreign:
            raise DatasetError(f"{self.directory}: not empty and not a dataset (holds {sorted(foreign)[:5]})")
        self._remove_strays(referenced=set())
        now = now_iso()
        self._manifest: dict[str, Any] = {
            "format_version": FORMAT_VERSION,
            **self._layout.manifest_fields(),
            "has_life_lost": bool(self._stated_life_lost),
            "chunk_rows": self._rows_per_chunk,
            "chunks": [],
            "count": 0,
            "marks": [],
            "metadata": dict(metadata or {}),
            "writer_finished": False,
            "created_at": now,
            "updated_at": now,
        }
        self._marks: list[int] = []
        self._life_lost: bool | None = self._stated_life_lost  # else decided by the first add
        atomic_write_json(self.directory / MANIFEST_NAME, self._manifest, durable=True)

    def _open_existing(self, resume_at: int | None, metadata: dict | None) -> None:
        m = read_manifest(self.directory)
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
        self._life_lost = has_life_lost(m) if resume_at > 0 else self._stated_life_lost
        m["format_version"] = FORMAT_VERSION  # chunks of format 1 stay readable as they are
        m["has_life_lost"] = bool(self._life_lost)
        m["chunk_rows"] = self._rows_per_chunk
        m["writer_finished"] = False  # until this writer's finish()
        m.pop("writer_stopped", None)  # a failed run's note: this writer goes on
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
            chunk = open_chunk(self.directory, old, lay, bool(self._life_lost))
            enc = ChunkEncoder(lay, old["start"], at - old["start"], bool(self._life_lost))
            for step in chunk_steps(chunk, at - old["start"]):
                *arrays, life_lost = (np.ascontiguousarray(a) for a in step)
                enc.add_step(*arrays, life_lost if self._life_lost else None)
            keep.append(write_chunk(self.directory, enc))
        m["chunks"] = keep
        m["count"] = at
        m["marks"] = list(self._marks)
        self._write_manifest()
        self._remove_strays(referenced=files_of(keep))

    def _remove_strays(self, referenced: set[str]) -> None:
        """Delete temp files and chunk files that the manifest does not list (never anything else)."""
        for p in self.directory.iterdir():
            if TMP_RE.match(p.name) or (DATA_FILE_RE.match(p.name) and p.name not in referenced):
                p.unlink(missing_ok=True)

    @staticmethod
    def active(directory: str | os.PathLike) -> bool:
        """Whether a live process holds the dataset's writer lock (an online run writing it now).
        False where there is no lock file or the file system has no flock."""
        path = Path(directory) / LOCK_NAME
        try:
            fd = os.open(path, os.O_RDONLY)
        except OSError:
            return False
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        except OSError:
            return False
        finally:
            os.close(fd)  # also releases the shared lock taken to ask
        return False

    @staticmethod
    def remove(directory: str | os.PathLike) -> None:
        """Delete a dataset (its manifest, chunks, temp and lock files; the folder if then empty).

        Refuses a folder that holds other files but no manifest, and a dataset a writer holds.
        """
        d = Path(directory)
        if not d.exists():
            return
        ours = [p for p in d.iterdir() if p.name in (MANIFEST_NAME, LOCK_NAME)
                or DATA_FILE_RE.match(p.name) or TMP_RE.match(p.name)]
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
            self._encoder = ChunkEncoder(lay, self._manifest["count"], self._rows_per_chunk, self._life_lost)
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

    def finish(self) -> None:
        """The online run has ended: flush, record in the manifest that the dataset is complete
        (``writer_finished``: offline jobs refuse a dataset without it, see
        :func:`~blendrl.datasets.manifest.writer_finished`), then close. Not called on an
        interruption: ``close()`` alone leaves the dataset marked unfinished."""
        if self._closed:
            raise DatasetError(f"{self.directory}: finish() on a closed writer")
        self.flush()
        self._manifest["writer_finished"] = True
        self._write_manifest()
        self.close()

    def stop(self, why: str) -> None:
        """The online run failed: flush what it wrote, record ``why`` in the manifest
        (``writer_stopped``: a follower then ends at once with the marks present instead of
        waiting for marks that will not come) and close. The next writer to open the dataset
        (a resume) removes it. Idempotent; a failure to write is left to the caller's error."""
        if self._closed:
            return
        try:
            self.flush()
            self._manifest["writer_stopped"] = why
            self._write_manifest()
        finally:
            self.close()

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

    def _write_chunk(self) -> None:
        assert self._encoder is not None
        entry = write_chunk(self.directory, self._encoder)
        self._manifest["chunks"].append(entry)
        self._manifest["count"] += entry["count"]
        self._manifest["has_life_lost"] = bool(self._life_lost)
        self._encoder = None
        self._write_manifest()

    def _write_manifest(self) -> None:
        m = self._manifest
        m["marks"] = [x for x in self._marks if x <= m["count"]]
        m["updated_at"] = now_iso()
        atomic_write_json(self.directory / MANIFEST_NAME, m, durable=True)
        self._marks_dirty = len(m["marks"]) != len(self._marks)
