"""The random number generators of a job: seeding them, and their states in a checkpoint (Python,
numpy, torch and the CUDA generator of the job's device)."""

from __future__ import annotations

import random
import sys
from typing import Any

import numpy as np
import torch


def seed_everything(seed: int, torch_deterministic: bool = True) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    torch.backends.cudnn.deterministic = torch_deterministic


def rng_state(device: torch.device | str | None = None) -> dict:
    """Python, numpy (global) and torch RNG states, and the CUDA generator state of the job's
    device under ``"cuda"`` as ``{device index: state}``.

    ``device``: the job's torch device. A CUDA device: its generator's state only (not every
    visible GPU's); any other: no CUDA state, and CUDA is not touched (a ``--device cpu`` job on a
    GPU host does not initialise it). ``None``: the CUDA devices this process holds memory on,
    none when it has not initialised CUDA (a CPU job's checkpoint has no ``"cuda"`` key)."""
    name, keys, pos, has_gauss, cached = np.random.get_state()
    state = {"python": random.getstate(), "numpy": [name, keys.tolist(), pos, has_gauss, cached],
             "torch": torch.get_rng_state()}
    indices = _cuda_indices(device)
    if indices:
        state["cuda"] = {i: torch.cuda.get_rng_state(i) for i in indices}
    return state


def _cuda_indices(device: torch.device | str | None) -> list[int]:
    """The CUDA devices whose generators :func:`rng_state` saves (see there)."""
    if device is not None:
        device = torch.device(device)
        if device.type != "cuda":
            return []
        return [device.index if device.index is not None else torch.cuda.current_device()]
    if not torch.cuda.is_initialized():
        return []
    return [i for i in range(torch.cuda.device_count()) if torch.cuda.memory_reserved(i) > 0]


def set_rng_state(state: dict, device: torch.device | str | None = None) -> None:
    """Restore what :func:`rng_state` saved. CUDA states (``{index: state}``, or a list by index
    as checkpoints before wrote every visible GPU's) are restored for the GPUs this machine has:
    a job resumed with fewer visible GPUs skips the others (a note on stderr). With ``device`` a
    CUDA device and one CUDA state saved, that state goes to ``device`` (the job's GPU may have
    another index now); with ``device`` not CUDA, CUDA states are ignored. Without ``device``
    CUDA is not initialised here: torch applies the states when the job first uses the GPU (a
    CPU job never does)."""
    random.setstate(_as_tuple(state["python"]))
    name, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((name, np.asarray(keys, dtype=np.uint32), pos, has_gauss, cached))
    # .cpu(): a checkpoint loaded with map_location="cuda" holds these states on the GPU
    torch.set_rng_state(state["torch"].cpu())
    saved = state.get("cuda")
    if not saved or not torch.cuda.is_available():
        return
    saved = dict(saved) if isinstance(saved, dict) else dict(enumerate(saved))
    if device is not None:
        device = torch.device(device)
        if device.type != "cuda":
            return
        if len(saved) == 1:
            index = device.index if device.index is not None else torch.cuda.current_device()
            saved = {index: next(iter(saved.values()))}
    count = torch.cuda.device_count()
    skipped = sorted(i for i in saved if int(i) >= count)
    for i, s in saved.items():
        if int(i) < count:
            torch.cuda.set_rng_state(s.cpu(), int(i))
    if skipped:
        print(f"note: the checkpoint's CUDA RNG states of devices {skipped} are not restored: "
              f"this machine shows {count} GPU(s)", file=sys.stderr, flush=True)


def _as_tuple(x: Any) -> Any:
    return tuple(_as_tuple(v) for v in x) if isinstance(x, (list, tuple)) else x
