"""Discrete-action Implicit Q-Learning (Kostrikov, Nair, Levine, "Offline Reinforcement Learning
with Implicit Q-Learning", ICLR 2022), in the shape of CORL's single-file trainer.

One gradient step (:meth:`IQLTrainer.update`) does, on a minibatch of transitions
``(s, a, r, s', terminated, truncated)``:

1. **value** (:meth:`~IQLTrainer._update_value`): ``V(s)`` is fitted with the expectile loss to
   ``min(Q1_target(s, a), Q2_target(s, a))`` at the action the data took;
2. **Q** (:meth:`~IQLTrainer._update_q`): both Q networks are fitted (MSE) to
   ``r + gamma * (1 - terminated) * V(s')``. Truncation is *not* termination: a transition cut by a
   time limit bootstraps from ``V(s')`` like any other. ``r`` and ``terminated`` are the learner's
   signal (:class:`~blendrl.algos.signal.LearnerSignal` in the config: the reward transform, and
   a lost life counted as terminal when that is on), the same rule the online PPO run applied.
   The target networks then move towards the online ones by Polyak averaging;
3. **actor** (:meth:`~IQLTrainer._update_actor`): advantage-weighted regression,
   ``-min(exp(beta * (Q - V)), max_weight) * log pi(a|s)``, with the advantage of step 1 (target
   Qs minus V before its update, as in CORL); with ``blend_ent_coef`` > 0 minus that times the
   mean entropy of a BlendRL agent's blend weights (the online blend-entropy bonus).

The actor is any agent of :mod:`blendrl.agents` (``log_prob(logic, neural, action)`` and
``optimizer_param_groups(lrs)``): for the BlendRL agent the AWR loss trains the neural actor, the
logic clause weights and the blender together, each parameter group at its own learning rate. The
critics see the neural state only (:func:`blendrl.agents.networks.make_q_network`).

Learning rates are constant (no schedule). CORL anneals the actor's rate with a cosine over a fixed
number of steps; here training runs over growing dataset prefixes whose total length differs
between intervals (and restarts with ``--reset_per_interval``), and a schedule would make the
offline point of interval k depend on how many intervals follow it. A constant rate keeps every
interval's training comparable.

Precision: ``fp32`` (the default), ``tf32`` or ``bf16``. ``fp32`` is IEEE float32 throughout, also on
a GPU: torch lets cuDNN convolutions use TensorFloat-32 by default (a 10-bit mantissa on Ampere and
later, an H100 included), so the trainer sets torch's process-wide TF32 switches
(``torch.backends.cudnn.allow_tf32``, ``torch.backends.cuda.matmul.allow_tf32``) to its
precision when it is built (:func:`set_tf32`): off for ``fp32`` and ``bf16``, on for ``tf32`` --
float32 tensors whose convolutions and matmuls run on TF32 tensor cores on such a GPU (on a CPU,
and on older GPUs, the same as ``fp32``). The switches hold for the whole process, the
evaluation's passes included; ``run.json`` records the choice with the run's arguments. With
``bf16`` the networks' forward and backward passes run under ``torch.autocast`` in bfloat16.
Parameters, optimiser state, targets, losses, advantages and weights stay float32, and so do the networks' output layers
(:class:`~blendrl.agents.networks.OutputLinear`) and the BlendRL logic reasoner
(:meth:`~blendrl.logic.actors.LogicActor.outputs`): the encoders' features are what is rounded.
Measured about 2x the steps/s of fp32 on Atari shapes on a CPU with AVX-512 bf16; a CPU
without bf16 instructions may be slower, and on a GPU it is not measured yet.

Frames: a step's seven passes (V(s'), both target Qs, V, both Qs, the actor) read two frame
batches, s and s'. :meth:`IQLTrainer.update_stats` scales each once
(:func:`~blendrl.agents.networks.scale_frames`; under bf16 also cast once, as the first
convolution would) and hands the same tensor to every pass: the numbers each network sees are
those it would compute from the uint8 frames itself.

Compiled steps (:meth:`IQLTrainer.compile`, ``--compile``): the forward passes and losses of a
step (all seven passes, the actor's included) are one ``torch.compile``-d function
(:meth:`IQLTrainer._step_losses`, ``fullgraph``: one graph, so no pass can fall back to eager), the
three losses are summed and differentiated by one backward pass (each loss reaches the parameters of
one network only, so every parameter gets the gradient it gets in eager mode), then the three Adam
steps and the Polyak step run as in eager mode. Every pass reads the parameters from before the
step, as in eager mode (V's step comes after V(s) and V(s'), the targets' after the target Qs). With
``reduce-overhead`` the forward and the backward are one CUDA graph each: a step begins with
``torch.compiler.cudagraph_mark_step_begin()``, the gradients (outputs of the backward graph) are
dropped once the optimisers have used them, and the returned metrics are a copy, so no output of a
graph is read after the next replay overwrites it. Traced without inductor (``aot_eager``) the
compiled step gives eager's numbers bit for bit; inductor's kernels round differently (on a CPU
within a few float32 ulps over 50 steps, ``tests/test_iql_device.py``). CUDA graphs are not run
on a GPU yet (the tests that do are skipped without one).
"""

from __future__ import annotations

import contextlib
import copy
from dataclasses import dataclass, field
from typing import Any, Protocol

import torch
import torch.nn.functional as F
from torch import nn

from blendrl.agents.networks import scale_frames
from blendrl.algos.optim import adam, load_adam_state
from blendrl.algos.precision import PRECISIONS, set_tf32
from blendrl.algos.signal import LearnerSignal

STATE_DICT_VERSION = 1


COMPILE_MODES = ("off", "default", "reduce-overhead")
"""What :meth:`IQLTrainer.compile` (``--compile``) accepts: no compile, inductor's fused kernels,
and those replayed as CUDA graphs."""

METRIC_KEYS = ("losses/value", "losses/q", "losses/actor", "charts/adv_mean", "charts/adv_std",
               "charts/v_mean", "charts/q_mean", "charts/q_target_mean", "charts/awr_weight_mean",
               "charts/awr_weight_clipped_frac")
"""The scalars :meth:`IQLTrainer.update` returns, in this order."""


class IQLActor(Protocol):
    """What the trainer needs of an agent (the neural and the BlendRL agent both provide it)."""

    def log_prob(self, logic: torch.Tensor, neural: torch.Tensor,
                 action: torch.Tensor) -> torch.Tensor: ...

    def action_probs(self, logic: torch.Tensor, neural: torch.Tensor) -> torch.Tensor: ...

    def optimizer_param_groups(self, lrs: dict[str, float]) -> list[dict]: ...

    def parameters(self) -> Any: ...

    def state_dict(self) -> dict: ...

    def load_state_dict(self, state: dict) -> Any: ...


class TransitionBatch(Protocol):
    """A minibatch of torch tensors (``dataset_utils.Batch.to_torch``)."""

    logic_state: torch.Tensor
    neural_state: torch.Tensor
    action: torch.Tensor
    reward: torch.Tensor
    next_logic_state: torch.Tensor
    next_neural_state: torch.Tensor
    terminated: torch.Tensor
    truncated: torch.Tensor


# --------------------------------------------------------------------------- pure functions

def expectile_loss(diff: torch.Tensor, expectile: float) -> torch.Tensor:
    """Mean asymmetric squared loss ``|expectile - 1[diff < 0]| * diff**2``.

    ``diff`` is ``target - prediction``: with ``expectile > 0.5`` under-predictions (``diff > 0``)
    cost more, so the prediction moves towards an upper expectile of the target.
    """
    weight = torch.where(diff < 0, 1.0 - expectile, expectile)
    return (weight * diff.pow(2)).mean()


def awr_weights(q: torch.Tensor, v: torch.Tensor, beta: float, max_weight: float) -> torch.Tensor:
    """Advantage weights ``min(exp(beta * (q - v)), max_weight)``, without gradient."""
    with torch.no_grad():
        return torch.exp(beta * (q - v)).clamp(max=max_weight)


def td_targets(reward: torch.Tensor, terminated: torch.Tensor, next_v: torch.Tensor,
               gamma: float) -> torch.Tensor:
    """``r + gamma * (1 - terminated) * V(s')``; truncated transitions bootstrap like any other."""
    return reward + gamma * (1.0 - terminated.float()) * next_v


@torch.no_grad()
def polyak_update(target: nn.Module, source: nn.Module, polyak: float) -> None:
    """``target <- (1 - polyak) * target + polyak * source``, parameter by parameter."""
    for t, s in zip(target.parameters(), source.parameters(), strict=True):
        t.lerp_(s, polyak)


# --------------------------------------------------------------------------- the trainer

@dataclass(frozen=True)
class IQLConfig:
    """Hyperparameters of discrete IQL (defaults: CORL's IQL with the issue's values)."""

    gamma: float = 0.99
    """Discount factor."""
    expectile: float = 0.7
    """Expectile of the value loss (0.5 = mean; towards 1 = max over the data's actions)."""
    beta: float = 3.0
    """Inverse temperature of the advantage weights."""
    max_weight: float = 100.0
    """Upper clip of the advantage weights."""
    polyak: float = 0.005
    """Step of the target networks towards the online Q networks after every update."""
    critic_lr: float = 3e-4
    """Adam learning rate of the Q networks and the value network."""
    actor_lrs: dict[str, float] = field(default_factory=lambda: {"neural": 3e-4})
    """Learning rate of each actor parameter group (keys as the agent's optimizer_param_groups)."""
    signal: LearnerSignal = field(default_factory=LearnerSignal)
    """The learner's reward and bootstrap rule (:mod:`blendrl.algos.signal`), the one the online
    run that wrote the data trained with."""
    blend_ent_coef: float = 0.0
    """Bonus on the entropy of the BlendRL agent's blend weights in the actor loss (online
    BlendRL's ``blend_ent_coef``); 0 leaves the AWR loss alone."""
    precision: str = "fp32"
    """The networks' passes in IEEE float32 (``fp32``), in float32 with TF32 convolutions and
    matmuls on a GPU that has them (``tf32``), or under bfloat16 autocast (``bf16``); see the
    module."""

    def __post_init__(self) -> None:
        checks = (("gamma", 0.0 <= self.gamma <= 1.0, "in [0, 1]"),
                  ("expectile", 0.0 < self.expectile < 1.0, "in (0, 1)"),
                  ("beta", self.beta >= 0.0, ">= 0"),
                  ("max_weight", self.max_weight > 0.0, "> 0"),
                  ("polyak", 0.0 < self.polyak <= 1.0, "in (0, 1]"),
                  ("critic_lr", self.critic_lr > 0.0, "> 0"),
                  ("blend_ent_coef", self.blend_ent_coef >= 0.0, ">= 0"))
        for name, ok, rule in checks:
            if not ok:
                raise ValueError(f"IQL {name} must be {rule}, got {getattr(self, name)!r}")
        if self.precision not in PRECISIONS:
            raise ValueError(f"IQL precision must be one of {', '.join(PRECISIONS)}, "
                             f"got {self.precision!r}")
        for name, lr in self.actor_lrs.items():
            if not lr > 0.0:
                raise ValueError(f"IQL actor learning rate {name!r} must be > 0, got {lr!r}")


class IQLTrainer:
    """Discrete IQL on one actor, twin Q networks (one output per action) and a value network.

    ``q_networks`` map a neural state ``[B, ...]`` to ``[B, n_actions]``; ``value_network`` maps it
    to ``[B]``. The trainer owns copies of the Q networks as targets and three Adam optimisers
    (actor, both Qs, V). All modules must already be on the device the batches come on.
    Building one sets torch's process-wide TF32 switches to ``config.precision`` (:func:`set_tf32`).
    """

    def __init__(self, actor: IQLActor, q_networks: tuple[nn.Module, nn.Module],
                 value_network: nn.Module, config: IQLConfig | None = None):
        self.config = config or IQLConfig()
        if len(q_networks) != 2:
            raise ValueError(f"IQL needs two Q networks, got {len(q_networks)}")
        self.actor = actor
        self.q1, self.q2 = q_networks
        self.value = value_network
        self.q1_target = copy.deepcopy(self.q1).requires_grad_(False)
        self.q2_target = copy.deepcopy(self.q2).requires_grad_(False)
        self.actor_optimizer = adam(actor.optimizer_param_groups(self.config.actor_lrs))
        self.q_optimizer = adam([*self.q1.parameters(), *self.q2.parameters()],
                                lr=self.config.critic_lr)
        self.value_optimizer = adam(self.value.parameters(), lr=self.config.critic_lr)
        self.num_updates = 0
        """Gradient steps taken so far (restored by :meth:`load_state_dict`)."""
        self.compile_mode = "off"
        """How steps run: eager (``off``) or compiled (:meth:`compile`)."""
        self._compiled_step_losses: Any = None
        set_tf32(self.config.precision)

    @classmethod
    def for_spec(cls, actor: IQLActor, spec: Any, config: IQLConfig | None = None,
                 device: torch.device | str = "cpu", hidden: int = 256) -> "IQLTrainer":
        """A trainer with the project's critics for an environment spec (MLP or Nature CNN)."""
        from blendrl.agents.networks import make_q_network, make_value_network

        q1 = make_q_network(spec, hidden).to(device)
        q2 = make_q_network(spec, hidden).to(device)
        value = make_value_network(spec, hidden).to(device)
        return cls(actor, (q1, q2), value, config)

    # ------------------------------------------------------------------ compiled steps

    def compile(self, mode: str, **options: Any) -> None:
        """Run every later step compiled (see the module docstring): ``mode`` one of
        :data:`COMPILE_MODES` (``off`` leaves the trainer eager). The actor's networks are
        compiled for the passes outside a step too (the evaluation's actions): each
        :class:`~blendrl.agents.neural.ActorCriticNet` of the actor compiles its ``forward``,
        ``logits`` and ``value`` passes. State-dict keys do not change, so checkpoints are those of
        eager runs. ``options`` go to ``torch.compile`` (e.g. ``backend`` in tests). The first step
        compiles (tens of seconds; a C++ compiler is needed on a CPU)."""
        if mode not in COMPILE_MODES:
            raise ValueError(f"compile mode must be one of {', '.join(COMPILE_MODES)}, got {mode!r}")
        if mode == "off":
            return
        from blendrl.agents.neural import ActorCriticNet

        if mode != "default":
            options = {"mode": mode, **options}
        self._compiled_step_losses = torch.compile(self._step_losses, fullgraph=True, **options)
        for module in self.actor.modules():
            if isinstance(module, ActorCriticNet):
                module.compile(**options)
        self.compile_mode = mode

    def _step_losses(self, logic: torch.Tensor, neural_state: torch.Tensor, action: torch.Tensor,
                     reward: torch.Tensor, next_neural_state: torch.Tensor,
                     terminated: torch.Tensor, life_lost: torch.Tensor | None
                     ) -> tuple[torch.Tensor, torch.Tensor]:
        """A step's forward passes and losses as one function of tensors (the compiled step's
        graph): (value + Q + actor loss, the :data:`METRIC_KEYS` scalars). The same computation
        as the eager :meth:`update_stats` with every pass on the parameters from before the step."""
        cfg = self.config
        action = action.long()
        index = action.unsqueeze(1)
        neural = self._network_input(neural_state)
        with torch.no_grad(), self._passes(neural):
            next_v = self.value(self._network_input(next_neural_state)).float()
        q_target = self.min_target_q(neural, action)
        with self._passes(neural):  # V(s), both Qs
            v = self.value(neural).float()
            q1 = self.q1(neural).float().gather(1, index).squeeze(1)
            q2 = self.q2(neural).float().gather(1, index).squeeze(1)
        value_loss = expectile_loss(q_target - v, cfg.expectile)
        target = self._td_targets(reward, terminated, life_lost, next_v)
        q_loss = 0.5 * (F.mse_loss(q1, target) + F.mse_loss(q2, target))
        v = v.detach()
        weights = awr_weights(q_target, v, cfg.beta, cfg.max_weight)
        actor_loss = self._actor_loss(logic, neural, action, weights)
        adv = q_target - v
        clipped = (weights >= cfg.max_weight).float().mean()
        q_mean = 0.5 * (q1.detach().mean() + q2.detach().mean())
        stats = torch.stack([value_loss.detach(), q_loss.detach(), actor_loss.detach(), adv.mean(),
                             adv.std(correction=0), v.mean(), q_mean, q_target.mean(),
                             weights.mean(), clipped])
        return value_loss + q_loss + actor_loss, stats

    def _compiled_update_stats(self, batch: TransitionBatch) -> torch.Tensor:
        """:meth:`update_stats` through the compiled :meth:`_step_losses`: one backward pass for
        the three losses, then the optimisers' steps and the Polyak step (eager)."""
        if self.compile_mode == "reduce-overhead":
            torch.compiler.cudagraph_mark_step_begin()  # this step's replays may overwrite the last's
        loss, stats = self._compiled_step_losses(
            batch.logic_state, batch.neural_state, batch.action, batch.reward,
            batch.next_neural_state, batch.terminated, getattr(batch, "life_lost", None))
        loss.backward()
        self.value_optimizer.step()
        self.q_optimizer.step()
        polyak_update(self.q1_target, self.q1, self.config.polyak)
        polyak_update(self.q2_target, self.q2, self.config.polyak)
        self.actor_optimizer.step()
        for optimizer in (self.value_optimizer, self.q_optimizer, self.actor_optimizer):
            optimizer.zero_grad(set_to_none=True)  # (under CUDA graphs: outputs of the backward graph)
        self.num_updates += 1
        return stats.clone() if self.compile_mode == "reduce-overhead" else stats

    # ------------------------------------------------------------------ one gradient step

    def update(self, batch: TransitionBatch) -> dict[str, float]:
        """One IQL gradient step on a batch of torch tensors; returns :data:`METRIC_KEYS` scalars
        (reading them waits for the device: a training loop uses :meth:`update_stats`)."""
        return dict(zip(METRIC_KEYS, self.update_stats(batch).tolist(), strict=True))

    def _passes(self, like: torch.Tensor) -> contextlib.AbstractContextManager:
        """The context of the networks' forward passes (their backward passes follow it)."""
        if self.config.precision == "bf16":
            return torch.autocast(device_type=like.device.type, dtype=torch.bfloat16)
        return contextlib.nullcontext()

    def _network_input(self, neural: torch.Tensor) -> torch.Tensor:
        """The neural state as every network takes it: uint8 frames ``[B, C, H, W]`` scaled once
        (and, under bf16, cast once as the first convolution would), as NatureCNN scales them
        in PPO and in evaluation; vectors (of any dtype) as they are, as the MLP takes them."""
        if neural.dtype != torch.uint8 or neural.dim() != 4:
            return neural
        frames = scale_frames(neural)
        return frames.to(torch.bfloat16) if self.config.precision == "bf16" else frames

    def update_stats(self, batch: TransitionBatch) -> torch.Tensor:
        """One IQL gradient step; returns the :data:`METRIC_KEYS` scalars as one tensor on the
        batch's device, without waiting for the device (no host sync)."""
        if self._compiled_step_losses is not None:
            return self._compiled_update_stats(batch)
        action = batch.action.long()
        neural = self._network_input(batch.neural_state)
        with torch.no_grad(), self._passes(neural):
            next_v = self.value(self._network_input(batch.next_neural_state)).float()
        value_loss, v, q_target = self._update_value(neural, action)
        q_loss, q_mean = self._update_q(batch, neural, action, next_v)
        actor_loss, weights = self._update_actor(batch, neural, action, q_target, v)
        adv = q_target - v
        self.num_updates += 1
        clipped = (weights >= self.config.max_weight).float().mean()
        return torch.stack([value_loss, q_loss, actor_loss, adv.mean(), adv.std(correction=0),
                            v.mean(), q_mean, q_target.mean(), weights.mean(), clipped])

    def q_targets(self, batch: TransitionBatch, next_v: torch.Tensor) -> torch.Tensor:
        """The Q networks' TD targets in the learner's signal: ``r' + gamma * (1 - stop) * V(s')``
        with ``r'`` the transformed reward and ``stop`` termination (or a lost life, when that is
        terminal)."""
        return self._td_targets(batch.reward, batch.terminated, getattr(batch, "life_lost", None),
                                next_v)

    def _td_targets(self, reward: torch.Tensor, terminated: torch.Tensor,
                    life_lost: torch.Tensor | None, next_v: torch.Tensor) -> torch.Tensor:
        signal = self.config.signal
        stop = signal.no_bootstrap(terminated, life_lost)
        return td_targets(signal.reward(reward), stop, next_v, self.config.gamma)

    def min_target_q(self, neural: torch.Tensor, action: torch.Tensor) -> torch.Tensor:
        """``min(Q1_target, Q2_target)`` at the given actions, ``[B]``, without gradient."""
        with torch.no_grad(), self._passes(neural):
            index = action.long().unsqueeze(1)
            q1 = self.q1_target(neural).float().gather(1, index).squeeze(1)
            q2 = self.q2_target(neural).float().gather(1, index).squeeze(1)
            return torch.minimum(q1, q2)

    def _update_value(self, neural: torch.Tensor, action: torch.Tensor
                      ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Expectile regression of V(s) on the min target Q; returns (loss, V before the step,
        min target Q)."""
        q_target = self.min_target_q(neural, action)
        with self._passes(neural):
            v = self.value(neural).float()
        loss = expectile_loss(q_target - v, self.config.expectile)
        self.value_optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.value_optimizer.step()
        return loss.detach(), v.detach(), q_target

    def _update_q(self, batch: TransitionBatch, neural: torch.Tensor, action: torch.Tensor,
                  next_v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """MSE of both Qs to the TD target, then the Polyak step; returns (loss, mean Q).
        ``neural`` is the batch's state as the networks take it (``_network_input``)."""
        target = self.q_targets(batch, next_v)
        index = action.unsqueeze(1)
        with self._passes(neural):
            q1 = self.q1(neural).float().gather(1, index).squeeze(1)
            q2 = self.q2(neural).float().gather(1, index).squeeze(1)
        loss = 0.5 * (F.mse_loss(q1, target) + F.mse_loss(q2, target))
        self.q_optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.q_optimizer.step()
        polyak_update(self.q1_target, self.q1, self.config.polyak)
        polyak_update(self.q2_target, self.q2, self.config.polyak)
        return loss.detach(), 0.5 * (q1.detach().mean() + q2.detach().mean())

    def _update_actor(self, batch: TransitionBatch, neural: torch.Tensor, action: torch.Tensor,
                      q: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Advantage-weighted regression on the data's actions; returns (loss, weights).
        ``neural`` is the batch's state as the networks take it (``_network_input``)."""
        weights = awr_weights(q, v, self.config.beta, self.config.max_weight)
        loss = self._actor_loss(batch.logic_state, neural, action, weights)
        self.actor_optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.actor_optimizer.step()
        return loss.detach(), weights

    def _actor_loss(self, logic: torch.Tensor, neural: torch.Tensor, action: torch.Tensor,
                    weights: torch.Tensor) -> torch.Tensor:
        """The AWR loss (minus the blend-entropy bonus when it is on) of the actor's pass."""
        if self.config.blend_ent_coef > 0:  # the policy's blend entropy too: one forward pass
            with self._passes(neural):
                pol = self.actor.policy(logic, neural)
            log_prob = pol.log_probs.float().gather(1, action.unsqueeze(1)).squeeze(1)
            loss = -(weights * log_prob).mean()
            if pol.blend_entropy is not None:
                loss = loss - self.config.blend_ent_coef * pol.blend_entropy.float().mean()
            return loss
        with self._passes(neural):
            log_prob = self.actor.log_prob(logic, neural, action)
        return -(weights * log_prob.float()).mean()

    # ------------------------------------------------------------------ persistence

    def state_dict(self) -> dict[str, Any]:
        """Networks, target networks, optimisers and the step counter (tensors and plain values
        only, so that ``torch.load(weights_only=True)`` reads it back)."""
        return {
            "version": STATE_DICT_VERSION,
            "num_updates": self.num_updates,
            "actor": self.actor.state_dict(),
            "q1": self.q1.state_dict(), "q2": self.q2.state_dict(),
            "q1_target": self.q1_target.state_dict(), "q2_target": self.q2_target.state_dict(),
            "value": self.value.state_dict(),
            "actor_optimizer": self.actor_optimizer.state_dict(),
            "q_optimizer": self.q_optimizer.state_dict(),
            "value_optimizer": self.value_optimizer.state_dict(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore what :meth:`state_dict` saved; the next update is then the one it would have done."""
        if state.get("version") != STATE_DICT_VERSION:
            raise ValueError(f"IQL trainer state version {state.get('version')!r} is not "
                             f"{STATE_DICT_VERSION}")
        for name in ("actor", "q1", "q2", "q1_target", "q2_target", "value"):
            getattr(self, name).load_state_dict(state[name])
        for name in ("actor_optimizer", "q_optimizer", "value_optimizer"):
            load_adam_state(getattr(self, name), state[name])
        self.num_updates = int(state["num_updates"])
