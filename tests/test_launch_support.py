"""Shared helpers of the launcher tests (this module holds no tests).

* :func:`write_fake_scripts`: stand-ins for ``train_*.py`` and ``plot_results.py`` that take the
  real scripts' flags, write what the real ones write first (``run.json``, a partial dataset, a
  dataset manifest at the end, plots), refuse to start over a run folder or dataset that exists
  (and ``--resume`` without a checkpoint) as the real ones do, append ``start``/``end`` lines to a
  trace file, and can be told to sleep, to fail, or to write a checkpoint first.
  They let the launcher be tested in seconds, independently of training.
* :func:`run_cycle`: runs ``run_full_cycle.py`` (a real process) and returns the result.
* :func:`real_scripts_missing`: the real scripts not (yet) in the project.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable

ROOT = Path(__file__).resolve().parents[1]
PY = sys.executable

FAKE_TRAIN = r'''
import argparse, json, os, signal, sys, time
from pathlib import Path

name = Path(sys.argv[0]).name
p = argparse.ArgumentParser()
p.add_argument("exp", nargs="?")
for flag in ("--run_id", "--runs_dir", "--dataset_dir", "--dataset_run_id", "--exp_id", "--env",
             "--output_dir", "--threads", "--seed", "--total_timesteps", "--epochs",
             "--intervals", "--eval_episodes"):
    p.add_argument(flag, flag.replace("_", "-"))
p.add_argument("--save_dataset", "--save-dataset", action="store_true")
p.add_argument("--resume", action="store_true")
a, extra = p.parse_known_args()
trace = os.environ.get("FAKE_TRACE")
ident = a.run_id or "plots"

def note(event):
    if trace:
        with open(trace, "a") as f:
            f.write(json.dumps({"t": time.time(), "event": event, "job": ident, "script": name,
                                "argv": sys.argv[1:], "pid": os.getpid(),
                                "omp": os.environ.get("OMP_NUM_THREADS")}) + "\n")

def on_term(signum, frame):
    note("term")
    if not os.environ.get("FAKE_IGNORE_TERM"):
        sys.exit(75)

signal.signal(signal.SIGTERM, on_term)
note("start")
if name == "plot_results.py":
    out = Path(a.output_dir) / a.exp
    out.mkdir(parents=True, exist_ok=True)
    runs = sorted(d.name for d in Path(a.runs_dir).iterdir()) if Path(a.runs_dir).is_dir() else []
    (out / "timing.md").write_text("\n".join(runs) + "\n")
    note("end")
    sys.exit(0)
run = Path(a.runs_dir) / a.run_id
ds = Path(a.dataset_dir) / a.run_id if a.save_dataset else None
if run.exists() and any(run.iterdir()) and not a.resume:
    print(f"run folder {run} exists", file=sys.stderr)
    sys.exit(2)
if ds is not None and ds.exists() and any(ds.iterdir()) and not a.resume:
    print(f"dataset folder {ds} exists", file=sys.stderr)
    sys.exit(2)
if a.resume and not (run / "checkpoints" / "latest.pt").is_file():
    print(f"--resume: no checkpoint in {run}", file=sys.stderr)
    sys.exit(2)
if a.dataset_run_id and not (Path(a.dataset_dir) / a.dataset_run_id / "manifest.json").is_file():
    print("dataset missing", file=sys.stderr)
    sys.exit(4)
run.mkdir(parents=True, exist_ok=True)
if a.resume:
    note("resume")
else:
    (run / "run.json").write_text(json.dumps({"run_id": a.run_id, "exp_id": a.exp_id}))
if ds is not None:
    ds.mkdir(parents=True, exist_ok=True)
    (ds / "chunk.partial").write_text("")
if a.run_id in os.environ.get("FAKE_CHECKPOINT", "").split(","):
    (run / "checkpoints").mkdir(exist_ok=True)
    (run / "checkpoints" / "latest.pt").write_text("ckpt")
print(f"fake {name} {a.run_id} threads={a.threads} extra={extra}", flush=True)
deadline = time.time() + float(os.environ.get("FAKE_SLEEP", "0"))
while time.time() < deadline:
    time.sleep(0.05)
if a.run_id in os.environ.get("FAKE_FAIL", "").split(","):
    note("fail")
    sys.exit(3)
if ds is not None:
    (ds / "manifest.json").write_text(json.dumps({"metadata": {"run_id": a.run_id,
                                                               "exp_id": a.exp_id}}))
(run / "results.json").write_text("[]")
note("end")
'''

SCRIPT_NAMES = ("train_neuralppo.py", "train_blenderl.py", "train_iql.py", "train_blendrl_iql.py",
                "plot_results.py")


def write_fake_scripts(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for name in SCRIPT_NAMES:
        (folder / name).write_text(FAKE_TRAIN)
    return folder


def read_trace(path: Path) -> list[dict]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def clean_env(**extra: str) -> dict[str, str]:
    """The test process's environment without any knob of run_full_cycle.sh, plus ``extra``."""
    from blendrl.launch.knobs import KNOBS
    env = {k: v for k, v in os.environ.items() if k not in {kn.env_var for kn in KNOBS}}
    env.update(extra)
    return env


def run_cycle(args: list[str], env: dict[str, str] | None = None, timeout: float = 120,
              stdin: int | None = subprocess.DEVNULL, script: str = "run_full_cycle.py"
              ) -> subprocess.CompletedProcess:
    """Run ``run_full_cycle.py`` (or ``.sh``) of the project as a real process."""
    cmd = ([PY, str(ROOT / script)] if script.endswith(".py") else [str(ROOT / script)]) + args
    return subprocess.run(cmd, env=env if env is not None else clean_env(), cwd=str(ROOT),
                          stdin=stdin, capture_output=True, text=True, timeout=timeout)


def wait_for(condition: Callable[[], bool], timeout: float, what: str, poll: float = 0.1) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(poll)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


def real_scripts_missing(names: tuple[str, ...] = SCRIPT_NAMES) -> list[str]:
    return [n for n in names if not (ROOT / n).is_file()]


def registry_of(work: Path, exp: str) -> dict:
    return json.loads((work / "logs" / exp / "registry.json").read_text())


def all_files(folder: Path) -> set[str]:
    return {str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file()}
