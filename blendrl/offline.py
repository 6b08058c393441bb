"""Offline training shared by ``train_iql.py`` and ``train_blendrl_iql.py``: discrete IQL on growing
prefixes of an online run's dataset, each prefix evaluated in the live environment.

The golden rule (docs/DESIGN.md section 7): the data limits are exactly the online evaluation marks of
the dataset's manifest (a dataset without marks uses ``--intervals`` evenly spaced limits).
Interval ``k`` trains ``ceil(epochs * limit_k / batch_size)`` gradient steps on minibatches drawn
from the first ``limit_k`` transitions only, then evaluates with :func:`blendrl.evaluation.evaluate`,
appends one entry to ``results.json`` and checkpoints. Training continues from interval to interval
unless ``--reset_per_interval`` (then every interval starts again from the same initial weights).

Data: one ``DatasetReader`` is opened for the first interval to train and extended for each later
one (each chunk is opened once; its pools are read in place). The minibatches reach the device
through a feed (:mod:`blendrl.datasets.feed`): on CPU the reader samples in the loop; on CUDA the
prefix lives on the device (``--dataset_device cuda``; ``auto``: each interval whose prefix fits,
next to what other jobs on the GPU claimed) or ``--feed_workers`` background threads sample ahead
into pinned memory (the same batches whatever their number). A gradient step does not wait for
the device: its metrics are added up there and read once per ``--log_every`` steps.

Before any work, bad input is a :class:`~blendrl.exits.UsageError` (exit status 2): bad flags, a
missing or empty dataset, a dataset its online run has not finished writing (unless
``--partial_dataset``), an ``--env`` the dataset was not recorded on, ``--dataset_device cuda``
without CUDA or with a prefix too large for the device (next to the memory that other jobs on the
GPU claimed), a run folder that exists or that another job is writing, a ``--resume`` whose
checkpoint does not match. Then, still before any training
step, every chunk the run can train on is verified whole (sizes, CRC-32, finite floats): a broken
file is a :class:`~blendrl.exits.DatasetFault` (exit status 65, one line naming the file), and
nothing is trained on or recorded from it. A write that fails (disk full) exits 74 with what was
written intact. ``--resume`` of a complete run says so and exits 0. SIGTERM/SIGUSR1 make the loop checkpoint at the next gradient step
(mid-interval progress included) and exit 75; ``--resume`` continues at exactly that step.
"""

from __future__ import annotations

import copy
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Callable, Literal, NamedTuple

import numpy as np
import torch

from blendrl.agents.factory import BlendRLFields, blend_fields, build_agent, learning_rates
from blendrl.algos.iql import METRIC_KEYS, IQLConfig, IQLTrainer
from blendrl.envs import ENV_NAMES, get_spec
from blendrl.envs.base import EnvSpec
from blendrl.evaluation import result_entry
from blendrl.contract import EXIT_INTERRUPTED
from blendrl.exits import EXIT_PARTIAL, DatasetFault, guarded_main
from blendrl.algos.signal import LearnerSignal, SignalError
from blendrl.lifecycle import RunLifecycle, resume_checkpoint, run_folder, say
from blendrl.protocol import ProtocolFields, check_eval_policy, resolve_signal_fields
from blendrl.checkpoints import RESUME_FREE, args_to_dict
from blendrl.exits import RunError, UsageError
from blendrl.loop_state import OfflineLoopState, state_from_checkpoint, state_items
from blendrl.offline_data import (DatasetInfo, MarkFollower, check_dataset_choice, check_finished,
                                  data_limits, dataset_path, dataset_source, default_reader,
                                  inspect_dataset, verify_dataset, wait_for_dataset)
from blendrl.machine import default_threads, resolve_device
from blendrl.rng import rng_state, seed_everything, set_rng_state
from blendrl.run_dir import RunDir, validate_run_id
from blendrl.validation import check_ranges, check_rule_set, in_range


@dataclass
class OfflineArgs(ProtocolFields):
    """Offline discrete IQL on growing prefixes of an online run's dataset (one interval per
    online evaluation mark), each interval evaluated in the live environment."""

    dataset: Annotated[Path | None, RESUME_FREE] = None
    """the dataset folder to train on (holds manifest.json); or give --dataset_run_id"""
    dataset_run_id: Annotated[str | None, RESUME_FREE] = None
    """run id of the online run whose dataset {dataset_dir}/{dataset_run_id} to train on"""
    dataset_dir: Annotated[Path, RESUME_FREE] = Path("offline_dataset")
    """parent folder of datasets (used with --dataset_run_id; --minari_dataset converts into it)"""
    minari_dataset: Annotated[str | None, RESUME_FREE] = None
    """or train on a local Minari dataset NAMESPACE/NAME-vN (MINARI_DATASETS_PATH): this project's export, or a gymnasium CartPole-v1 / MountainCar-v0 one; converted once into {dataset_dir}/minari-{id} (docs/MINARI.md)"""
    env: Annotated[str | None, RESUME_FREE] = None
    """environment; must be the dataset's (default: the one in the dataset's manifest)"""
    run_id: Annotated[str | None, RESUME_FREE] = None
    """name of the run: its folder is {runs_dir}/{run_id} (default: {method}_on_{dataset}_s{seed}_{time})"""
    exp_id: str = "default"
    """experiment this run belongs to (recorded in run.json)"""
    runs_dir: Annotated[Path, RESUME_FREE] = Path("out/runs")
    """parent folder of runs"""
    epochs: Annotated[int, in_range("[1, inf)")] = 10
    """passes over the interval's data prefix: interval k trains ceil(epochs * limit_k / batch_size) gradient steps"""
    intervals: Annotated[int, in_range("[1, inf)"), RESUME_FREE] = 10
    """number of evenly spaced data limits, used only when the dataset records no evaluation marks"""
    follow: Annotated[bool, RESUME_FREE] = False
    """start while the online run is still writing the dataset (or before it begins): train each interval as soon as its mark is durable (listed in the manifest, the chunks below it verified), waiting for the next; the results equal those of a run started after the online run ended"""
    follow_timeout: Annotated[float, in_range("(0, inf)"), RESUME_FREE] = 86400.0
    """--follow: seconds to wait for the dataset to appear (then exit 2) or for the next mark (then end with the marks present: exit 3, partial)"""
    follow_poll: Annotated[float, in_range("(0, inf)"), RESUME_FREE] = 5.0
    """--follow: seconds between looks at the dataset's manifest while waiting"""
    partial_dataset: bool = False
    """train on the marks present in a dataset its online run has not finished writing (still running, or stopped early); recorded in run.json (dataset_partial) and shown as partial in the report. Without it such a dataset is refused"""
    eval_episodes: Annotated[int, in_range("[1, inf)")] = 10
    """episodes per interval evaluation"""
    eval_envs: Annotated[int, in_range("[1, inf)"), RESUME_FREE] = 8
    """parallel environments used by an evaluation"""
    batch_size: Annotated[int, in_range("[1, inf)")] = 256
    """minibatch size of a gradient step"""
    learning_rate: Annotated[float, in_range("(0, inf)")] = 3e-4
    """Adam learning rate of the critics (Q1, Q2, V) and of the neural actor"""
    expectile: Annotated[float, in_range("(0, 1)")] = 0.7
    """expectile of the value loss (0.5 = mean; towards 1 = max over the data's actions)"""
    beta: Annotated[float, in_range("[0, inf)")] = 3.0
    """inverse temperature of the advantage weights exp(beta * (Q - V))"""
    max_weight: Annotated[float, in_range("(0, inf)")] = 100.0
    """upper clip of the advantage weights"""
    gamma: Annotated[float, in_range("[0, 1]")] = 0.99
    """discount factor"""
    polyak: Annotated[float, in_range("(0, 1]")] = 0.005
    """step of the target Q networks towards the online ones after every update"""
    hidden: Annotated[int, in_range("[1, inf)")] = 64
    """hidden units of the actor's MLPs (vector states), as in the online scripts"""
    critic_hidden: Annotated[int, in_range("[1, inf)")] = 256
    """hidden units of the critics' MLPs (vector states; frames use the Nature CNN)"""
    reset_per_interval: bool = False
    """train each interval from the same initial weights instead of continuing from the previous interval"""
    seed: Annotated[int, in_range("[0, 4294967295]")] = 0
    """seed of torch, numpy and the minibatch sampler; evaluation seeds derive from it"""
    device: Annotated[str, RESUME_FREE] = "auto"
    """torch device: auto (CUDA when available, else CPU), cpu, cuda, cuda:1, ..."""
    dataset_device: Annotated[Literal["auto", "cpu", "cuda"], RESUME_FREE] = "auto"
    """where the data lives when training on CUDA: cuda (the prefix's frames kept on the device as uint8, stacks gathered there; the last interval's prefix must fit), cpu (sampled on the host by --feed_workers threads into pinned memory), auto (per interval: cuda while the prefix fits in the free device memory with headroom, next to the memory other jobs on the GPU claimed, else cpu). The same minibatches in every case"""
    feed_workers: Annotated[int | None, in_range("[1, inf)"), RESUME_FREE] = None
    """threads sampling minibatches on the host when training on CUDA with the data on the host (default: the job's CPUs but one, at most 8); the minibatches do not depend on it"""
    precision: Literal["fp32", "tf32", "bf16"] = "fp32"
    """the networks' passes in float32 (TF32 switched off, so "fp32" is float32 on a GPU too), in float32 with TensorFloat-32 convolutions and matmuls allowed on a GPU (tf32), or under bfloat16 autocast (bf16: about 2x the steps/s on Atari data on a CPU with AVX-512 bf16; not measured on a GPU; output layers, the logic reasoner, parameters, targets and losses stay float32)"""
    compile: Annotated[Literal["off", "default", "reduce-overhead"], RESUME_FREE] = "off"
    """torch.compile the networks of an IQL step (Q1, Q2, their targets, V, the actor's network): default (fused kernels) or reduce-overhead (also CUDA graphs); the first steps compile (tens of seconds, a C++ compiler needed on CPU). Off until shown on CUDA to give eager's losses"""
    threads: Annotated[int | None, in_range("[1, inf)"), RESUME_FREE] = None
    """torch CPU threads (default: 1 for vector states; the job's CPUs for frames)"""
    resume: Annotated[bool, RESUME_FREE] = False
    """continue the run from its latest checkpoint"""
    log_every: Annotated[int, in_range("[1, inf)"), RESUME_FREE] = 500
    """gradient steps between logging points (tensorboard, training_log.pkl)"""
    checkpoint_seconds: Annotated[float, in_range("(0, inf)"), RESUME_FREE] = 600.0
    """also checkpoint at least this often within an interval, besides after every interval"""
    progress_seconds: Annotated[float, in_range("[0, inf)"), RESUME_FREE] = 15.0
    """seconds between progress lines on stderr"""


@dataclass
class BlendRLOfflineArgs(OfflineArgs, BlendRLFields):
    """Offline discrete IQL of the BlendRL agent: the AWR loss trains the neural actor, the logic
    clause weights and the blender together (each at its own learning rate)."""

    offline_blend_ent_coef: Annotated[float, in_range("[0, inf)")] = 0.0
    """entropy bonus on the blend weights in the actor loss (online BlendRL's --blend_ent_coef; 0: none)"""



ReaderFactory = Callable[[Path, int, dict], Any]
"""``(dataset path, limit, manifest) -> reader`` with ``manifest``, ``sample(batch_size, rng)`` and
``extend(limit)``, made once for the first interval to train (on the manifest the job has already
read) and extended for each later one; by default a ``DatasetReader`` (:func:`default_reader`)."""


# --------------------------------------------------------------------------- argument checks

def check_args(args: OfflineArgs, blend: BlendRLFields | None) -> None:
    """Checks needing no file (``blend``: the BlendRL fields of a BlendRL method's ``args``):
    raises UsageError naming the flag."""
    check_dataset_choice(args)
    check_ranges(args)
    if args.env is not None and args.env not in ENV_NAMES:
        raise UsageError(f"unknown environment {args.env!r}; valid: {', '.join(ENV_NAMES)}")
    if args.resume and not args.run_id:
        raise UsageError("--resume needs the --run_id of the run to continue")
    try:
        if args.dataset_run_id is not None:
            validate_run_id(args.dataset_run_id)
        if args.run_id is not None:
            validate_run_id(args.run_id)
    except RunError as e:
        raise UsageError(str(e)) from e
    try:
        check_eval_policy(args.eval_policy)
    except SignalError as e:
        raise UsageError(str(e)) from e
    iql_config(args, blend)  # the trainer's own checks, also before any work


def iql_config(args: OfflineArgs, blend: BlendRLFields | None,
               signal: LearnerSignal | None = None) -> IQLConfig:
    """The trainer's hyperparameters; ``blend``: the BlendRL fields of a BlendRL method's
    ``args`` (:func:`~blendrl.agents.factory.blend_fields`); ``signal``: the resolved learner
    signal (the raw reward until it is resolved)."""
    try:
        return IQLConfig(gamma=args.gamma, expectile=args.expectile, beta=args.beta,
                         max_weight=args.max_weight, polyak=args.polyak,
                         critic_lr=args.learning_rate,
                         actor_lrs=learning_rates(args.learning_rate, blend),
                         signal=signal or LearnerSignal(),
                         blend_ent_coef=getattr(blend, "offline_blend_ent_coef", 0.0),
                         precision=args.precision)
    except ValueError as e:
        raise UsageError(f"bad hyperparameter: {e}") from e


def compile_networks(trainer: IQLTrainer, mode: str) -> None:
    """``--compile``: :meth:`IQLTrainer.compile` (the whole step's passes as one compiled graph,
    the actor's included, and the actor's networks for the evaluation; state-dict keys unchanged,
    so checkpoints are those of eager runs)."""
    trainer.compile(mode)


class DataPlacement(NamedTuple):
    """Where the minibatches come from: ``where`` is ``"cpu"`` (host sampling), ``"cuda"`` (the
    prefix on the device, its memory claimed by ``claim`` before any work) or ``"auto"`` (decided
    per interval, claiming through ``claims``)."""

    where: str
    claim: Any = None
    claims: Any = None

    def release(self) -> None:
        """Give back the device memory claimed for the data (idempotent)."""
        if self.claim is not None:
            self.claim.release()


def choose_dataset_device(args: OfflineArgs, device: torch.device, info: DatasetInfo,
                          limits: list[int]) -> DataPlacement:
    """``--dataset_device`` resolved for training on ``device`` (UsageError if it cannot be
    honoured): ``cpu`` samples on the host; a forced ``cuda`` claims the device memory of the
    last interval's prefix now (:class:`~blendrl.datasets.claims.DeviceClaims`: the other jobs on
    the GPU count), or fails; ``auto`` on CUDA decides per interval
    (:class:`~blendrl.datasets.feed.AutoFeed`)."""
    from blendrl.datasets import DatasetError
    from blendrl.datasets.claims import DeviceClaims
    from blendrl.datasets.device_pool import device_bytes_needed
    from blendrl.datasets.feed import DatasetDeviceError, choose_dataset_device as choose

    choice = args.dataset_device
    try:
        if device.type != "cuda" or choice == "cpu" or (choice == "cuda" and not torch.cuda.is_available()):
            return DataPlacement(choose(choice, device, 0))  # "cpu", or why cuda cannot be
        claims = DeviceClaims.for_device(device)
        if choice == "auto":
            return DataPlacement("auto", claims=claims)
        need = device_bytes_needed(info.manifest, limits[-1])
        claim, room = claims.claim([need])
        if claim is None:
            choose("cuda", device, need, (room.free, room.total), room.held)  # raises, saying why
            raise DatasetDeviceError(f"--dataset_device cuda: the dataset prefix does not fit on {device}")
        return DataPlacement("cuda", claim=claim)
    except (DatasetError, DatasetDeviceError) as e:
        raise UsageError(str(e)) from e


def grad_steps_for(limit: int, epochs: int, batch_size: int) -> int:
    """Gradient steps of an interval whose prefix holds ``limit`` transitions."""
    return math.ceil(epochs * limit / batch_size)


# --------------------------------------------------------------------------- entry points

def run_offline(args: OfflineArgs, method: str, reader_factory: ReaderFactory | None = None) -> int:
    """Validate, verify the data, then train every interval; returns the exit status (0 done or
    already complete, 75 interrupted).

    ``reader_factory`` replaces :func:`default_reader` (tests wrap it to watch what is sampled).
    """
    from blendrl.datasets import has_life_lost

    reader_factory = reader_factory or default_reader
    blend = blend_fields(method, args)
    check_args(args, blend)
    if args.follow:
        wait_for_dataset(dataset_path(args)[0], args.follow_timeout, args.follow_poll,
                         args.run_id or "follow")
    info = inspect_dataset(args)
    partial = False if args.follow else check_finished(args, info)
    try:  # the learner's signal: unset flags take the dataset's online setting (blendrl.protocol)
        args, signal = resolve_signal_fields(args, get_spec(info.env), recorded=info.metadata)
    except SignalError as e:
        raise UsageError(str(e)) from e
    if blend is not None:
        check_rule_set(info.env, blend.rules)
    if signal.life_loss_terminal and not has_life_lost(info.manifest):
        raise UsageError(f"--life_loss_terminal: dataset {info.path} does not record lost lives "
                         "(life_lost: format version 2, written by an online run of a game "
                         "with lives); pass --life_loss_terminal False")
    limits = data_limits(info, args.intervals) if info.finished or not args.follow else info.limits_so_far
    try:
        device = resolve_device(args.device)
    except RunError as e:
        raise UsageError(str(e)) from e
    placement = choose_dataset_device(args, device, info, limits or [info.planned_transitions])
    try:
        run_id = args.run_id or (f"{method}_on_{info.path.name}_s{args.seed}_"
                                 f"{time.strftime('%Y%m%d-%H%M%S')}")
        with run_folder(args.runs_dir, run_id) as run:
            return _train(args, method, blend, signal, info, partial, limits, device, placement,
                          run, reader_factory)
    finally:
        placement.release()


def _train(args: OfflineArgs, method: str, blend: BlendRLFields | None, signal: LearnerSignal,
           info: DatasetInfo, partial: bool, limits: list[int], device: torch.device,
           dataset_device: DataPlacement, run: RunDir, reader_factory: ReaderFactory) -> int:
    """:func:`run_offline` from the run folder on: resume checks, data verification, training."""
    from blendrl.datasets import DatasetError

    run_id = run.run_id
    ckpt = None
    if args.resume:
        ckpt, limits = _resume_checkpoint(run, args, method, info, limits, device)
        if ckpt["interval"] >= len(limits) and not (args.follow and not info.finished):
            say(run_id, f"already complete ({len(ckpt.get('results', []))} of {len(limits)} "
                        "intervals evaluated): nothing to resume, nothing changed")
            return 0
    workers = default_threads(True)
    if limits:
        verify_dataset(info, limits, run_id, args.progress_seconds, workers=workers)
    follower = (MarkFollower(info, limits, args.follow_timeout, args.follow_poll, run_id,
                             args.progress_seconds, workers, run.path) if args.follow else None)
    try:
        run.prepare(args.resume)
    except RunError as e:
        raise UsageError(str(e)) from e
    if follower is not None:  # a resumed follower: its online job runs again
        (run.path / MarkFollower.ONLINE_ENDED).unlink(missing_ok=True)
    start = ckpt["interval"] if ckpt is not None else 0
    if follower is not None and start >= len(limits):  # nothing durable to train on yet
        limits = follower.wait_next()
        if limits is None:
            return _nothing_followed(follower, run_id)

    spec = get_spec(info.env)
    torch.set_num_threads(args.threads or default_threads(spec.is_image))
    seed_everything(args.seed)
    agent = build_agent(spec, blend, args.hidden).to(device)
    trainer = IQLTrainer.for_spec(agent, spec, iql_config(args, blend, signal), device, hidden=args.critic_hidden)
    compile_networks(trainer, args.compile)
    loop = OfflineLoop(args, method, spec, info, limits, trainer, run, device, dataset_device, follower)
    try:
        manifest = follower.manifest if follower is not None else info.manifest
        first_reader = reader_factory(info.path, limits[start], manifest)
        with loop.life.interrupt:
            if ckpt is not None:
                loop.restore(ckpt)
                run.say_if_resumed_elsewhere(device)
            else:
                run.write_run_json(exp_id=args.exp_id, method=method, env=info.env, seed=args.seed,
                                   args=args, dataset_source=dataset_source(info),
                                   device=device, extra={"dataset_partial": partial})
            return loop.run(first_reader)
    except DatasetError as e:  # a chunk turned out broken when opened (changed since verified)
        raise DatasetFault(str(e)) from e
    finally:
        loop.life.close()


def _nothing_followed(follower: MarkFollower, run_id: str) -> int:
    """``--follow`` ended before any mark: the online run finished without one, stopped, or a
    signal came; nothing was trained or recorded."""
    if follower.finished:
        raise UsageError(f"--follow: the online run finished dataset {follower.path} without an "
                         "evaluation mark; train on it without --follow (evenly spaced limits)")
    if follower.stopped:
        say(run_id, "--follow: no mark came; nothing trained")
        return EXIT_PARTIAL
    return EXIT_INTERRUPTED


def _resume_checkpoint(run: RunDir, args: OfflineArgs, method: str, info: DatasetInfo,
                       limits: list[int], device: torch.device) -> tuple[dict, list[int]]:
    """The latest checkpoint, checked against this invocation (UsageError on any mismatch), and
    the data limits to go on with: the run's own (a ``--partial_dataset`` run keeps the limits it
    started with while the dataset has grown since). Takes the run folder's lock first."""
    ckpt = resume_checkpoint(run, args, method, info.env, device)
    recorded = ckpt.get("limits")
    grown = ((args.partial_dataset or args.follow) and isinstance(recorded, list)
             and recorded == limits[:len(recorded)])
    if recorded != limits and not grown:
        raise UsageError(f"--resume: the dataset {info.path} gives data limits {limits}, the run was "
                         f"trained with {recorded}")
    # a following run goes on with every mark there is now; a partial one with its own
    return ckpt, list(limits if args.follow else recorded)


def main(args: OfflineArgs, method: str) -> int:
    """Entry point for the scripts: a usage error, a dataset fault or a failed write -> one line
    on stderr and its exit status (:mod:`blendrl.exits`)."""
    return guarded_main(lambda: run_offline(args, method))


# --------------------------------------------------------------------------- the loop

class OfflineLoop:
    """The interval loop's state, its steps, logging and persistence."""

    def __init__(self, args: OfflineArgs, method: str, spec: EnvSpec, info: DatasetInfo,
                 limits: list[int], trainer: IQLTrainer, run: RunDir, device: torch.device,
                 dataset_device: "str | DataPlacement" = "cpu", follower: MarkFollower | None = None):
        self.args, self.method, self.spec, self.info = args, method, spec, info
        self.follower, self.reader = follower, None
        self.limits, self.trainer, self.run_dir, self.device = limits, trainer, run, device
        self.placement = (dataset_device if isinstance(dataset_device, DataPlacement)
                          else DataPlacement(dataset_device))
        self.dataset_device = self.placement.where
        self.initial_trainer = copy.deepcopy(trainer.state_dict()) if args.reset_per_interval else None
        self.sampler = np.random.default_rng(args.seed)
        self.state = OfflineLoopState()
        self.life = RunLifecycle(run, args, info.env, device, self.state, self.payload,
                                 tb_step=lambda: self.state.grad_steps)
        self._window_sum: torch.Tensor | None = None  # METRIC_KEYS summed on the device (float64)
        self._window_n = 0
        self._last_batch: Any = None
        self._window_t0 = self._last_progress = time.perf_counter()

    @property
    def tb(self):
        return self.life.tb

    def restore(self, ckpt: dict) -> None:
        self.trainer.load_state_dict(ckpt["trainer"])
        set_rng_state(ckpt["rng"], self.device)
        self.sampler.bit_generator.state = ckpt["sampler"]
        self.state = state_from_checkpoint(OfflineLoopState, ckpt)
        self.life.adopt(self.state)
        self._say(f"resuming at interval {self.state.interval + 1}/{len(self.limits)}, step "
                  f"{self.state.step_in_interval} of it")

    def run(self, reader: Any = None) -> int:
        """Train the remaining intervals; 0 when all are done, 75 when a signal stopped it.

        ``reader`` holds the first remaining interval's prefix; each later interval extends it.
        The feed (:func:`~blendrl.datasets.feed.make_feed`) draws every batch's positions from
        ``self.sampler`` whichever it is, so the batches and the checkpointed sampler state do
        not depend on ``--dataset_device`` or ``--feed_workers``.
        """
        from blendrl.datasets.feed import make_feed

        feed = None
        self.reader = reader
        if reader is not None:
            p = self.placement
            capacity = self.limits[-1] if self.follower is None else \
                max(self.limits[-1], self.info.planned_transitions)
            feed = make_feed(reader, self.device, p.where, self.args.batch_size, self.sampler,
                             capacity, workers=getattr(self.args, "feed_workers", None),
                             limits=self.limits[self.state.interval:], claim=p.claim,
                             claims=p.claims, say=self._say)
        try:
            return self._run(feed)
        finally:
            if feed is not None:
                feed.close()

    def _run(self, feed: Any) -> int:
        st, a, life = self.state, self.args, self.life
        while st.interval < len(self.limits) or self._follow():
            k = st.interval
            limit = self.limits[k]
            if life.stop_requested:
                return self._interrupted()
            feed.set_limit(limit)  # opens only the chunks this interval adds
            n_steps = grad_steps_for(limit, a.epochs, a.batch_size)
            if st.step_in_interval == 0 and self.initial_trainer is not None:
                self.trainer.load_state_dict(self.initial_trainer)
            while st.step_in_interval < n_steps:
                if life.stop_requested:
                    return self._interrupted()
                self.train_step(feed)
                if st.step_in_interval % a.log_every == 0:
                    self.log_window(k, limit)
                life.checkpoint_if_due()
                self.maybe_progress(n_steps)
            self.log_window(k, limit)
            self.evaluate_interval(k, limit)
            life.checkpoint()
        if life.stop_requested:
            return self._interrupted()
        if self.follower is not None:
            if self.follower.stopped:
                return self._partial()
            self.run_dir.record_partial(False)  # a resumed partial run that has caught up
        life.checkpoint(finished=True)
        return 0

    def _follow(self) -> bool:
        """``--follow``: wait for the next durable mark; True when there is one to train."""
        if self.follower is None:
            return False
        limits = self.follower.wait_next(lambda: self.life.stop_requested)
        if limits is None:
            return False
        self.limits = limits
        self.reader.refresh()  # the chunks the online run has listed since
        return True

    def _partial(self) -> int:
        """The online run stopped writing before its end: every mark it wrote is trained; the
        run is recorded as partial (``run.json``) and ends with exit 3."""
        self.life.checkpoint()
        self.run_dir.record_partial(True)
        self._say(f"partial: {len(self.limits)} of {self.info.metadata.get('planned_marks', '?')} "
                  "marks trained (the online run stopped writing); --resume goes on once it writes again")
        return EXIT_PARTIAL

    def _say(self, text: str) -> None:
        say(self.run_dir.run_id, text)

    def _interrupted(self) -> int:
        st = self.state
        return self.life.stop(f"in interval {st.interval + 1} at step {st.step_in_interval}")

    # -- steps --------------------------------------------------------------------------------
    def train_step(self, feed: Any) -> None:
        """One gradient step; its metrics are added up on the device (read by :meth:`log_window`)."""
        t0 = time.perf_counter()
        batch = feed.next()
        stats = self.trainer.update_stats(batch).double()
        self._window_sum = stats if self._window_sum is None else self._window_sum + stats
        self._window_n += 1
        self._add_train_time(time.perf_counter() - t0)
        self.state.step_in_interval += 1
        self.state.grad_steps += 1
        self._last_batch = batch

    def _add_train_time(self, dt: float) -> None:
        self.state.interval_train_seconds += dt
        self.life.timer.train_seconds += dt

    def log_window(self, k: int, limit: int) -> None:
        """Average the metrics since the last logging point into tensorboard and the training log
        (the one read of the device's metrics per logging point; the time it waits for the device
        to finish the steps queued is training time)."""
        if not self._window_n:
            return
        gs = self.state.grad_steps
        t0 = time.perf_counter()
        means = (self._window_sum / self._window_n).tolist()
        self._add_train_time(time.perf_counter() - t0)
        stats = {key: float(v) for key, v in zip(METRIC_KEYS, means, strict=True)}
        elapsed = time.perf_counter() - self._window_t0
        for key, v in stats.items():
            self.tb.add_scalar(key, v, gs)
        self.tb.add_scalar("charts/SPS", self._window_n / max(elapsed, 1e-9), gs)
        self.tb.add_scalar("charts/learning_rate", self.trainer.actor_optimizer.param_groups[0]["lr"], gs)
        log = self.state.training_log
        log["updates"].append({"global_step": gs, "interval": k + 1, "data_limit": limit, **stats})
        weight = self._logic_weight()
        if weight is not None:
            log["blend"].append({"global_step": gs, "logic_weight_mean": float(weight.mean()),
                                 "logic_weight_std": float(weight.std()) if weight.numel() > 1 else 0.0})
            self.tb.add_scalar("blend/logic_weight", float(weight.mean()), gs)
        self._window_sum, self._window_n = None, 0
        self._window_t0 = time.perf_counter()

    @torch.no_grad()
    def _logic_weight(self) -> torch.Tensor | None:
        """The logic actor's blend weight on the last minibatch (BlendRL), else None."""
        batch = self._last_batch
        policy = getattr(self.trainer.actor, "policy", None)
        if batch is None or policy is None:
            return None
        weight = policy(batch.logic_state, batch.neural_state).logic_weight
        return None if weight is None else weight.float()

    def maybe_progress(self, n_steps: int) -> None:
        now = time.perf_counter()
        if now - self._last_progress < self.args.progress_seconds:
            return
        self._last_progress = now
        st = self.state
        self._say(f"interval {st.interval + 1}/{len(self.limits)} step {st.step_in_interval}/"
                  f"{n_steps} ({st.grad_steps} in all)")

    def evaluate_interval(self, k: int, limit: int) -> None:
        st = self.state
        # Evaluation seeds of the ONLINE run whose data this is: its point at the same x saw the
        # very same episode starts (a paired comparison); --seed only seeds training here.
        res, eval_seconds = self.life.evaluate(self.trainer.actor,
                                               int(self.info.metadata.get("seed", self.args.seed)),
                                               k + 1, limit)
        entry = result_entry(res, interval=k + 1, data_limit=limit,
                             train_seconds=st.interval_train_seconds, eval_seconds=eval_seconds,
                             grad_steps=st.step_in_interval)
        st.interval += 1
        st.step_in_interval = 0
        st.interval_train_seconds = 0.0
        self.life.record(entry, res, st.grad_steps,
                         f"interval {k + 1}/{len(self.limits)} (data limit {limit}, "
                         f"{entry['grad_steps']} gradient steps)")

    # -- persistence --------------------------------------------------------------------------
    def payload(self, latest: bool = True) -> dict:
        """The checkpoint (the same for latest.pt and best.pt)."""
        return {"method": self.method, "env": self.info.env, "args": args_to_dict(self.args),
                "dataset": str(self.info.path), "limits": self.limits,
                "trainer": self.trainer.state_dict(), "rng": rng_state(self.device),
                "sampler": self.sampler.bit_generator.state, **state_items(self.state)}
