"""The local runner: a detached process that runs the jobs of one registry on this machine.

:func:`start_detached` starts ``python -m blendrl.launch.local_runner REGISTRY`` in a new session
(``setsid``): no controlling terminal, so it survives the shell that launched it. The runner

* starts each job as its own process group (cwd = the experiment's work dir), its output
  appended to the job's log, ``OMP_NUM_THREADS`` set to the job's ``threads``;
* starts other jobs only while fewer than ``max_parallel`` compute: a follower
  (``OFFLINE_START=follow``) whose run folder holds ``.waiting`` (it waits for its online run's
  next mark) does not count, and a follower starts as soon as its online job runs, slot or not
  (it begins by waiting; once it trains beside the online job, both compete for the cores);
* records a job's exit: 0 ``done``, 75 ``interrupted`` (it checkpointed on SIGTERM/SIGUSR1;
  ``run_full_cycle.py --resume`` continues it), anything else ``failed``, with the status in
  words (:func:`~blendrl.launch.outcomes.describe_exit`: 2 arguments refused, 65 dataset
  broken, 74 no space);
* starts an ``afterok`` job only when all its dependencies exited 0, and records the dependents
  of a job that failed or was interrupted as cancelled (they never start); an ``afterany`` job
  (the plots) starts when all its dependencies have ended; an ``after`` job (a follower) starts
  once its dependency has started, and when that ends unfinished (failed, interrupted,
  cancelled) gets ``.online_ended`` in its run folder (if it exists), which ends its wait at once:
  exit 3, recorded ``partial``;
* on SIGTERM/SIGINT (``kill_experiments.sh``), or when the registry says ``kill_requested``,
  stops launching, terminates its running jobs' process groups (SIGTERM, then SIGKILL after a
  grace period), records them and the pending jobs as cancelled, and exits.

Every change is written to the registry at once; the runner's own log is ``runner.log``.
"""

from __future__ import annotations

import os
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import IO

from blendrl.exits import guarded_main
from blendrl.file_io import now_iso
from blendrl.launch import procs
from blendrl.launch.outcomes import describe_exit, end_state
from blendrl.launch.registry import Registry
from blendrl.launch.scheduling import (FOLLOW_END, end_followers, propagate_cancellations,
                                       to_start)
from blendrl.launch.states import CANCELLED, DONE, FAILED, PENDING, RUNNING, finish_job

RUNNER_LOG = "runner.log"


class LocalRunner:
    """Runs the jobs of ``registry`` until all have ended or the experiment is killed."""

    def __init__(self, registry: Registry, grace: float = 10.0, poll: float = 0.2,
                 out: IO[str] = sys.stdout):
        self.registry = registry
        self.grace = grace
        self.poll = poll
        self.out = out
        self.procs: dict[str, subprocess.Popen] = {}
        self.stop_signal: int | None = None

    def log(self, msg: str) -> None:
        print(f"[{now_iso()}] {msg}", file=self.out, flush=True)

    def _on_signal(self, signum: int, frame) -> None:
        self.stop_signal = signum

    def run(self) -> int:
        signal.signal(signal.SIGTERM, self._on_signal)
        signal.signal(signal.SIGINT, self._on_signal)
        signal.signal(signal.SIGHUP, signal.SIG_IGN)
        with self.registry.update() as data:
            data["runner"] = {**data.get("runner", {}), "pid": os.getpid(), "pgid": os.getpgid(0),
                              "start_time": procs.start_time(os.getpid()), "state": RUNNING,
                              "started_at": now_iso()}
            max_parallel = int(data.get("max_parallel", 1))
            exp = data["exp_id"]
        self.log(f"runner of experiment {exp} started (pid {os.getpid()}, at most "
                 f"{max_parallel} jobs at once)")
        while True:
            self._reap()
            if self._stop_requested():
                self._shutdown()
                return 0
            with self.registry.update() as data:
                if data.get("kill_requested"):
                    continue
                propagate_cancellations(data)
                for name in end_followers(data):
                    self.log(f"{name}: its online job ended unfinished: {FOLLOW_END} written")
                for job in to_start(data, self.procs, max_parallel):
                    self._launch(job, data)
                pending = any(j["state"] == PENDING for j in data["jobs"])
            if not self.procs and not pending:
                break
            time.sleep(self.poll)
        with self.registry.update() as data:
            data["runner"]["state"] = DONE
            data["runner"]["ended_at"] = now_iso()
            states = [f"{j['name']}={j['state']}" for j in data["jobs"]]
        self.log("all jobs ended: " + ", ".join(states))
        return 0

    def _stop_requested(self) -> bool:
        if self.stop_signal is not None:
            return True
        return bool(self.registry.read().get("kill_requested"))

    def _launch(self, job: dict, data: dict) -> None:
        """Start ``job`` as its own process group (called under the registry lock)."""
        log_path = Path(job["log"])
        log_path.parent.mkdir(parents=True, exist_ok=True)
        env = dict(os.environ)
        threads = str(job.get("threads") or 1)
        env.update(OMP_NUM_THREADS=threads, MKL_NUM_THREADS=threads, PYTHONUNBUFFERED="1")
        with open(log_path, "ab") as log:
            log.write(f"=== {job['name']} started {now_iso()}\n$ {shlex.join(job['command'])}\n"
                      .encode())
            log.flush()
            try:
                p = subprocess.Popen(job["command"], cwd=data["work_dir"], env=env,
                                     stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                     process_group=0, close_fds=True)
            except OSError as e:
                log.write(f"=== cannot start: {e}\n".encode())
                finish_job(job, FAILED, None, f"cannot start: {e}")
                self.log(f"{job['name']}: cannot start ({e})")
                return
        self.procs[job["name"]] = p
        job.update(state=RUNNING, pid=p.pid, pgid=p.pid, start_time=procs.start_time(p.pid),
                   started_at=now_iso())
        self.log(f"{job['name']}: started (pid {p.pid})")

    def _reap(self) -> None:
        ended = {name: p.returncode for name, p in self.procs.items() if p.poll() is not None}
        if not ended:
            return
        with self.registry.update() as data:
            jobs = {j["name"]: j for j in data["jobs"]}
            for name, code in ended.items():
                del self.procs[name]
                job = jobs[name]
                state, words = end_state(code, job)
                finish_job(job, state, code, None if code == 0 else words)
                self._append_log(job, f"=== {name} ended {now_iso()}: {words}\n")
                self.log(f"{name}: {job['state']} ({words})")
            for name in propagate_cancellations(data):
                self.log(f"{name}: cancelled ({jobs[name]['reason']})")

    @staticmethod
    def _append_log(job: dict, text: str) -> None:
        try:
            with open(job["log"], "a") as f:
                f.write(text)
        except OSError:
            pass

    def _shutdown(self) -> None:
        why = (f"signal {signal.Signals(self.stop_signal).name}" if self.stop_signal
               else "kill requested in the registry")
        self.log(f"stopping ({why}): terminating {len(self.procs)} running job(s)")
        grace = float(self.registry.read().get("kill_grace", self.grace))
        groups = [procs.Target(p.pid, procs.start_time(p.pid)) for p in self.procs.values()]
        procs.terminate(groups, grace)  # a job's group is its leader's pid
        for p in self.procs.values():
            p.wait()
        with self.registry.update() as data:
            for job in data["jobs"]:
                if job["name"] in self.procs:
                    code = self.procs[job["name"]].returncode
                    finish_job(job, CANCELLED, code, f"killed ({describe_exit(code)})")
                    self._append_log(job, f"=== {job['name']} cancelled {now_iso()}: "
                                          f"{describe_exit(code)}\n")
                elif job["state"] == PENDING:
                    finish_job(job, CANCELLED, None, "experiment killed before it started")
            data["runner"]["state"] = CANCELLED
            data["runner"]["ended_at"] = now_iso()
        self.procs.clear()
        self.log("stopped")


def start_detached(registry: Registry, python: str, package_root: Path) -> subprocess.Popen:
    """Start the runner of ``registry`` in a new session, output to ``runner.log``; record its
    pid, process group and start time in the registry before returning."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(package_root), env.get("PYTHONPATH")]))
    with open(registry.dir / RUNNER_LOG, "ab") as log:
        p = subprocess.Popen([python, "-m", "blendrl.launch.local_runner", str(registry.path)],
                             cwd=str(registry.dir), env=env, stdin=subprocess.DEVNULL, stdout=log,
                             stderr=subprocess.STDOUT, start_new_session=True, close_fds=True)
    with registry.update() as data:
        runner = data.setdefault("runner", {})
        if not runner.get("pid"):  # the runner may have registered itself already
            runner.update(pid=p.pid, pgid=p.pid, start_time=procs.start_time(p.pid),
                          state=RUNNING, started_at=now_iso())
    return p


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print("usage: python -m blendrl.launch.local_runner logs/EXP/registry.json", file=sys.stderr)
        return 2
    path = Path(argv[0]).resolve()
    if not path.is_file():
        print(f"error: no registry at {path}", file=sys.stderr)
        return 2
    # a registry or log it cannot write (disk full): one line in runner.log's place, exit 74
    return guarded_main(LocalRunner(Registry(path.parent)).run)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
