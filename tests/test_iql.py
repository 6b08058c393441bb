"""Discrete IQL (blendrl/algos/iql.py): the pure losses against hand computations, one update's
numbers on hand-built networks, Polyak targets, the state_dict round trip, and a learning test on a
chain MDP whose optimal policy is known."""

from __future__ import annotations

import io
import math

import numpy as np
import pytest
import torch
from torch import nn

from blendrl.algos.iql import (METRIC_KEYS, IQLConfig, IQLTrainer, awr_weights, expectile_loss,
                               polyak_update, td_targets)
from dataset_utils import Batch  # the dataset's batch record, filled with tensors here


@pytest.fixture(autouse=True)
def _one_thread():
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


class TwoGroupActor(nn.Module):
    """A test actor with the agents' interface: logits from the neural state plus (optionally) a
    term from the logic state, as two parameter groups like BlendRL's neural and logic actors."""

    def __init__(self, n_in: int, n_logic: int, n_actions: int, use_logic: bool = True):
        super().__init__()
        self.neural = nn.Linear(n_in, n_actions)
        self.logic = nn.Linear(n_logic, n_actions) if use_logic else None

    def logits(self, logic: torch.Tensor, neural: torch.Tensor) -> torch.Tensor:
        out = self.neural(neural.float())
        if self.logic is not None:
            out = out + self.logic(logic.flatten(1))
        return out

    def log_prob(self, logic, neural, action):
        return torch.log_softmax(self.logits(logic, neural), 1).gather(1, action.long()[:, None])[:, 0]

    def action_probs(self, logic, neural):
        return torch.softmax(self.logits(logic, neural), 1)

    def optimizer_param_groups(self, lrs):
        groups = [{"params": list(self.neural.parameters()), "lr": lrs["neural"], "name": "neural"}]
        if self.logic is not None:
            groups.append({"params": list(self.logic.parameters()), "lr": lrs["logic"], "name": "logic"})
        return groups


class Squeeze(nn.Module):
    def __init__(self, inner: nn.Module):
        super().__init__()
        self.inner = inner

    def forward(self, x):
        return self.inner(x).squeeze(-1)


def random_batch(gen: torch.Generator, size: int = 16, n_in: int = 4, n_actions: int = 3) -> Batch:
    logic = torch.randn(size, 2, 2, generator=gen)
    return Batch(logic, torch.randn(size, n_in, generator=gen),
                 torch.randint(0, n_actions, (size,), generator=gen),
                 torch.randn(size, generator=gen, dtype=torch.float64),
                 torch.randn(size, 2, 2, generator=gen), torch.randn(size, n_in, generator=gen),
                 torch.rand(size, generator=gen) < 0.2, torch.rand(size, generator=gen) < 0.2)


def make_trainer(seed: int, config: IQLConfig | None = None) -> IQLTrainer:
    torch.manual_seed(seed)
    actor = TwoGroupActor(4, 4, 3)
    q = (nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 3)),
         nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 3)))
    value = Squeeze(nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 1)))
    return IQLTrainer(actor, q, value, config or IQLConfig(actor_lrs={"neural": 1e-3, "logic": 5e-3}))


# --------------------------------------------------------------------------- pure functions

def test_expectile_loss_by_hand():
    diff = torch.tensor([2.0, -1.0])
    # positive residual weighted 0.7, negative 0.3: (0.7 * 4 + 0.3 * 1) / 2
    assert expectile_loss(diff, 0.7).item() == pytest.approx(1.55)
    assert expectile_loss(diff, 0.5).item() == pytest.approx(0.5 * (4 + 1) / 2)
    assert expectile_loss(torch.tensor([0.0, 0.0]), 0.9).item() == 0.0
    # the gradient pushes the prediction up harder than down for expectile > 0.5
    pred = torch.zeros(2, requires_grad=True)
    expectile_loss(torch.tensor([1.0, -1.0]) - pred, 0.7).backward()
    assert pred.grad.tolist() == pytest.approx([-0.7, 0.3])


def test_awr_weights_by_hand():
    q = torch.tensor([1.0, 2.0, 0.0, 3.0], requires_grad=True)
    v = torch.tensor([1.0, 1.0, 1.0, 1.0])
    w = awr_weights(q, v, beta=3.0, max_weight=100.0)
    assert w.tolist() == pytest.approx([1.0, math.exp(3.0), math.exp(-3.0), 100.0])  # exp(6) clipped
    assert not w.requires_grad
    assert awr_weights(q, v, beta=0.0, max_weight=100.0).tolist() == [1.0] * 4


def test_td_targets_bootstrap_through_truncation_only():
    reward = torch.tensor([1.0, 2.0, 3.0])
    terminated = torch.tensor([False, True, False])
    next_v = torch.tensor([10.0, 10.0, -1.0])
    assert td_targets(reward, terminated, next_v, 0.9).tolist() == pytest.approx([10.0, 2.0, 2.1])


def test_polyak_update_by_hand():
    source, target = nn.Linear(1, 1), nn.Linear(1, 1)
    with torch.no_grad():
        source.weight.fill_(1.0), source.bias.fill_(-2.0)
        target.weight.fill_(3.0), target.bias.fill_(0.0)
    polyak_update(target, source, 0.25)
    assert target.weight.item() == pytest.approx(0.75 * 3.0 + 0.25 * 1.0)
    assert target.bias.item() == pytest.approx(0.25 * -2.0)


@pytest.mark.parametrize("field,value", [("expectile", 1.0), ("expectile", 0.0), ("gamma", 1.5),
                                         ("polyak", 0.0), ("max_weight", 0.0), ("beta", -1.0),
                                         ("critic_lr", 0.0)])
def test_config_rejects_bad_values(field, value):
    with pytest.raises(ValueError, match=field):
        IQLConfig(**{field: value})
    with pytest.raises(ValueError, match="precision must be one of fp32, tf32, bf16, got 'fp16'"):
        IQLConfig(precision="fp16")
    with pytest.raises(ValueError, match="logic"):
        IQLConfig(actor_lrs={"neural": 1e-3, "logic": -1.0})


# --------------------------------------------------------------------------- one update by hand

def constant_linear(n_in: int, n_out: int, bias: float) -> nn.Linear:
    layer = nn.Linear(n_in, n_out)
    with torch.no_grad():
        layer.weight.zero_()
        layer.bias.fill_(bias)
    return layer


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_one_update_matches_hand_computation(precision):
    """Q networks output 0, V outputs 5, r = 1, gamma = 0.9. Batch rows: truncated, terminated,
    neither. Targets 1 + 0.9 * 5 = 5.5 (truncated bootstraps), 1, 5.5 -> Q loss 20.5. V residual
    min target Q - V = -5 -> value loss 0.3 * 25 = 7.5; advantage -5 -> weights exp(-15). The
    networks' outputs (0 and 5) are exact in bfloat16, so bf16 gives the same numbers: targets,
    losses and weights are float32 either way."""
    actor = TwoGroupActor(2, 2, 2, use_logic=False)
    trainer = IQLTrainer(actor, (constant_linear(2, 2, 0.0), constant_linear(2, 2, 0.0)),
                         Squeeze(constant_linear(2, 1, 5.0)), IQLConfig(gamma=0.9, precision=precision))
    batch = Batch(torch.zeros(3, 1, 2), torch.ones(3, 2), torch.tensor([0, 1, 0]),
                  torch.ones(3), torch.zeros(3, 1, 2), torch.ones(3, 2),
                  torch.tensor([False, True, False]), torch.tensor([True, False, False]))
    with torch.no_grad():
        log_prob = actor.log_prob(batch.logic_state, batch.neural_state, batch.action)
    m = trainer.update(batch)
    assert set(m) == set(METRIC_KEYS)
    assert m["losses/q"] == pytest.approx((5.5**2 + 1.0 + 5.5**2) / 3)
    assert m["losses/value"] == pytest.approx(0.3 * 25.0)
    assert m["charts/adv_mean"] == pytest.approx(-5.0)
    assert m["charts/adv_std"] == pytest.approx(0.0, abs=1e-6)
    assert m["charts/v_mean"] == pytest.approx(5.0)
    assert m["charts/awr_weight_mean"] == pytest.approx(math.exp(-15.0))
    # log pi of the initial (random) actor: bf16 rounds its logits (8 bits of mantissa)
    assert m["losses/actor"] == pytest.approx(-(math.exp(-15.0) * log_prob).mean().item(),
                                              rel=1e-5 if precision == "fp32" else 2e-2)
    assert m["charts/awr_weight_clipped_frac"] == 0.0
    assert trainer.num_updates == 1
    # parameters and optimiser state stay float32 under bf16 autocast
    params = [*trainer.q1.parameters(), *trainer.value.parameters(), *actor.parameters()]
    assert all(p.dtype == torch.float32 for p in params)
    assert all(v.dtype == torch.float32 for st in trainer.q_optimizer.state.values() for v in st.values()
               if torch.is_tensor(v) and v.is_floating_point())


def test_bf16_rounds_the_passes_but_keeps_the_step_close_to_fp32():
    """The same update from the same networks and batch: bf16 differs from fp32 (the passes are
    really in bfloat16) by about bfloat16's rounding, not more."""
    gen = torch.Generator().manual_seed(3)
    batch = random_batch(gen, size=64)
    lrs = {"neural": 1e-3, "logic": 5e-3}
    m32 = make_trainer(0, IQLConfig(actor_lrs=lrs)).update(batch)
    m16 = make_trainer(0, IQLConfig(actor_lrs=lrs, precision="bf16")).update(batch)
    for key in ("losses/value", "losses/q", "charts/v_mean", "charts/q_mean"):
        assert m16[key] != m32[key], key
        assert m16[key] == pytest.approx(m32[key], rel=3e-2, abs=3e-3), key


@pytest.mark.parametrize("env", ["cartpole", "seaquest"])
def test_bf16_critics_and_actor_output_layers_stay_float32(env):
    """Under bf16 autocast the encoders run in bfloat16, but Q, V and the logits come out of a
    float32 layer: a Q value near 30 keeps float32's resolution (bfloat16 would round it to a
    multiple of 0.125 or 0.25)."""
    from blendrl.agents.factory import build_agent
    from blendrl.agents.networks import make_q_network, make_value_network
    from blendrl.envs import get_spec

    spec = get_spec(env)
    torch.manual_seed(0)
    q, v, agent = make_q_network(spec), make_value_network(spec), build_agent(spec, None)
    with torch.no_grad():
        q.out.bias.fill_(30.1)
    shape = (5, *spec.neural_shape)
    x = torch.randint(0, 256, shape, dtype=torch.uint8) if spec.is_image else torch.randn(shape)
    with torch.no_grad():
        exact = q(x)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            mixed, value, logp = q(x), v(x), agent.policy(None, x).log_probs
    assert mixed.dtype == value.dtype == logp.dtype == torch.float32
    assert (mixed - exact).abs().max() < 0.05
    assert not torch.equal(mixed, exact)  # the encoder did run in bfloat16


def test_bf16_blendrl_update_keeps_the_logic_in_float32():
    """A BlendRL agent's IQL step in bf16 on Kangaroo-shaped data: the CNNs run in bfloat16, the
    reasoner does not (its action distribution is bit for bit the float32 one under autocast),
    and the step is finite with float32 parameters."""
    from blendrl.agents.factory import BlendRLFields, build_agent, learning_rates
    from blendrl.envs import get_spec

    spec = get_spec("kangaroo")
    torch.manual_seed(0)
    blend = BlendRLFields()
    agent = build_agent(spec, blend)
    gen = torch.Generator().manual_seed(1)
    logic = torch.rand(16, *spec.logic_shape, generator=gen) * 160  # pixel-sized coordinates
    with torch.no_grad():
        exact = agent.logic_actor.outputs(logic)[0]
        with torch.autocast("cpu", dtype=torch.bfloat16):
            mixed = agent.logic_actor.outputs(logic)[0]
    assert mixed.dtype == torch.float32 and torch.equal(mixed, exact)
    trainer = IQLTrainer.for_spec(agent, spec, IQLConfig(actor_lrs=learning_rates(3e-4, blend),
                                                         precision="bf16"))
    frames = torch.randint(0, 256, (16, *spec.neural_shape), generator=gen, dtype=torch.uint8)
    batch = Batch(logic, frames, torch.randint(0, spec.n_actions, (16,), generator=gen),
                  torch.ones(16), logic, frames, torch.zeros(16, dtype=torch.bool),
                  torch.zeros(16, dtype=torch.bool))
    m = trainer.update(batch)
    assert all(math.isfinite(v) for v in m.values())
    assert all(p.dtype == torch.float32 for p in agent.parameters())


class EveryNetworkScalesItsFrames(IQLTrainer):
    """The trainer as it was before frames were scaled once a step: each pass gets the uint8
    frames and its Nature CNN scales them (and autocast casts them) itself."""

    def _network_input(self, neural: torch.Tensor) -> torch.Tensor:
        return neural


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
@pytest.mark.parametrize("agent_kind", ["neural", "blendrl", "blendrl_blend_entropy",
                                        "blendrl_frame_blender"])
def test_frames_scaled_once_a_step_give_the_same_numbers_bit_for_bit(precision, agent_kind):
    """Scaling (and under bf16 casting) a step's two frame batches once changes no number: three
    steps on Kangaroo-shaped data give the same metrics and the same networks, optimiser states
    included, as every network scaling the uint8 frames itself. For the neural agent, the BlendRL
    agent (its AWR pass ``log_prob``; with the blend-entropy bonus, ``policy``) and a BlendRL
    agent whose blender is a second Nature CNN on the frames (the reference's)."""
    from blendrl.agents.factory import BlendRLFields, build_agent, learning_rates
    from blendrl.envs import get_spec

    spec = get_spec("kangaroo")
    blend = {"neural": None, "blendrl": BlendRLFields(), "blendrl_blend_entropy": BlendRLFields(),
             "blendrl_frame_blender": BlendRLFields(blender_mode="neural",
                                                    neural_blender_input="neural")}[agent_kind]
    blend_ent_coef = 0.01 if agent_kind == "blendrl_blend_entropy" else 0.0
    gen = torch.Generator().manual_seed(3)
    batches = []
    for _ in range(3):
        logic = torch.rand(6, *spec.logic_shape, generator=gen) * 160
        frames = torch.randint(0, 256, (2, 6, *spec.neural_shape), generator=gen, dtype=torch.uint8)
        batches.append(Batch(logic, frames[0], torch.randint(0, spec.n_actions, (6,), generator=gen),
                             torch.randn(6, generator=gen) * 100, logic, frames[1],
                             torch.tensor([False] * 5 + [True]), torch.zeros(6, dtype=torch.bool)))
    results = []
    for cls in (IQLTrainer, EveryNetworkScalesItsFrames):
        torch.manual_seed(0)
        agent = build_agent(spec, blend)
        trainer = cls.for_spec(agent, spec, IQLConfig(actor_lrs=learning_rates(3e-4, blend),
                                                      precision=precision,
                                                      blend_ent_coef=blend_ent_coef))
        metrics = [trainer.update_stats(b) for b in batches]
        results.append((torch.stack(metrics), trainer.state_dict()))
    (m_once, sd_once), (m_each, sd_each) = results
    assert torch.isfinite(m_once).all()
    assert torch.equal(m_once, m_each)
    flat_once, flat_each = [], []
    for sd, flat in ((sd_once, flat_once), (sd_each, flat_each)):
        buf = io.BytesIO()
        torch.save(sd, buf)
        buf.seek(0)
        flat.extend(t for t in _tensors(torch.load(buf, weights_only=False)))
    assert len(flat_once) == len(flat_each) > 20
    assert all(torch.equal(a, b) for a, b in zip(flat_once, flat_each))


def _tensors(tree):
    if isinstance(tree, torch.Tensor):
        yield tree
    elif isinstance(tree, dict):
        for k in sorted(tree, key=str):
            yield from _tensors(tree[k])
    elif isinstance(tree, (list, tuple)):
        for v in tree:
            yield from _tensors(v)


def test_value_regresses_on_the_minimum_of_the_target_qs_at_the_taken_action():
    q1, q2 = nn.Linear(1, 2), nn.Linear(1, 2)
    with torch.no_grad():
        for q, bias in ((q1, [1.0, 5.0]), (q2, [3.0, 2.0])):
            q.weight.zero_()
            q.bias.copy_(torch.tensor(bias))
    trainer = IQLTrainer(TwoGroupActor(1, 1, 2, use_logic=False), (q1, q2),
                         Squeeze(constant_linear(1, 1, 0.0)), IQLConfig(expectile=0.5))
    assert trainer.min_target_q(torch.ones(2, 1), torch.tensor([0, 1])).tolist() == [1.0, 2.0]
    batch = Batch(torch.zeros(2, 1, 1), torch.ones(2, 1), torch.tensor([0, 1]), torch.zeros(2),
                  torch.zeros(2, 1, 1), torch.ones(2, 1), torch.ones(2, dtype=torch.bool),
                  torch.zeros(2, dtype=torch.bool))
    m = trainer.update(batch)
    assert m["losses/value"] == pytest.approx(0.5 * (1.0 + 4.0) / 2)  # V = 0, targets 1 and 2
    assert m["charts/q_target_mean"] == pytest.approx(1.5)


def test_truncation_does_not_stop_bootstrap_but_termination_does():
    def q_loss(terminated: bool, truncated: bool) -> float:
        actor = TwoGroupActor(2, 2, 2, use_logic=False)
        trainer = IQLTrainer(actor, (constant_linear(2, 2, 0.0), constant_linear(2, 2, 0.0)),
                             Squeeze(constant_linear(2, 1, 2.0)), IQLConfig(gamma=0.5))
        batch = Batch(torch.zeros(1, 1, 2), torch.ones(1, 2), torch.tensor([1]), torch.tensor([3.0]),
                      torch.zeros(1, 1, 2), torch.ones(1, 2), torch.tensor([terminated]),
                      torch.tensor([truncated]))
        return trainer.update(batch)["losses/q"]

    assert q_loss(False, False) == pytest.approx(4.0**2)  # 3 + 0.5 * 2
    assert q_loss(False, True) == pytest.approx(4.0**2)
    assert q_loss(True, False) == pytest.approx(3.0**2)


def test_targets_follow_online_q_by_polyak_and_only_actor_groups_get_their_rates():
    trainer = make_trainer(0, IQLConfig(polyak=0.1, actor_lrs={"neural": 1e-3, "logic": 5e-3}))
    before = [p.clone() for p in trainer.q1_target.parameters()]
    q1_before = [p.clone() for p in trainer.q1.parameters()]
    assert all(torch.equal(a, b) for a, b in zip(before, q1_before))  # targets start as copies
    trainer.update(random_batch(torch.Generator().manual_seed(1)))
    for old, tgt, online, online_old in zip(before, trainer.q1_target.parameters(),
                                            trainer.q1.parameters(), q1_before):
        assert not torch.equal(online, online_old)
        torch.testing.assert_close(tgt, 0.9 * old + 0.1 * online)
    assert [(g["name"], g["lr"]) for g in trainer.actor_optimizer.param_groups] == [
        ("neural", 1e-3), ("logic", 5e-3)]
    assert all(not p.requires_grad for p in trainer.q2_target.parameters())


def test_every_actor_group_is_trained_by_awr():
    trainer = make_trainer(0)
    before = {n: p.clone() for n, p in trainer.actor.named_parameters()}
    trainer.update(random_batch(torch.Generator().manual_seed(2)))
    for name, p in trainer.actor.named_parameters():
        assert not torch.equal(p, before[name]), name


# --------------------------------------------------------------------------- persistence

def test_state_dict_round_trip_gives_identical_next_update():
    gen = torch.Generator().manual_seed(0)
    original = make_trainer(0)
    for _ in range(3):
        original.update(random_batch(gen))
    buf = io.BytesIO()
    torch.save(original.state_dict(), buf)
    buf.seek(0)
    state = torch.load(buf, weights_only=True)  # what runs.load_checkpoint does

    restored = make_trainer(123)  # different initial weights
    untouched = make_trainer(123)
    restored.load_state_dict(state)
    assert restored.num_updates == 3

    batch = random_batch(gen)
    m_original, m_restored = original.update(batch), restored.update(batch)
    m_untouched = untouched.update(batch)
    assert m_restored == m_original
    assert m_untouched != m_original  # the comparison can fail
    for a, b in zip(original.state_dict().items(), restored.state_dict().items()):
        assert a[0] == b[0]
        if isinstance(a[1], dict) and "state" not in a[1]:  # network weights
            for k in a[1]:
                assert torch.equal(a[1][k], b[1][k]), (a[0], k)
    for name in ("actor_optimizer", "q_optimizer", "value_optimizer"):
        sa, sb = getattr(original, name).state_dict(), getattr(restored, name).state_dict()
        for idx in sa["state"]:
            for k, v in sa["state"][idx].items():
                assert torch.equal(v, sb["state"][idx][k]), (name, idx, k)
    assert restored.num_updates == original.num_updates == 4


def test_load_state_dict_rejects_unknown_version():
    trainer = make_trainer(0)
    state = trainer.state_dict()
    state["version"] = 99
    with pytest.raises(ValueError, match="version"):
        make_trainer(1).load_state_dict(state)


def test_needs_two_q_networks():
    with pytest.raises(ValueError, match="two Q networks"):
        IQLTrainer(TwoGroupActor(2, 2, 2, use_logic=False), (nn.Linear(2, 2),),
                   Squeeze(nn.Linear(2, 1)), IQLConfig())


# --------------------------------------------------------------------------- learning

def chain_dataset(n_states: int, n: int, rng: np.random.Generator):
    """A line of states; action 1 moves right, 0 moves left (walls at both ends). Action 1 in the
    rightmost state pays 1, action 0 in the leftmost pays a 0.1 distractor. Transitions from a
    uniform random behaviour policy. With gamma 0.9 moving right is optimal everywhere."""
    s = rng.integers(0, n_states, n)
    a = rng.integers(0, 2, n)
    s2 = np.clip(s + np.where(a == 1, 1, -1), 0, n_states - 1)
    r = ((s == n_states - 1) & (a == 1)) + 0.1 * ((s == 0) & (a == 0))
    return s, a, r.astype(np.float32), s2


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_iql_learns_the_optimal_policy_on_a_chain(precision):
    n_states, size = 5, 64
    rng = np.random.default_rng(0)
    torch.manual_seed(0)
    s, a, r, s2 = chain_dataset(n_states, 1000, rng)
    eye = torch.eye(n_states)
    actor = TwoGroupActor(n_states, n_states, 2, use_logic=False)
    trainer = IQLTrainer(actor, (nn.Linear(n_states, 2), nn.Linear(n_states, 2)),
                         Squeeze(nn.Linear(n_states, 1)),
                         IQLConfig(gamma=0.9, polyak=0.05, critic_lr=1e-2, actor_lrs={"neural": 1e-2},
                                   precision=precision))
    no_end = torch.zeros(size, dtype=torch.bool)
    for _ in range(800):
        idx = torch.as_tensor(rng.integers(0, len(s), size))
        states, nexts = eye[torch.as_tensor(s)[idx]], eye[torch.as_tensor(s2)[idx]]
        trainer.update(Batch(states[:, None], states, torch.as_tensor(a)[idx], torch.as_tensor(r)[idx],
                             nexts[:, None], nexts, no_end, no_end))
    with torch.no_grad():
        greedy = actor.action_probs(eye[:, None], eye).argmax(1)
        q = torch.minimum(trainer.q1(eye), trainer.q2(eye))
    assert greedy.tolist() == [1] * n_states
    assert (q[:, 1] > q[:, 0]).all()
    # values grow towards the rewarding end
    assert (trainer.value(eye)[1:] > trainer.value(eye)[:-1]).all()


def test_the_nature_cnn_scales_uint8_takes_scaled_floats_and_refuses_other_integers():
    from blendrl.agents.networks import NatureCNN, scale_frames

    torch.manual_seed(0)
    cnn = NatureCNN(4)
    frames = torch.randint(0, 256, (2, 4, 84, 84), dtype=torch.uint8)
    with torch.no_grad():
        assert torch.equal(cnn(frames), cnn(scale_frames(frames)))
        assert torch.equal(scale_frames(frames), frames.float() / 255.0)
        with pytest.raises(TypeError, match="uint8 frames or frames scaled"):
            cnn(frames.long())
    with pytest.raises(TypeError, match="takes uint8"):
        scale_frames(frames.float())


def test_uint8_vector_states_reach_the_networks_as_ppo_and_evaluation_give_them():
    """Only frame states are scaled by the trainer (as NatureCNN scales them in PPO and in
    evaluation); a uint8 *vector* state goes to the MLP unscaled, as it does there: IQL's steps
    equal those of a trainer that hands every network the raw state."""
    import dataclasses

    from blendrl.agents.factory import build_agent
    from blendrl.envs import get_spec

    spec = dataclasses.replace(get_spec("cartpole"), neural_dtype=np.dtype(np.uint8))
    gen = torch.Generator().manual_seed(5)
    batches = []
    for _ in range(3):
        logic = torch.rand(6, *spec.logic_shape, generator=gen)
        states = torch.randint(0, 256, (2, 6, *spec.neural_shape), generator=gen, dtype=torch.uint8)
        batches.append(Batch(logic, states[0], torch.randint(0, spec.n_actions, (6,), generator=gen),
                             torch.randn(6, generator=gen), logic, states[1],
                             torch.zeros(6, dtype=torch.bool), torch.zeros(6, dtype=torch.bool)))
    metrics = []
    for cls in (IQLTrainer, EveryNetworkScalesItsFrames):
        torch.manual_seed(0)
        trainer = cls.for_spec(build_agent(spec, None), spec, IQLConfig(), hidden=16)
        metrics.append(torch.stack([trainer.update_stats(b) for b in batches]))
    assert torch.isfinite(metrics[0]).all()
    assert torch.equal(metrics[0], metrics[1])
