"""Online training shared by ``train_neuralppo.py`` and ``train_blenderl.py``: PPO on a vector
env, every transition saved through ``DatasetWriter``, interval evaluations, checkpoints, resume.

The loop, per PPO iteration: (1) if SIGTERM/SIGUSR1 arrived, checkpoint and exit 75;
(2) collect ``num_steps`` steps of ``num_envs`` copies, each step written to the dataset in
experience order; (3) PPO update; (4) at the first iteration boundary at or after each interval
mark, evaluate with :func:`blendrl.evaluation.evaluate`, record the exact transition count in
``results.json`` and as a dataset mark, and checkpoint. A checkpoint always flushes the dataset,
so that ``--resume`` continues it at exactly the checkpointed transition count, and holds a
snapshot of every environment copy (:mod:`blendrl.envs.snapshot`) with the RNG states, so that
the resumed run computes exactly what the uninterrupted run computes.
"""

from __future__ import annotations

import math
import sys
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Annotated

import numpy as np
import torch

from blendrl.agents.base import Agent
from blendrl.agents.factory import BlendRLFields, blend_fields, build_agent, learning_rates
from blendrl.algos.precision import set_tf32
from blendrl.algos.ppo import PPOConfig, RolloutStorage, ppo_update
from blendrl.algos.optim import adam, load_adam_state
from blendrl.envs import ENV_NAMES, get_spec, make_vec_env
from blendrl.envs import snapshot
from blendrl.envs.base import EnvSpec, VecEnv
from blendrl.exits import guarded_main
from blendrl.evaluation import result_entry, to_tensor
from blendrl.algos.signal import LearnerSignal, SignalError
from blendrl.protocol import ProtocolFields, resolve_signal_fields
from blendrl.lifecycle import RunLifecycle, resume_checkpoint, run_folder, say
from blendrl.checkpoints import RESUME_FREE, args_to_dict
from blendrl.exits import RunError, UsageError
from blendrl.loop_state import OnlineLoopState, interval_marks, state_from_checkpoint, state_items
from blendrl.machine import default_threads, resolve_device
from blendrl.rng import rng_state, seed_everything, set_rng_state
from blendrl.run_dir import RunDir, validate_run_id
from blendrl.validation import check_ranges, check_rule_set, in_range


@dataclass
class OnlineArgs(ProtocolFields):
    """Online PPO training. Hyperparameters left unset take the per-environment defaults of
    CleanRL's PPO (classic control: ppo.py; Atari: ppo_atari.py)."""

    env: Annotated[str, RESUME_FREE] = "cartpole"
    """environment: a package of blendrl/envs/ (cartpole, mountaincar, donkeykong, kangaroo, seaquest); an unknown name lists them"""
    total_timesteps: Annotated[int | None, in_range("[1, inf)")] = None
    """environment transitions to collect (default: 500000 classic control, 10000000 Atari); rounded up to whole PPO iterations"""
    num_envs: Annotated[int | None, in_range("[1, inf)")] = None
    """parallel environments (default: 4 classic control, 8 Atari)"""
    num_steps: Annotated[int, in_range("[1, inf)")] = 128
    """steps per environment per PPO iteration (rollout length)"""
    seed: Annotated[int, in_range("[0, 4294967295]")] = 0
    """seed of torch, numpy and the training environments (copy i gets seed + i)"""
    run_id: Annotated[str | None, RESUME_FREE] = None
    """name of the run: its folder is {runs_dir}/{run_id} (default: {method}_{env}_s{seed}_{time})"""
    exp_id: str = "default"
    """experiment this run belongs to (recorded in run.json)"""
    save_dataset: bool = False
    """save every transition to {dataset_dir}/{run_id} for offline training"""
    dataset_dir: Annotated[Path, RESUME_FREE] = Path("offline_dataset")
    """parent folder of datasets"""
    runs_dir: Annotated[Path, RESUME_FREE] = Path("out/runs")
    """parent folder of runs"""
    intervals: Annotated[int, in_range("[1, inf)")] = 10
    """number of interval evaluations, at evenly spaced transition counts up to total_timesteps"""
    eval_episodes: Annotated[int, in_range("[1, inf)")] = 10
    """episodes per interval evaluation"""
    eval_envs: Annotated[int, in_range("[1, inf)"), RESUME_FREE] = 8
    """parallel environments used by an evaluation"""
    resume: Annotated[bool, RESUME_FREE] = False
    """continue the run from its latest checkpoint"""
    device: Annotated[str, RESUME_FREE] = "auto"
    """torch device: auto (CUDA when available, else CPU), cpu, cuda, cuda:1, ..."""
    threads: Annotated[int | None, in_range("[1, inf)"), RESUME_FREE] = None
    """torch CPU threads (default: 1 for vector states; the job's CPUs for frames)"""
    learning_rate: Annotated[float, in_range("(0, inf)")] = 2.5e-4
    """learning rate of the neural actor and critic"""
    anneal_lr: bool = True
    """anneal learning rates linearly to 0 over training"""
    gamma: Annotated[float, in_range("[0, 1]")] = 0.99
    """discount factor"""
    gae_lambda: Annotated[float, in_range("[0, 1]")] = 0.95
    """GAE lambda"""
    num_minibatches: Annotated[int, in_range("[1, inf)")] = 4
    """minibatches per update epoch"""
    update_epochs: Annotated[int, in_range("[1, inf)")] = 4
    """update epochs per PPO iteration"""
    norm_adv: bool = True
    """normalise advantages per minibatch"""
    clip_coef: Annotated[float | None, in_range("(0, inf)")] = None
    """PPO clipping coefficient (default: 0.2 classic control, 0.1 Atari)"""
    clip_vloss: bool = True
    """clip the value loss as CleanRL does"""
    ent_coef: Annotated[float, in_range("[0, inf)")] = 0.01
    """entropy bonus coefficient"""
    vf_coef: Annotated[float, in_range("[0, inf)")] = 0.5
    """value loss coefficient"""
    max_grad_norm: Annotated[float, in_range("(0, inf)")] = 0.5
    """gradient clipping norm"""
    target_kl: Annotated[float | None, in_range("(0, inf)")] = None
    """stop an update early when the approximate KL exceeds this"""
    hidden: Annotated[int, in_range("[1, inf)")] = 64
    """hidden units of the MLPs (vector states)"""
    chunk_size: Annotated[int, in_range("[1, inf)"), RESUME_FREE] = 50_000
    """transitions per dataset chunk file"""
    checkpoint_seconds: Annotated[float, in_range("(0, inf)"), RESUME_FREE] = 600.0
    """also checkpoint (and flush the dataset) at least this often, besides every evaluation"""
    progress_seconds: Annotated[float, in_range("[0, inf)"), RESUME_FREE] = 15.0
    """seconds between progress lines on stderr"""


@dataclass
class BlendRLOnlineArgs(OnlineArgs, BlendRLFields):
    """Online PPO training of the BlendRL agent (neural actor + logic actor + blender)."""

    blend_ent_coef: Annotated[float, in_range("[0, inf)")] = 0.01
    """entropy bonus on the blend weights (BlendRL's default)"""


def resolve_args(args: OnlineArgs, method: str) -> OnlineArgs:
    """Validate and fill in per-environment defaults; raises UsageError."""
    check_ranges(args)
    if args.env not in ENV_NAMES:
        raise UsageError(f"unknown environment {args.env!r}; valid: {', '.join(ENV_NAMES)}")
    atari = get_spec(args.env).is_image
    args = replace(
        args,
        total_timesteps=_default(args.total_timesteps, 10_000_000 if atari else 500_000),
        num_envs=_default(args.num_envs, 8 if atari else 4),
        clip_coef=args.clip_coef if args.clip_coef is not None else (0.1 if atari else 0.2),
        run_id=args.run_id or f"{method}_{args.env}_s{args.seed}_{time.strftime('%Y%m%d-%H%M%S')}",
    )
    try:
        validate_run_id(args.run_id)
        args, _ = resolve_signal_fields(args, get_spec(args.env))
    except (RunError, SignalError) as e:
        raise UsageError(str(e)) from e
    batch = args.num_envs * args.num_steps
    if args.total_timesteps / args.intervals < batch:
        raise UsageError(
            f"--intervals {args.intervals} too many: marks every {args.total_timesteps / args.intervals:.0f} "
            f"transitions, but one PPO iteration collects {batch} (num_envs x num_steps); "
            "use fewer intervals or more total_timesteps")
    if batch % args.num_minibatches:
        raise UsageError(f"--num_minibatches {args.num_minibatches} does not divide the batch of "
                         f"{batch} transitions (num_envs x num_steps)")
    if blend_fields(method, args) is not None:
        check_rule_set(args.env, args.rules)
    return args


def _default(value, default):
    return default if value is None else value


class _Progress:
    """Progress lines every ``every`` seconds; the speed counts from this process's start
    (``step0``: the step it started or resumed at)."""

    def __init__(self, run_id: str, total: int, every: float, step0: int):
        self.run_id, self.total, self.every = run_id, total, every
        self.t0 = self.last = time.perf_counter()
        self.step0 = step0

    def maybe_print(self, step: int, recent: list[float], force: bool = False) -> None:
        now = time.perf_counter()
        if not force and now - self.last < self.every:
            return
        self.last = now
        sps = (step - self.step0) / max(now - self.t0, 1e-9)
        eta = (self.total - step) / sps if sps > 0 else float("inf")
        ret = f"{np.mean(recent[-20:]):.1f}" if recent else "n/a"
        print(f"[{self.run_id}] step {step}/{self.total} ({100 * step / self.total:.0f}%) "
              f"SPS {sps:.0f} recent return {ret} ETA {eta / 60:.1f} min", file=sys.stderr, flush=True)


def run_online(args: OnlineArgs, method: str) -> int:
    """Train; returns the process exit status (0 done, 75 interrupted and resumable)."""
    blend = blend_fields(method, args)
    if args.resume and not args.run_id:
        raise UsageError("--resume needs the --run_id of the run to continue")
    args = resolve_args(args, method)
    with run_folder(args.runs_dir, args.run_id) as run:
        return _train(args, method, blend, run)


def _train(args: OnlineArgs, method: str, blend: BlendRLFields | None, run: RunDir) -> int:
    """:func:`run_online` from the run folder on: resume or start, then the loop."""
    spec = get_spec(args.env)
    dataset_path = (Path(args.dataset_dir) / args.run_id).resolve() if args.save_dataset else None
    if dataset_path is not None and not args.resume and dataset_path.exists() and any(dataset_path.iterdir()):
        raise UsageError(f"dataset folder {dataset_path} already exists: remove it or choose another --run_id")
    try:
        run.prepare(args.resume)
        device = resolve_device(args.device)
    except RunError as e:
        raise UsageError(str(e)) from e
    torch.set_num_threads(args.threads or default_threads(spec.is_image))
    set_tf32("fp32")  # PPO computes in float32, also on a GPU (cuDNN's default would be TF32)

    seed_everything(args.seed)
    agent = build_agent(spec, blend, args.hidden).to(device)
    optimizer = adam(agent.optimizer_param_groups(learning_rates(args.learning_rate, blend)), eps=1e-5)
    initial_lrs = [g["lr"] for g in optimizer.param_groups]
    num_iterations = math.ceil(args.total_timesteps / (args.num_envs * args.num_steps))
    marks = interval_marks(args.total_timesteps, args.intervals)
    if args.resume:
        started = _resume(run, args, method, agent, optimizer, device, num_iterations)
        if started is None:
            return 0
        state, env_snapshot = started
    else:
        state, env_snapshot = OnlineLoopState(), None
        source = ({"role": "written", "path": str(dataset_path), "run_id": args.run_id}
                  if dataset_path is not None else None)
        run.write_run_json(exp_id=args.exp_id, method=method, env=args.env, seed=args.seed,
                           args=args, dataset_source=source, device=device)
    writer = _dataset_writer(args, method, dataset_path, len(marks), num_iterations, state)
    loop = _OnlineLoop(args, method, spec, agent, optimizer, initial_lrs, ppo_config(args), run,
                       writer, state, marks, num_iterations, device, env_snapshot)
    try:
        return loop.run()
    except Exception as e:
        _record_failure(writer, e)
        raise
    finally:
        loop.life.close()
        if writer is not None:
            writer.close()


def _record_failure(writer, error: Exception) -> None:
    """Record in the dataset's manifest that the run failed (``writer_stopped``: a follower then
    ends at once instead of waiting for marks), best effort: a failure to write it (the disk
    that caused the error) leaves the original error to be reported."""
    if writer is None:
        return
    try:
        writer.stop(f"{type(error).__name__}: {error}"[:300])
    except Exception:  # noqa: BLE001 -- the original error is the one to report
        pass


def ppo_config(args: OnlineArgs) -> PPOConfig:
    """The PPO update's hyperparameters from the Args."""
    return PPOConfig(gamma=args.gamma, gae_lambda=args.gae_lambda, num_minibatches=args.num_minibatches,
                     update_epochs=args.update_epochs, norm_adv=args.norm_adv, clip_coef=args.clip_coef,
                     clip_vloss=args.clip_vloss, ent_coef=args.ent_coef, vf_coef=args.vf_coef,
                     max_grad_norm=args.max_grad_norm, target_kl=args.target_kl,
                     blend_ent_coef=getattr(args, "blend_ent_coef", 0.0))


def _resume(run: RunDir, args: OnlineArgs, method: str, agent: Agent, optimizer, device: torch.device,
            num_iterations: int) -> tuple[OnlineLoopState, dict | None] | None:
    """The agent, optimiser and RNG restored from the latest checkpoint; the loop state and the
    environments' snapshot to go on from, or None (said) when the run is already complete."""
    ckpt = resume_checkpoint(run, args, method, args.env, device)
    if int(ckpt.get("iteration", 0)) >= num_iterations:
        say(args.run_id, f"already complete ({len(ckpt.get('results', []))} evaluations, "
                         f"{ckpt.get('global_step')} steps): nothing to resume, nothing changed")
        return None
    agent.load_state_dict(ckpt["agent"])
    load_adam_state(optimizer, ckpt["optimizer"])
    set_rng_state(ckpt["rng"], device)
    state = state_from_checkpoint(OnlineLoopState, ckpt)
    env_snapshot = snapshot.to_cpu(ckpt.get("environments"))
    version = (env_snapshot or {}).get("vec", {}).get("version")
    if env_snapshot is not None and version != snapshot.SNAPSHOT_VERSION:
        say(args.run_id, f"warning: the checkpoint's environment snapshot is of version {version}, "
                         f"this version reads {snapshot.SNAPSHOT_VERSION}: it is not used")
        env_snapshot = None
    say(args.run_id, f"resuming at step {state.global_step} (iteration {state.iteration})")
    run.say_if_resumed_elsewhere(device)
    return state, env_snapshot


def _dataset_writer(args: OnlineArgs, method: str, path: Path | None, planned_marks: int,
                    num_iterations: int, state: OnlineLoopState):
    """The run's DatasetWriter (None without ``--save_dataset``); a resumed run continues its
    dataset at the checkpoint's step."""
    if path is None:
        return None
    from blendrl.datasets import DatasetWriter

    spec = get_spec(args.env)
    return DatasetWriter(
        path, env=args.env, num_envs=args.num_envs, logic_shape=spec.logic_shape,
        neural_shape=spec.neural_shape, neural_dtype=spec.neural_dtype, n_actions=spec.n_actions,
        chunk_size=args.chunk_size, life_lost=spec.has_lives,
        metadata={"method": method, "run_id": args.run_id, "exp_id": args.exp_id, "seed": args.seed,
                  "reward_transform": args.reward_transform,
                  "life_loss_terminal": args.life_loss_terminal, "planned_marks": planned_marks,
                  "planned_transitions": num_iterations * args.num_envs * args.num_steps},
        resume_at=state.global_step if args.resume else None)


class _OnlineLoop:
    """The training loop's state and steps (kept apart from argument handling)."""

    def __init__(self, args, method, spec: EnvSpec, agent: Agent, optimizer, initial_lrs, cfg,
                 run: RunDir, writer, state: OnlineLoopState, marks: list[int],
                 num_iterations: int, device: torch.device, env_snapshot: dict | None = None):
        self.args, self.method, self.spec, self.agent = args, method, spec, agent
        self.optimizer, self.initial_lrs, self.cfg = optimizer, initial_lrs, cfg
        self.writer, self.state, self.marks = writer, state, marks
        self.num_iterations, self.device = num_iterations, device
        self.life = RunLifecycle(run, args, args.env, device, state, self.payload,
                                 tb_step=lambda: self.state.global_step,
                                 before_checkpoint=self.flush_dataset)
        self.log = state.training_log
        self.signal = LearnerSignal(args.reward_transform, args.life_loss_terminal)
        self.env_snapshot = env_snapshot
        self.envs: VecEnv | None = None
        self.obs: tuple[np.ndarray, np.ndarray] | None = None

    # -- the loop ---------------------------------------------------------------------------
    def run(self) -> int:
        a, st = self.args, self.state
        storage = RolloutStorage(a.num_steps, a.num_envs, self.spec.logic_shape, self.spec.neural_shape,
                                 torch.from_numpy(np.zeros(0, dtype=self.spec.neural_dtype)).dtype,
                                 self.device)
        progress = _Progress(a.run_id, self.num_iterations * a.num_envs * a.num_steps, a.progress_seconds,
                             st.global_step)
        with self.life.interrupt:  # installed before the env workers are forked
            envs = make_vec_env(a.env, a.num_envs)
            try:
                logic, neural = envs.reset(seed=a.seed + 1_000_003 * st.iteration)
                if self.env_snapshot is not None:  # the very episodes the checkpoint was in
                    logic, neural = restore_environments(envs, self.env_snapshot)
                elif st.iteration > 0:
                    print(f"[{a.run_id}] warning: the checkpoint holds no usable environment "
                          "snapshot (an older version's checkpoint, or one whose snapshot failed, see "
                          "the run's log): the episodes restart from fresh states, so from here the "
                          "run is not the one an uninterrupted run computes", file=sys.stderr, flush=True)
                self.envs, self.obs = envs, (logic, neural)
                while st.iteration < self.num_iterations:
                    if self.life.stop_requested:
                        return self.life.stop(f"at step {st.global_step}")
                    t0 = time.perf_counter()
                    self.anneal()
                    logic, neural, weights = self.collect(envs, storage, logic, neural)
                    self.obs = (logic, neural)
                    with torch.no_grad():
                        last_values = self.agent.get_value(to_tensor(logic, self.device),
                                                           to_tensor(neural, self.device))
                    batch = storage.finish(last_values, self.cfg.gamma, self.cfg.gae_lambda)
                    stats = ppo_update(self.agent, self.optimizer, batch, self.cfg)
                    st.iteration += 1
                    self.life.timer.train_seconds += time.perf_counter() - t0
                    self.record_update(stats, weights, progress)
                    progress.maybe_print(st.global_step, self.log["episode_returns"])
                    if st.next_mark < len(self.marks) and st.global_step >= self.marks[st.next_mark]:
                        self.evaluate_interval()
                        self.life.checkpoint()
                    else:
                        self.life.checkpoint_if_due()
            finally:
                self.envs = None
                _close_quietly(envs)
        self.life.checkpoint(finished=True)
        progress.maybe_print(st.global_step, self.log["episode_returns"], force=True)
        return 0

    def anneal(self) -> None:
        if not self.args.anneal_lr:
            return
        frac = 1.0 - self.state.iteration / self.num_iterations
        for group, lr0 in zip(self.optimizer.param_groups, self.initial_lrs):
            group["lr"] = frac * lr0

    def collect(self, envs, storage: RolloutStorage, logic: np.ndarray, neural: np.ndarray):
        """One rollout of ``num_steps``; returns the last states and the logic weights seen."""
        st, dev = self.state, self.device
        weights: list[torch.Tensor] = []
        for t in range(self.args.num_steps):
            logic_t, neural_t = to_tensor(logic, dev), to_tensor(neural, dev)
            with torch.no_grad():
                out = self.agent.get_action_and_value(logic_t, neural_t)
            storage.logic[t], storage.neural[t] = logic_t, neural_t
            storage.actions[t], storage.log_probs[t], storage.values[t] = out.action, out.log_prob, out.value
            if out.logic_weight is not None:
                weights.append(out.logic_weight)
            action = out.action.cpu().numpy()
            step = envs.step(action)
            # The learner's signal (blendrl.algos.signal); the dataset and the logs keep it raw.
            sig = self.signal
            storage.rewards[t] = torch.as_tensor(sig.reward_np(step.reward), device=dev)
            storage.terminated[t] = torch.as_tensor(sig.no_bootstrap_np(step.terminated, step.life_lost),
                                                    dtype=torch.float32, device=dev)
            storage.dones[t] = torch.as_tensor(step.done, dtype=torch.float32, device=dev)
            storage.chain_ends[t] = torch.as_tensor(sig.no_bootstrap_np(step.done, step.life_lost),
                                                    dtype=torch.float32, device=dev)
            if self.writer is not None:
                self.writer.add(logic, neural, action, step.reward, step.next_logic, step.next_neural,
                                step.terminated, step.truncated,
                                life_lost=step.life_lost if self.spec.has_lives else None)
            st.global_step += self.args.num_envs
            if step.done.any():
                idx = np.flatnonzero(step.done)
                with torch.no_grad():
                    final_v = self.agent.get_value(to_tensor(step.next_logic[idx], dev),
                                                   to_tensor(step.next_neural[idx], dev))
                storage.next_values[t, torch.as_tensor(idx, device=dev)] = final_v
                for i in idx:
                    self.record_episode(float(step.episode_return[i]), int(step.episode_length[i]))
            logic, neural = step.obs_logic, step.obs_neural
        return logic, neural, weights

    # -- logging ----------------------------------------------------------------------------
    def record_episode(self, ret: float, length: int) -> None:
        gs = self.state.global_step
        self.log["episode_returns"].append(ret)
        self.log["episode_lengths"].append(length)
        self.log["episode_end_steps"].append(gs)
        self.life.tb.add_scalar("charts/episodic_return", ret, gs)
        self.life.tb.add_scalar("charts/episodic_length", length, gs)

    def record_update(self, stats: dict, weights: list[torch.Tensor], progress: _Progress) -> None:
        gs = self.state.global_step
        for k, v in stats.items():
            self.life.tb.add_scalar(k, v, gs)
        self.life.tb.add_scalar("charts/learning_rate", self.optimizer.param_groups[0]["lr"], gs)
        elapsed = time.perf_counter() - progress.t0
        if elapsed > 0:
            self.life.tb.add_scalar("charts/SPS", (gs - progress.step0) / elapsed, gs)
        self.log["updates"].append({"global_step": gs, **stats})
        if weights:
            w = torch.cat(weights).float()
            mean, std = float(w.mean()), float(w.std()) if w.numel() > 1 else 0.0
            self.log["blend"].append({"global_step": gs, "logic_weight_mean": mean, "logic_weight_std": std})
            self.life.tb.add_scalar("blend/logic_weight", mean, gs)

    def evaluate_interval(self) -> None:
        st, life = self.state, self.life
        res, eval_seconds = life.evaluate(self.agent, self.args.seed, len(st.results) + 1,
                                          st.global_step)
        previous_train = sum(r["train_seconds"] for r in st.results)
        entry = result_entry(res, interval=len(st.results) + 1, data_limit=st.global_step,
                             train_seconds=life.timer.train_seconds - previous_train,
                             eval_seconds=eval_seconds, global_step=st.global_step)
        while st.next_mark < len(self.marks) and st.global_step >= self.marks[st.next_mark]:
            st.next_mark += 1
        if self.writer is not None:
            self.writer.mark(st.global_step)
        life.record(entry, res, st.global_step,
                    f"evaluation {entry['interval']}/{len(self.marks)} at step {st.global_step}")

    # -- persistence ------------------------------------------------------------------------
    def payload(self, latest: bool) -> dict:
        """The checkpoint; latest.pt also holds a snapshot of every environment copy."""
        payload = {"method": self.method, "env": self.args.env, "args": args_to_dict(self.args),
                   "agent": self.agent.state_dict(), "optimizer": self.optimizer.state_dict(),
                   "rng": rng_state(self.device), **state_items(self.state)}
        if latest and self.envs is not None:
            snap = environment_snapshot(self.envs, *self.obs, self.args.run_id)
            if snap is not None:
                payload["environments"] = snap
        return payload

    def flush_dataset(self, finished: bool) -> None:
        """Before a checkpoint: every transition so far on disk (at the end: the dataset finished)."""
        if self.writer is not None:
            self.writer.finish() if finished else self.writer.flush()


def environment_snapshot(envs: VecEnv, logic: np.ndarray, neural: np.ndarray, run_id: str) -> dict | None:
    """What a checkpoint keeps of the environments: every copy's snapshot and the states the
    agent acts on next. None (with a warning; the checkpoint is still written) where a copy
    cannot be snapshot, whatever the reason (a resume from it then restarts the episodes)."""
    try:
        return {"vec": envs.get_state(), "logic": snapshot.array(logic), "neural": snapshot.array(neural)}
    except Exception as e:  # noqa: BLE001 -- the checkpoint matters more than its snapshot
        print(f"[{run_id}] warning: no environment snapshot in this checkpoint ({e}); a resume "
              "from it restarts the episodes", file=sys.stderr, flush=True)
        return None


def restore_environments(envs: VecEnv, snap: dict) -> tuple[np.ndarray, np.ndarray]:
    """Put the copies back where :func:`environment_snapshot` found them; the states to act on."""
    try:
        envs.set_state(snap["vec"])
        return snap["logic"].cpu().numpy().copy(), snap["neural"].cpu().numpy().copy()
    except Exception as e:  # noqa: BLE001 -- SnapshotError, or a snapshot that is not one
        raise UsageError(f"--resume: the checkpoint's environment snapshot does not fit: {e}") from e


def _close_quietly(envs) -> None:
    """Close the env workers; a worker already gone (e.g. killed with its process group) must not
    turn a run that has checkpointed into a failure."""
    try:
        envs.close()
    except (OSError, EOFError) as e:
        print(f"warning: closing the environments failed: {e!r}", file=sys.stderr)


def main(args: OnlineArgs, method: str) -> int:
    """Entry point for the scripts: a usage error or a failed write -> one line on stderr and its
    exit status (:mod:`blendrl.exits`)."""
    return guarded_main(lambda: run_online(args, method))
