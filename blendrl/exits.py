"""How a training script ends when something is wrong: one line on stderr and an exit status that
says what kind of wrong it is (``blendrl.contract`` defines the numbers).

* 2 -- bad arguments (:class:`UsageError`): nothing was started;
* 3 -- partial: a ``--follow`` run trained the marks its online run wrote before it stopped;
* 65 -- a dataset fault (:class:`DatasetFault`): a file of the dataset is broken; nothing was
  trained on it or recorded from it;
* 74 -- a write failed (disk full, a folder not writable): everything written before is intact;
  free space, then rerun with ``--resume``;
* 75 -- interrupted by a signal after checkpointing (returned by the loops themselves).

Torch-free, so the launcher and the plotting entry point can use it.
"""

from __future__ import annotations

import errno
import os
import shutil
import sys
from pathlib import Path
from typing import Callable

from blendrl.contract import EXIT_DATA_FAULT, EXIT_NO_SPACE

EXIT_USAGE = 2
EXIT_PARTIAL = 3
"""An offline run that followed its online run (``--follow``) trained every mark the online run
wrote, but the online run stopped writing before its end: the run is partial (``run.json``
``dataset_partial``); ``--resume`` goes on if the online run is resumed."""

_WRITE_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EROFS, errno.EACCES, errno.EPERM}
_NO_SPACE = {errno.ENOSPC, errno.EDQUOT, errno.EFBIG}


class UsageError(ValueError):
    """Bad arguments of a training script, reported before any work with exit status 2."""


class RunError(ValueError):
    """Bad input concerning a run (id, directory, resume state, checkpoint, device); the loops
    report it as a usage error."""


class DatasetFault(Exception):
    """A dataset file is broken (size, CRC, unreadable content, non-finite values): exit 65."""


def _chain(e: BaseException):
    """``e`` and the exceptions it was raised from or during, oldest first."""
    seen: list[BaseException] = []
    while e is not None and e not in seen:
        seen.append(e)
        e = e.__cause__ or e.__context__
    return reversed(seen)


def _free_bytes(path: Path) -> int | None:
    """Free bytes on the file system holding ``path`` (its nearest existing folder)."""
    p = path
    while not p.exists() and p != p.parent:
        p = p.parent
    try:
        return shutil.disk_usage(p).free
    except OSError:
        return None


def write_failure(e: BaseException) -> str | None:
    """One line describing the first failed write (disk full, quota, read-only or not writable
    folder) in ``e``'s chain, or None when ``e`` is no such failure. A failure while cleaning up
    after it (closing files, a last flush) is part of the same chain and not reported again."""
    for err in _chain(e):
        if isinstance(err, OSError) and err.errno in _WRITE_ERRNOS:
            path = Path(err.filename) if err.filename else None
            where = f" {path}" if path else ""
            if err.errno in _NO_SPACE:
                free = _free_bytes(path) if path else None
                left = f" ({free / 1e6:.1f} MB free there)" if free is not None else ""
                return (f"cannot write{where}: {os.strerror(err.errno)}{left}; what was written "
                        "before is intact: free space, then rerun (with --resume if it had "
                        "started)")
            return (f"cannot write{where}: {os.strerror(err.errno)}; make the folder writable (or "
                    "choose another), then rerun (with --resume if the run had started)")
    return None


def guarded_main(run: Callable[[], int]) -> int:
    """``run()``'s exit status; a usage error, a dataset fault or a failed write becomes one
    ``error:`` line on stderr and its own exit status (anything else propagates)."""
    try:
        return run()
    except UsageError as e:
        print(f"error: {e}", file=sys.stderr)
        return EXIT_USAGE
    except DatasetFault as e:
        print(f"error: dataset fault: {e}", file=sys.stderr)
        return EXIT_DATA_FAULT
    except Exception as e:  # noqa: BLE001 - a failed write may surface through a later error
        line = write_failure(e)
        if line is None:
            raise
        print(f"error: {line}", file=sys.stderr, flush=True)
        return EXIT_NO_SPACE
