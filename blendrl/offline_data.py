"""The dataset side of an offline run: what its dataset is (read once, from its manifest), whether
its online run has finished it, verifying every chunk before training, the data limits (the
online run's marks: docs/DESIGN.md section 7) and, with ``--follow``, waiting for the dataset and
for each next mark while the online run is still writing.

A mark is *durable* once the manifest lists it (the writer records a mark with the flush of every
transition before it) and the chunks below it have been verified here.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, NamedTuple

import numpy as np

from blendrl.envs import ENV_NAMES, get_spec
from blendrl.exits import DatasetFault, UsageError
from blendrl.lifecycle import say
from blendrl.loop_state import interval_marks

if TYPE_CHECKING:
    from blendrl.offline import OfflineArgs


class DatasetInfo(NamedTuple):
    """What the offline run needs to know of its dataset before training (its manifest, read once)."""

    path: Path
    given: str
    """the path as the user gave it (recorded in run.json)"""
    env: str
    count: int
    marks: list[int]
    metadata: dict
    manifest: dict
    finished: bool
    """the online run that wrote it finished it (``writer_finished`` in the manifest)"""

    @property
    def limits_so_far(self) -> list[int]:
        """The positive marks the manifest lists now (``--follow``: the data limits known yet)."""
        return [m for m in self.marks if m > 0]

    @property
    def planned_transitions(self) -> int:
        """What the online run will have written when it ends (its metadata; else what is there)."""
        return int(self.metadata.get("planned_transitions") or max(self.count, 1))


def check_dataset_choice(args: OfflineArgs) -> None:
    """Exactly one of ``--dataset``, ``--dataset_run_id`` and ``--minari_dataset`` (a complete
    Minari dataset is not followed); a UsageError otherwise."""
    minari_id = getattr(args, "minari_dataset", None)
    if sum(x is not None for x in (args.dataset, args.dataset_run_id, minari_id)) != 1:
        raise UsageError("give exactly one of --dataset DIR, --dataset_run_id ID and "
                         "--minari_dataset ID")
    if minari_id is not None and args.follow:
        raise UsageError("--follow waits for a dataset being written; a Minari dataset "
                         "(--minari_dataset) is complete: drop --follow")


def dataset_path(args: OfflineArgs) -> tuple[Path, str]:
    """The dataset folder (resolved) and the path as given (``--minari_dataset``: the folder it
    is converted into, :func:`blendrl.interop.minari_import.cache_folder`)."""
    minari_id = getattr(args, "minari_dataset", None)
    if minari_id is not None:
        from blendrl.interop.minari_import import cache_folder

        given = cache_folder(args.dataset_dir, minari_id)
    else:
        given = args.dataset if args.dataset is not None else Path(args.dataset_dir) / args.dataset_run_id
    return Path(given).resolve(), str(given)


def inspect_dataset(args: OfflineArgs) -> DatasetInfo:
    """Read the manifest: a missing folder or one that is not a dataset is a UsageError; a
    manifest that is unreadable or malformed is a DatasetFault; an environment that does not fit
    is a UsageError."""
    from blendrl.datasets import MANIFEST_NAME, DatasetError, Layout, read_manifest, writer_finished

    if getattr(args, "minari_dataset", None) is not None:  # checked, converted once (or reused)
        from blendrl.interop.minari_import import import_minari

        import_minari(args.minari_dataset, args.dataset_dir, args.env)
    path, given = dataset_path(args)
    if not path.is_dir():
        raise UsageError(f"dataset {path} does not exist (or is not a folder)")
    if not (path / MANIFEST_NAME).is_file():
        raise UsageError(f"{path} is not a dataset (no {MANIFEST_NAME})")
    try:
        manifest = read_manifest(path)
        fields = Layout.from_manifest(manifest, path).manifest_fields()
    except DatasetError as e:
        raise DatasetFault(str(e)) from e
    if manifest["count"] == 0 and not (args.follow and not writer_finished(manifest)):
        raise UsageError(f"dataset {path} is empty (0 transitions)")
    env = fields["env"]
    if args.env is not None and args.env != env:
        raise UsageError(f"--env {args.env} does not match the dataset {path}, which holds {env!r} "
                         "transitions")
    if env not in ENV_NAMES:
        raise UsageError(f"dataset {path} holds transitions of {env!r}, not a known environment "
                         f"({', '.join(ENV_NAMES)})")
    spec = get_spec(env)
    expected = {"logic_shape": list(spec.logic_shape), "neural_shape": list(spec.neural_shape),
                "neural_dtype": np.dtype(spec.neural_dtype).name, "n_actions": spec.n_actions}
    wrong = [f"{k} {fields[k]} (expected {v})" for k, v in expected.items() if fields[k] != v]
    if wrong:
        raise UsageError(f"dataset {path} does not fit environment {env}: " + "; ".join(wrong))
    return DatasetInfo(path, given, env, int(manifest["count"]), [int(m) for m in manifest["marks"]],
                       dict(manifest.get("metadata", {})), manifest, writer_finished(manifest))


def check_finished(args: OfflineArgs, info: DatasetInfo) -> bool:
    """Whether the run trains on an unfinished dataset (``--partial_dataset``); a dataset whose
    online run has not finished writing it is a UsageError otherwise, and also with the flag
    when it holds no evaluation mark yet."""
    from blendrl.datasets import DatasetWriter

    if info.finished:
        return False
    present = sum(1 for m in info.marks if m > 0)
    planned = info.metadata.get("planned_marks")
    marks = f"{present} of {planned} marks" if planned else f"{present} marks"
    failed = info.manifest.get("writer_stopped")
    state = ("is still being written by its online run" if DatasetWriter.active(info.path) else
             f"was not finished by its online run (it failed: {failed}; resume that run to "
             "complete it)" if failed else
             "was not finished by its online run (it stopped early; resume that run to complete it)")
    if not args.partial_dataset:
        raise UsageError(f"dataset {info.path} {state}: {marks} present ({info.count} transitions); "
                         "wait for it to be finished, or pass --partial_dataset to train on the "
                         "marks present (the run is then recorded as partial)")
    if present == 0:
        raise UsageError(f"dataset {info.path} {state} and holds no evaluation mark yet: nothing "
                         "to train on")
    print(f"warning: dataset {info.path} {state}; --partial_dataset: training on the {marks} "
          "present (recorded as partial)", file=sys.stderr, flush=True)
    return True


def verify_dataset(info: DatasetInfo, limits: list[int], run_id: str, every: float,
                   workers: int) -> None:
    """Check, before any training, every chunk the run can train on (every chunk of a finished
    dataset; those below the last data limit of an unfinished one): sizes, CRC-32 and finite
    floats (:func:`blendrl.datasets.verify_chunks`, ``workers`` chunks at a time). A fault is a
    DatasetFault naming the file."""
    from blendrl.datasets import DatasetError, verify_chunks
    from blendrl.datasets.manifest import chunks_below

    entries = info.manifest["chunks"] if info.finished else chunks_below(info.manifest, limits[-1])
    t0 = last = time.perf_counter()

    def progress(done: int, total: int, nbytes: int) -> None:
        nonlocal last
        if time.perf_counter() - last >= every and done < total:
            last = time.perf_counter()
            print(f"[{run_id}] verifying the dataset: chunk {done}/{total} ({nbytes / 1e6:.0f} MB)",
                  file=sys.stderr, flush=True)

    try:
        nbytes = verify_chunks(info.path, info.manifest, entries, progress, workers=workers)
    except DatasetError as e:
        raise DatasetFault(f"{e}; nothing was trained on it (`python dataset_utils.py verify "
                           f"{info.path}` lists every problem)") from e
    dt = time.perf_counter() - t0
    print(f"[{run_id}] dataset verified: {len(entries)} chunks, {nbytes / 1e6:.1f} MB in {dt:.1f} s "
          f"({nbytes / 1e6 / max(dt, 1e-9):.0f} MB/s)", file=sys.stderr, flush=True)


def default_reader(path: Path, limit: int, manifest: dict) -> Any:
    """The first interval's reader: a ``DatasetReader`` on the manifest the job has read (the
    dataset is opened once; its chunks were verified before)."""
    from blendrl.datasets import DatasetReader

    return DatasetReader(path, limit, manifest=manifest)


def data_limits(info: DatasetInfo, intervals: int) -> list[int]:
    """The dataset's marks (positive ones), or ``intervals`` evenly spaced limits if it has none."""
    marks = [m for m in info.marks if m > 0]
    return marks if marks else interval_marks(info.count, min(intervals, info.count))


def dataset_source(info: DatasetInfo) -> dict:
    """run.json's ``dataset_source`` of an offline run (the online method from the manifest)."""
    return {"role": "read", "path": info.given, "run_id": info.metadata.get("run_id", info.path.name),
            "method": info.metadata.get("method")}




# --------------------------------------------------------------------------- --follow


def wait_for_dataset(path: Path, timeout: float, poll: float, run_id: str) -> None:
    """``--follow``: wait until the dataset's manifest exists (its online run has begun writing:
    an online run states then what every transition will record, lost lives included:
    ``DatasetWriter(life_lost=...)``); a UsageError (exit 2) when it has not within ``timeout``
    seconds. The wait for marks then happens in the run folder (:class:`MarkFollower`), where a
    launcher can end it."""
    from blendrl.datasets import MANIFEST_NAME

    if (path / MANIFEST_NAME).is_file():
        return
    say(run_id, f"waiting for dataset {path}: its online run has not begun writing it")
    deadline = time.monotonic() + timeout
    while not (path / MANIFEST_NAME).is_file():
        if time.monotonic() > deadline:
            raise UsageError(f"--follow: dataset {path} did not appear within {timeout:g} s "
                             "(--follow_timeout)")
        time.sleep(poll)


class MarkFollower:
    """``--follow``: the data limits as the online run records its marks.

    :meth:`wait_next` waits until the manifest lists a mark beyond the ``k`` known ones, verifies
    the chunks below it (those not verified yet) and returns the marks; it returns None when no
    further mark will come (the writer finished: ``finished``), when none came within ``timeout``
    seconds (``stopped``: the online run stopped writing; the run is then partial), or when
    ``should_stop()`` (a signal). While waiting it says what it waits for, every ``every`` s.

    ``run_path``: the follower's run folder. While it waits, ``.waiting`` there holds what it waits
    for (a launcher does not count a waiting job among those computing). Two things end the wait
    at once (partial) instead of after ``timeout``: the online run's own record of its failure in
    the manifest (``writer_stopped``: a SLURM follower nobody watches learns it too), and
    ``.online_ended``, put there by a launcher whose online job failed or was cancelled (a job
    killed before it could record anything).
    """

    WAITING = ".waiting"
    ONLINE_ENDED = ".online_ended"

    def __init__(self, info: DatasetInfo, limits: list[int], timeout: float, poll: float,
                 run_id: str, every: float, workers: int, run_path: Path | None = None):
        from blendrl.datasets.manifest import chunks_below

        self.path, self.metadata = info.path, info.metadata
        self.manifest, self.limits = info.manifest, list(limits)
        self.timeout, self.poll, self.run_id, self.every, self.workers = timeout, poll, run_id, every, workers
        self.verified = len(chunks_below(info.manifest, limits[-1])) if limits else 0
        self.finished = info.finished
        self.stopped = False
        self.run_path = run_path

    def _read(self) -> dict:
        from blendrl.datasets import DatasetError, read_manifest

        try:
            m = read_manifest(self.path)
        except DatasetError as e:
            raise DatasetFault(str(e)) from e
        if m["chunks"][:self.verified] != self.manifest["chunks"][:self.verified]:
            raise DatasetFault(f"{self.path}: the dataset was rewritten below the marks already "
                               "trained on")
        return m

    def _waiting_line(self, m: dict) -> str:
        planned = self.metadata.get("planned_marks")
        total = self.metadata.get("planned_transitions")
        of = f" of {planned}" if planned else ""
        online = f"; online at {m['count']:,}" + (f" of {total:,}" if total else "") + " transitions"
        return f"waiting for mark {len(self.limits) + 1}{of}{online}"

    def wait_next(self, should_stop: Callable[[], bool] = lambda: False) -> list[int] | None:
        try:
            return self._wait(should_stop)
        finally:
            self._mark_waiting(None)

    def _mark_waiting(self, line: str | None) -> None:
        """``.waiting`` in the run folder while waiting (removed when not)."""
        if self.run_path is None or not self.run_path.is_dir():
            return
        path = self.run_path / self.WAITING
        if line is None:
            path.unlink(missing_ok=True)
        else:
            path.write_text(line + "\n")

    def _online_ended(self) -> bool:
        return self.run_path is not None and (self.run_path / self.ONLINE_ENDED).exists()

    def _wait(self, should_stop: Callable[[], bool]) -> list[int] | None:
        deadline = last = time.monotonic()
        deadline += self.timeout
        said = False
        while True:
            m = self._read()
            marks = [x for x in m["marks"] if x > 0]
            if len(marks) > len(self.limits):
                if marks[:len(self.limits)] != self.limits:
                    raise DatasetFault(f"{self.path}: marks {marks} no longer begin with the marks "
                                       f"{self.limits} already trained on")
                return self._take(m, marks)
            from blendrl.datasets import writer_finished

            if writer_finished(m):
                self.finished = True
                return None
            if should_stop():
                return None
            now = time.monotonic()
            why = self._why_stopped(m, now > deadline)
            if why is not None:
                self.stopped = True
                say(self.run_id, f"--follow: {why}; {len(self.limits)} marks trained")
                return None
            if not said or now - last >= self.every:
                line = self._waiting_line(m)
                say(self.run_id, line)
                self._mark_waiting(line)
                said, last = True, now
            time.sleep(self.poll)

    def _why_stopped(self, m: dict, timed_out: bool) -> str | None:
        """Why no further mark will come, if that is known: the online run recorded its failure
        in the manifest (``writer_stopped``), its launcher said so (``.online_ended``), or no mark
        came within the timeout."""
        from blendrl.datasets import writer_stopped

        failed = writer_stopped(m)
        if failed is not None:
            return f"the online run failed ({failed})"
        if self._online_ended():
            return "its launcher says the online job ended without finishing"
        return f"no new mark for {self.timeout:g} s (--follow_timeout)" if timed_out else None

    def _take(self, m: dict, marks: list[int]) -> list[int]:
        """Verify the chunks below the new last mark not verified yet; adopt the marks."""
        from blendrl.datasets import DatasetError, verify_chunks
        from blendrl.datasets.manifest import chunks_below

        below = chunks_below(m, marks[-1])
        try:
            verify_chunks(self.path, m, below[self.verified:], workers=self.workers)
        except DatasetError as e:
            raise DatasetFault(f"{e}; nothing was trained on it") from e
        self.verified = len(below)
        self.manifest, self.limits = m, marks
        return list(marks)
