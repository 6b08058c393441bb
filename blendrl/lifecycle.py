"""The life of a training run, the same for the online and the offline loop: its folder (locked by
the one job writing it), resume from the latest checkpoint or a fresh ``run.json``, TensorBoard,
evaluation at the marks with the best checkpoint, checkpoints (after each evaluation, every
``--checkpoint_seconds``, on a signal, at the end), signals and timing.

A loop supplies only its algorithm: its step, what its checkpoint holds (``payload``), what it
does to its own state when an evaluation is recorded, and (online) what must be on disk before a
checkpoint (the dataset). ``run_folder`` holds the folder's lock for the job's life;
``resume_checkpoint`` checks a latest checkpoint against the invocation.
"""

from __future__ import annotations

import contextlib
import sys
import time
from typing import Any, Callable, Iterator

import torch

from blendrl.evaluation import EvalResult, evaluate
from blendrl.exits import UsageError
from blendrl.checkpoints import args_to_dict, load_checkpoint, resume_changes, save_checkpoint
from blendrl.contract import EXIT_INTERRUPTED
from blendrl.exits import RunError
from blendrl.interrupt import Interrupt
from blendrl.loop_state import RunState
from blendrl.run_dir import RunDir, no_checkpoint
from blendrl.timing import Timer
from blendrl.video import VIDEO_DIR, video_name


@contextlib.contextmanager
def run_folder(runs_dir: Any, run_id: str) -> Iterator[RunDir]:
    """The run's folder, its lock released when the job leaves the block (a dead job's too)."""
    run = RunDir(runs_dir, run_id)
    try:
        yield run
    finally:
        run.unlock()


def resume_checkpoint(run: RunDir, args: Any, method: str, env: str, device: torch.device) -> dict:
    """The run's latest checkpoint, after taking the folder's lock: a UsageError when there is none,
    when it is another method's or environment's, or when ``args`` change what the run computes."""
    if not run.latest_checkpoint.exists():
        raise UsageError(no_checkpoint(run.latest_checkpoint))
    try:
        run.lock()
        ckpt = load_checkpoint(run.latest_checkpoint, map_location=device)
    except RunError as e:
        raise UsageError(str(e)) from e
    if ckpt.get("method") != method or ckpt.get("env") != env:
        raise UsageError(f"--resume: {run.latest_checkpoint} is a {ckpt.get('method')} run on "
                         f"{ckpt.get('env')}, not {method} on {env}")
    changed = resume_changes(type(args), ckpt["args"], args_to_dict(args))
    if changed:
        raise UsageError("--resume cannot change what the run computes: " + ", ".join(changed))
    return ckpt


def say(run_id: str, text: str) -> None:
    """One progress line of the run on stderr."""
    print(f"[{run_id}] {text}", file=sys.stderr, flush=True)


class RunLifecycle:
    """Everything a loop does around its algorithm's step (module docstring).

    ``state``: the loop's :class:`~blendrl.loop_state.RunState` (results, best return, training log,
    timing); ``payload(latest)``: the loop's checkpoint (``latest``: latest.pt, else best.pt);
    ``tb_step()``: the step TensorBoard purges after on a resume; ``before_checkpoint(finished)``: what must be durable first (online: the
    dataset, finished at the end); ``args``: the run's Args (``eval_episodes``, ``eval_envs``,
    ``eval_policy``, ``eval_video``, ``checkpoint_seconds``, ``resume``).
    """

    def __init__(self, run: RunDir, args: Any, env: str, device: torch.device, state: RunState,
                 payload: Callable[[bool], dict], tb_step: Callable[[], int],
                 before_checkpoint: Callable[[bool], None] | None = None):
        self.run, self.args, self.env, self.device, self.state = run, args, env, device, state
        self.payload, self.tb_step, self.before_checkpoint = payload, tb_step, before_checkpoint
        self.timer = Timer(run, state.timing)
        self._purge_step = tb_step() if args.resume else None
        self._tb = None
        self._last_checkpoint = time.perf_counter()
        self.interrupt = Interrupt()

    @property
    def run_id(self) -> str:
        return self.run.run_id

    def adopt(self, state: RunState) -> None:
        """Go on from a checkpoint's loop state (its timing included)."""
        self.state = state
        self.timer = Timer(self.run, state.timing)
        self._purge_step = self.tb_step() if self.args.resume else None

    def _payload(self, latest: bool) -> dict:
        self.state.timing = self.timer.state()
        return self.payload(latest)

    @property
    def tb(self):
        """The run's TensorBoard writer, made on first use (on a resume, the events the stopped
        process wrote after its checkpoint's step are purged)."""
        if self._tb is None:
            from torch.utils.tensorboard import SummaryWriter
            self._tb = SummaryWriter(str(self.run.path), purge_step=self._purge_step)
        return self._tb

    def close(self) -> None:
        if self._tb is not None:
            self._tb.close()

    # -- evaluation -----------------------------------------------------------------------------
    def evaluate(self, policy: torch.nn.Module, seed: int, interval: int, data_limit: int
                 ) -> tuple[EvalResult, float]:
        """The one evaluation of every method (``blendrl.evaluation``) with the run's settings:
        its result and seconds (counted as evaluation time). ``interval`` (1-based) and
        ``data_limit`` name its video (``--eval_video``, :func:`blendrl.video.video_name`)."""
        a = self.args
        video = (self.run.path / VIDEO_DIR / video_name(interval, data_limit)
                 if getattr(a, "eval_video", False) else None)
        t0 = time.perf_counter()
        res = evaluate(policy, self.env, a.eval_episodes, seed, self.device, policy=a.eval_policy,
                       num_envs=a.eval_envs, video=video)
        seconds = time.perf_counter() - t0
        self.timer.eval_seconds += seconds
        return res, seconds

    def record(self, entry: dict, res: EvalResult, step: int, what: str) -> None:
        """Append an evaluation's ``results.json`` entry (the loop has updated its own state), log
        it, and write the best checkpoint when it is the best so far."""
        st = self.state
        st.results.append(entry)
        self.tb.add_scalar("charts/eval_mean_return", res.mean, step)
        say(self.run_id, f"{what}: return {res.mean:.2f} +- {res.std:.2f} over {len(res.returns)} "
                         f"episodes ({entry['eval_seconds']:.1f}s)")
        if res.mean > st.best_return:
            st.best_return = res.mean
            save_checkpoint(self.run.best_checkpoint, self._payload(latest=False))

    # -- persistence ----------------------------------------------------------------------------
    def checkpoint(self, finished: bool = False) -> None:
        """What must be durable first, then latest.pt, results.json, training_log.pkl and
        timing.json, in that order."""
        if self.before_checkpoint is not None:
            self.before_checkpoint(finished)
        save_checkpoint(self.run.latest_checkpoint, self._payload(latest=True))
        self.run.write_results(self.state.results)
        self.run.write_training_log(self.state.training_log)
        self.timer.save(finished=finished)
        if self._tb is not None:
            self._tb.flush()
        self._last_checkpoint = time.perf_counter()

    def checkpoint_if_due(self) -> None:
        """A checkpoint when ``--checkpoint_seconds`` have passed since the last one."""
        if time.perf_counter() - self._last_checkpoint > self.args.checkpoint_seconds:
            self.checkpoint()

    # -- signals --------------------------------------------------------------------------------
    @property
    def stop_requested(self) -> bool:
        """SIGTERM or SIGUSR1 arrived (inside ``with lifecycle.interrupt:``)."""
        return self.interrupt.requested

    def stop(self, where: str) -> int:
        """Checkpoint after a signal, say so, and give the exit status that asks for ``--resume``."""
        self.checkpoint()
        say(self.run_id, f"interrupted by signal {self.interrupt.signum} {where}: checkpoint "
                         "written; rerun with --resume")
        return EXIT_INTERRUPTED
