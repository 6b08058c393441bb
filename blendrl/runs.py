"""Run directories and everything written in them (docs/FORMATS.md): ``run.json``,
``results.json``, ``timing.json``, ``training_log.pkl``, checkpoints; plus the small process-level
helpers every training script shares (device, threads, seeding, interruption by signal).
"""

from __future__ import annotations

import fcntl
import io
import json
import math
import os
import pickle
import platform
import random
import re
import signal
import sys
import time
import typing
from dataclasses import asdict, dataclass, field, fields, is_dataclass
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import torch

from blendrl.exits import UsageError  # noqa: F401 (re-exported: the scripts' usage errors)
from blendrl.contract import (EXIT_INTERRUPTED, METHODS, RUN_FORMAT_VERSION, FileFormatError,  # noqa: F401 (re-exported)
                              _json_default, atomic_write_bytes, atomic_write_json,
                              load_training_log, now_iso, read_json)
from blendrl.contract import (BEST_CHECKPOINT, CHECKPOINTS_DIR, LATEST_CHECKPOINT, RESULTS_JSON,
                              RUN_JSON, TIMING_JSON, TRAINING_LOG)
CHECKPOINT_FORMAT_VERSION = 1
_SAFE_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")


class RunError(ValueError):
    """Bad input concerning a run (id, directory, resume state)."""



def interval_marks(total: int, intervals: int) -> list[int]:
    """Evenly spaced transition counts: ceil(k * total / K), k = 1..K (online evaluation marks,
    and the offline data limits of a dataset that has no marks)."""
    return [math.ceil(k * total / intervals) for k in range(1, intervals + 1)]


def args_to_dict(args: Any) -> dict:
    """A tyro/dataclass ``Args`` as a JSON-friendly dict."""
    d = asdict(args) if is_dataclass(args) else dict(vars(args))
    return json.loads(json.dumps(d, default=_json_default))


def validate_run_id(run_id: str) -> str:
    """A run id is one path component of safe characters (it names folders and shell arguments)."""
    if not isinstance(run_id, str) or not _SAFE_ID.match(run_id) or run_id in (".", ".."):
        raise RunError(f"invalid run id {run_id!r}: use 1-128 letters, digits, '.', '_' or '-', "
                       "starting with a letter or digit (it must not leave the runs folder)")
    return run_id


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


def _plain(obj: Any) -> Any:
    """Convert numpy scalars/arrays inside a structure into plain Python values."""
    if isinstance(obj, dict):
        return {str(k): _plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_plain(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, torch.Tensor):
        return obj.detach().cpu().tolist()
    return obj


# --------------------------------------------------------------------------- the run directory

RUN_LOCK = ".run.lock"
"""The lock file of a run folder, held by the one job that writes it."""


class RunDir:
    """``{runs_dir}/{run_id}/`` and its files."""

    def __init__(self, runs_dir: str | Path, run_id: str):
        self.run_id = validate_run_id(run_id)
        self.root = Path(runs_dir).resolve()
        self.path = self.root / run_id
        if self.path.parent != self.root:
            raise RunError(f"run id {run_id!r} would escape {self.root}")
        self._lock_fd: int | None = None

    # paths
    @property
    def run_json(self) -> Path:
        return self.path / RUN_JSON

    @property
    def results_json(self) -> Path:
        return self.path / RESULTS_JSON

    @property
    def timing_json(self) -> Path:
        return self.path / TIMING_JSON

    @property
    def training_log_path(self) -> Path:
        return self.path / TRAINING_LOG

    @property
    def checkpoints(self) -> Path:
        return self.path / CHECKPOINTS_DIR

    @property
    def latest_checkpoint(self) -> Path:
        return self.checkpoints / LATEST_CHECKPOINT

    @property
    def best_checkpoint(self) -> Path:
        return self.checkpoints / BEST_CHECKPOINT

    def exists(self) -> bool:
        return self.run_json.exists()

    def prepare(self, resume: bool) -> None:
        """Create the folder and take its lock (one writer per run folder, held until the process
        ends). Starting afresh over an existing run is an error (nothing is overwritten
        silently); resuming needs a latest checkpoint."""
        if resume:
            if not self.latest_checkpoint.exists():
                raise RunError(f"--resume: no checkpoint at {self.latest_checkpoint}")
        elif self.path.exists() and any(p.name != RUN_LOCK for p in self.path.iterdir()):
            raise RunError(f"run folder {self.path} already exists and is not empty: choose another "
                           "--run_id, remove it, or pass --resume to continue it")
        self.path.mkdir(parents=True, exist_ok=True)
        self.lock()
        self.checkpoints.mkdir(parents=True, exist_ok=True)

    def lock(self) -> None:
        """Hold ``{run}/.run.lock`` (an advisory flock, released when the process dies): a second
        job on the same run folder is a RunError before it writes anything."""
        if self._lock_fd is not None:
            return
        path = self.path / RUN_LOCK
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 32, 0).decode("ascii", "replace").strip()
            os.close(fd)
            raise RunError(f"another job is writing run folder {self.path}"
                           f"{f' (pid {holder})' if holder else ''}: only one job may write a run; "
                           "wait for it to end or stop it first") from None
        except OSError:  # a file system without flock: go on unlocked
            pass
        os.ftruncate(fd, 0)
        os.pwrite(fd, str(os.getpid()).encode(), 0)
        self._lock_fd = fd

    def unlock(self) -> None:
        """Release the run folder's lock (when the job ends; a dead process releases it too)."""
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None

    def write_run_json(self, *, exp_id: str, method: str, env: str, seed: int, args: Any,
                       dataset_source: dict | None, device: torch.device | str = "cpu",
                       extra: dict | None = None) -> None:
        """``extra``: further top-level entries (an offline run's ``dataset_partial``)."""
        if method not in METHODS:
            raise RunError(f"unknown method {method!r}")
        atomic_write_json(self.run_json, {
            "format_version": RUN_FORMAT_VERSION, "run_id": self.run_id, "exp_id": exp_id,
            "method": method, "kind": METHODS[method], "env": env, "seed": seed,
            "args": args_to_dict(args), "dataset_source": dataset_source, "versions": versions(),
            "platform": platform_info(device), "created_at": now_iso(), **(extra or {}),
        })

    def read_run_json(self) -> dict:
        return read_json(self.run_json)

    def say_if_resumed_elsewhere(self, device: torch.device | str = "cpu") -> None:
        """On ``--resume``: a note on stderr when this machine, the device or the thread count is
        not what the run started with."""
        try:
            recorded = self.read_run_json().get("platform")
        except (OSError, ValueError):
            return
        note = platform_change(recorded, device)
        if note:
            print(f"[{self.run_id}] {note}", file=sys.stderr, flush=True)

    def read_results(self) -> list[dict]:
        return read_json(self.results_json) if self.results_json.exists() else []

    def write_results(self, results: list[dict]) -> None:
        atomic_write_json(self.results_json, _plain(results))

    def write_training_log(self, log: dict) -> None:
        atomic_write_bytes(self.training_log_path, pickle.dumps(_plain(log), protocol=4))

    def read_training_log(self) -> dict:
        return load_training_log(self.training_log_path)


def new_training_log() -> dict:
    return {"episode_returns": [], "episode_lengths": [], "episode_end_steps": [],
            "updates": [], "blend": []}


# --------------------------------------------------------------------------- what --resume fixes

class _ResumeFree:
    """Annotation metadata of an Args field that ``--resume`` may change (where and how a run
    runs, not what it computes): ``threads: Annotated[int | None, RESUME_FREE] = None``."""

    def __repr__(self) -> str:
        return "RESUME_FREE"


RESUME_FREE = _ResumeFree()


def resume_fixed_fields(cls: type) -> tuple[str, ...]:
    """The fields of the Args dataclass ``cls`` that ``--resume`` refuses to change: every field
    not marked :data:`RESUME_FREE`, so that a new flag is fixed unless it says otherwise."""
    hints = typing.get_type_hints(cls, include_extras=True)
    return tuple(f.name for f in fields(cls)
                 if not any(m is RESUME_FREE for m in getattr(hints[f.name], "__metadata__", ())))


def resume_changes(cls: type, before: dict[str, Any], now: dict[str, Any]) -> list[str]:
    """``--flag old -> new`` for each fixed field of ``cls`` whose value differs from the
    checkpoint's args (a field the checkpoint lacks counts as unchanged: older code had none)."""
    return [f"--{k} {before.get(k)!r} -> {now[k]!r}" for k in resume_fixed_fields(cls)
            if k in now and k in before and before[k] != now[k]]


# --------------------------------------------------------------------------- loop state

@dataclass
class RunState:
    """What every training loop carries across a checkpoint (besides networks, optimisers and
    RNGs). Every field has a default, so a checkpoint written before a field existed still loads
    (:func:`state_from_checkpoint`)."""

    best_return: float = -math.inf
    """the best evaluation mean so far (best.pt)"""
    results: list = field(default_factory=list)
    """the results.json entries so far"""
    training_log: dict = field(default_factory=lambda: new_training_log())
    timing: dict | None = None
    """the Timer's state at the checkpoint"""


@dataclass
class OnlineLoopState(RunState):
    """The online loop's state."""

    global_step: int = 0
    """environment transitions collected"""
    iteration: int = 0
    """PPO iterations done"""
    next_mark: int = 0
    """index of the next evaluation mark"""


@dataclass
class OfflineLoopState(RunState):
    """The offline interval loop's state (the trainer, RNGs and minibatch sampler apart)."""

    interval: int = 0
    """intervals finished"""
    step_in_interval: int = 0
    """gradient steps done in the current interval"""
    interval_train_seconds: float = 0.0
    grad_steps: int = 0
    """gradient steps over the whole run"""


LoopState = TypeVar("LoopState", OnlineLoopState, OfflineLoopState)


def state_items(state: Any) -> dict[str, Any]:
    """A loop state's fields as checkpoint entries (no copies: the checkpoint is written at once)."""
    return {f.name: getattr(state, f.name) for f in fields(state)}


def state_from_checkpoint(cls: type[LoopState], ckpt: dict[str, Any]) -> LoopState:
    """The loop state saved in ``ckpt``: each field it holds, the default for each it lacks (a
    checkpoint from before that field existed); other checkpoint entries are not the state's."""
    return cls(**{f.name: ckpt[f.name] for f in fields(cls) if f.name in ckpt})


# --------------------------------------------------------------------------- timing

class Timer:
    """Cumulative train / eval / wall seconds of a run, carried across resumes via timing.json."""

    def __init__(self, run: RunDir, state: dict | None = None):
        self.run = run
        state = state or {}
        self.started_at = state.get("started_at", now_iso())
        self.train_seconds = float(state.get("train_seconds", 0.0))
        self.eval_seconds = float(state.get("eval_seconds", 0.0))
        self._wall_before = float(state.get("wall_seconds", 0.0))
        self._t0 = time.perf_counter()

    @property
    def wall_seconds(self) -> float:
        return self._wall_before + time.perf_counter() - self._t0

    def state(self, finished: bool = False) -> dict:
        return {"started_at": self.started_at, "updated_at": now_iso(),
                "wall_seconds": self.wall_seconds, "train_seconds": self.train_seconds,
                "eval_seconds": self.eval_seconds, "finished": finished}

    def save(self, finished: bool = False) -> None:
        atomic_write_json(self.run.timing_json, self.state(finished))


# --------------------------------------------------------------------------- checkpoints

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


def save_checkpoint(path: Path, payload: dict) -> None:
    """Atomic, self-describing checkpoint (``format_version`` added)."""
    buf = io.BytesIO()
    torch.save({"format_version": CHECKPOINT_FORMAT_VERSION, **payload}, buf)
    atomic_write_bytes(path, buf.getvalue())


def load_checkpoint(path: Path, map_location: str | torch.device = "cpu") -> dict:
    """Load a checkpoint written by :func:`save_checkpoint` with ``weights_only=True``
    (tensors and plain containers only: loading never runs code from the file)."""
    try:
        ckpt = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as e:  # noqa: BLE001
        raise RunError(f"cannot read checkpoint {path}: {e}") from e
    if ckpt.get("format_version") != CHECKPOINT_FORMAT_VERSION:
        raise RunError(f"{path}: checkpoint format {ckpt.get('format_version')!r} is not "
                       f"{CHECKPOINT_FORMAT_VERSION}")
    return ckpt


# --------------------------------------------------------------------------- process helpers

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


def seed_everything(seed: int, torch_deterministic: bool = True) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    torch.backends.cudnn.deterministic = torch_deterministic


class Interrupt:
    """Turns SIGTERM / SIGUSR1 into a flag the training loop checks at safe points."""

    SIGNALS = (signal.SIGTERM, signal.SIGUSR1)

    def __init__(self) -> None:
        self.signum: int | None = None
        self._previous = {}

    def __enter__(self) -> "Interrupt":
        for s in self.SIGNALS:
            self._previous[s] = signal.signal(s, self._handle)
        return self

    def __exit__(self, *exc) -> None:
        for s, h in self._previous.items():
            signal.signal(s, h)

    def _handle(self, signum: int, frame: Any) -> None:
        self.signum = signum

    @property
    def requested(self) -> bool:
        return self.signum is not None
