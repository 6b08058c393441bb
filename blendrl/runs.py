"""TEMPORARY re-exports for ``blendrl/online.py`` and ``blendrl/offline.py`` only (issue 30).

What this module held is split by concept: :mod:`blendrl.run_dir` (a run's folder, its id and
lock), :mod:`blendrl.checkpoints` (checkpoint files, ``args_to_dict`` and what ``--resume`` may
change), :mod:`blendrl.loop_state` (the loops' state records, ``interval_marks``),
:mod:`blendrl.timing` (``Timer``), :mod:`blendrl.rng` (seeding, RNG states), :mod:`blendrl.machine`
(platform, device, threads), :mod:`blendrl.interrupt` (``Interrupt``); ``RunError`` and
``UsageError`` are in :mod:`blendrl.exits`, ``EXIT_INTERRUPTED`` in :mod:`blendrl.contract`.

Below are exactly the names the two loops import from here (at commit 3346de8), plus ``RunState``
for the run lifecycle being split out of them (``blendrl/lifecycle.py``, in progress). Import from
the modules above instead; this module goes once the loops import from them (nothing else may
import it).
"""

from blendrl.checkpoints import (RESUME_FREE, args_to_dict, load_checkpoint, resume_changes,
                                 save_checkpoint)
from blendrl.contract import EXIT_INTERRUPTED
from blendrl.exits import RunError, UsageError
from blendrl.interrupt import Interrupt
from blendrl.loop_state import (OfflineLoopState, OnlineLoopState, RunState, interval_marks,
                                state_from_checkpoint, state_items)
from blendrl.machine import default_threads, resolve_device
from blendrl.rng import rng_state, seed_everything, set_rng_state
from blendrl.run_dir import RunDir, validate_run_id
from blendrl.timing import Timer

__all__ = ["EXIT_INTERRUPTED", "RESUME_FREE", "Interrupt", "OfflineLoopState", "OnlineLoopState",
           "RunDir", "RunState", "RunError", "Timer", "UsageError", "args_to_dict", "default_threads",
           "interval_marks", "load_checkpoint", "resolve_device", "resume_changes", "rng_state",
           "save_checkpoint", "seed_everything", "set_rng_state", "state_from_checkpoint",
           "state_items", "validate_run_id"]
