"""The machine a job computes on: the versions and platform that ``run.json`` records (and the note
when a run resumes elsewhere), the torch device a job asks for, and its default thread count."""

from __future__ import annotations

import os
import platform
from pathlib import Path
from typing import Any

import numpy as np
import torch

from blendrl.exits import RunError


def versions() -> dict[str, str]:
    """The versions that decide what a run computes (ale-py and OCAtari where installed)."""
    from importlib import metadata

    import gymnasium
    found = {"python": platform.python_version(), "torch": torch.__version__,
             "numpy": np.__version__, "gymnasium": gymnasium.__version__}
    for name, dist in (("ale_py", "ale-py"), ("ocatari", "ocatari")):
        try:
            found[name] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            pass
    return found


def _cpuinfo() -> dict[str, str]:
    """The first processor's fields of /proc/cpuinfo (empty where there is none)."""
    fields: dict[str, str] = {}
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if not line.strip():
                break
            key, _, value = line.partition(":")
            fields[key.strip()] = value.strip()
    except OSError:
        pass
    return fields


def _cpu_model(info: dict[str, str]) -> str:
    return info.get("model name") or platform.processor() or platform.machine()


def _cpu_id(info: dict[str, str]) -> str | None:
    """The CPU's generation as the kernel names it (a VM's model name may be only "AMD EPYC"):
    ``"family 25 model 17 stepping 1"``, or None where /proc/cpuinfo does not say."""
    parts = [f"{k} {info[k2]}" for k, k2 in (("family", "cpu family"), ("model", "model"),
                                              ("stepping", "stepping")) if k2 in info]
    return " ".join(parts) or None


def platform_info(device: torch.device | str = "cpu") -> dict[str, Any]:
    """The machine a run computes on, and its device and torch threads. A seed reproduces a run
    bit for bit only where all of these and the versions are the same: on another CPU (probably
    through torch's kernels for other vector instructions) or another device, rounding differs
    and a learning run drifts apart once one sampled action flips (docs/statistics.md)."""
    device = torch.device(device)
    gpu = None
    if device.type == "cuda":
        try:
            gpu = torch.cuda.get_device_name(device)
        except (RuntimeError, AssertionError) as e:
            gpu = f"unknown ({e})"
    info = _cpuinfo()
    return {"system": platform.system(), "machine": platform.machine(), "cpu": _cpu_model(info),
            "cpu_id": _cpu_id(info), "torch_cpu_capability": torch.backends.cpu.get_cpu_capability(),
            "device": str(device), "cuda_device": gpu, "torch_threads": torch.get_num_threads()}


def platform_change(recorded: dict | None, device: torch.device | str = "cpu") -> str | None:
    """A note for a run resumed on another kind of machine, device or thread count than it
    started with, else None."""
    if not recorded:
        return None
    now = platform_info(device)
    changed = [f"{k} {recorded.get(k)!r} -> {now[k]!r}" for k in now
               if k in recorded and recorded[k] != now[k]]
    if not changed:
        return None
    return ("note: this run started on another kind of machine or setting (" + "; ".join(changed)
            + "); it continues correctly, but not bit for bit as it would have there")


def resolve_device(device: str) -> torch.device:
    """``auto`` -> CUDA when available, else CPU."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except RuntimeError as e:
        raise RunError(f"invalid --device {device!r}: {e}") from e
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise RunError("--device cuda asked for, but CUDA is not available")
    return dev


def default_threads(image_states: bool) -> int:
    """1 thread for small vector networks; the CPUs the job was given for CNNs."""
    if not image_states:
        return 1
    for var in ("SLURM_CPUS_PER_TASK", "OMP_NUM_THREADS"):
        if os.environ.get(var, "").isdigit():
            return max(1, int(os.environ[var]))
    return max(1, len(os.sched_getaffinity(0)))
