"""The default rule sets of all five environments on real environment states.

Greedy (argmax) logic actors with untrained weights: the CartPole rules hold the pole and the
MountainCar rules reach the flag; every default rule set builds and runs on real states, and the
Atari rules really fire there (the blender hands control to the neural actor near enemies).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from blendrl.envs import ATARI_ENVS, ENV_NAMES, get_spec, make_vec_env
from blendrl.envs.atari import FEATURES
from blendrl.envs.cartpole import valuation as cartpole_valuation
from blendrl.envs.donkeykong import valuation as donkeykong_valuation
from blendrl.envs.kangaroo import valuation as kangaroo_valuation
from blendrl.envs.mountaincar import valuation as mountaincar_valuation
from blendrl.envs.seaquest import valuation as seaquest_valuation
from blendrl.envs import load_rule_set
from blendrl.logic import LogicActor, LogicBlender, geometry
from blendrl.logic.ruleset import sees_absent_objects_of

ATARI_VALUATIONS = {"seaquest": seaquest_valuation, "kangaroo": kangaroo_valuation,
                    "donkeykong": donkeykong_valuation}


def _greedy_returns(env: str, rules: str, n_episodes: int, seed: int) -> np.ndarray:
    """The first episode's return of each of ``n_episodes`` parallel copies, actions = argmax pi_l."""
    torch.set_num_threads(1)
    actor = LogicActor(load_rule_set(env, rules))
    vec = make_vec_env(env, n_episodes)
    logic, _ = vec.reset(seed=seed)
    returns = np.full(n_episodes, np.nan)
    while np.isnan(returns).any():
        with torch.no_grad():
            actions = actor(torch.as_tensor(logic)).argmax(dim=1).numpy()
        step = vec.step(actions)
        first = step.done & np.isnan(returns)
        returns[first] = step.episode_return[first]
        logic = step.obs_logic
    vec.close()
    return returns


def test_cartpole_default_rules_hold_the_pole():
    returns = _greedy_returns("cartpole", "default", 20, seed=1000)
    assert returns.mean() > 150, returns


def test_mountaincar_default_rules_reach_the_flag():
    returns = _greedy_returns("mountaincar", "default", 20, seed=2000)
    assert returns.mean() > -140, returns
    assert (returns > -200).all(), returns  # every episode reaches the flag


def test_mountaincar_without_the_left_rule_is_a_different_policy():
    state = torch.tensor([[[-0.5, -0.02]]])  # moving left
    default = LogicActor(load_rule_set("mountaincar"))
    no_left = LogicActor(load_rule_set("mountaincar", "no_left"))
    assert default(state).argmax().item() == 0  # left
    assert no_left.action_values(state).max() < 0.01  # no rule argues for anything
    assert torch.allclose(no_left(state), torch.full((1, 3), 1 / 3), atol=1e-3)


def test_feature_columns_of_the_valuation_functions_match_the_specs():
    for module, env in ((cartpole_valuation, "cartpole"), (mountaincar_valuation, "mountaincar")):
        spec = get_spec(env)
        assert (module.POS, module.VEL) == (spec.feature_index("pos"), spec.feature_index("vel"))
    assert (geometry.VISIBLE, geometry.X, geometry.Y, geometry.W, geometry.H, geometry.VALUE) == \
        tuple(FEATURES.index(f) for f in ("visible", "x", "y", "w", "h", "value"))
    for env in ATARI_ENVS:
        assert get_spec(env).features == FEATURES


@pytest.mark.parametrize("env", ATARI_ENVS)
def test_atari_atoms_about_empty_slots_are_exactly_zero(env):
    """The reasoner's presence gate: on real states whose slots are emptied at random (``visible``
    set to 0, the stale coordinates left in place), every valuation atom about an empty slot is
    exactly 0 and every other atom is its valuation function's own value -- except the atoms of
    functions that see absent objects (Seaquest's oxygen_low), which are always their own value."""
    torch.set_num_threads(1)
    states = _real_states(env, 30, seed=1)
    generator = torch.Generator().manual_seed(0)
    emptied = states.clone()
    emptied[:, :, 0] *= (torch.rand(states.shape[:2], generator=generator) > 0.3).float()
    reasoner = LogicActor(load_rule_set(env), with_blender=True).reasoner
    with torch.no_grad():
        atoms = reasoner.valuate(emptied)[:, 2:]
    position = 0
    for call in reasoner.joint.valuation_calls:
        args = [emptied[:, list(slots)] for slots in call.arg_slots]
        raw = call.fn(*args)
        present = torch.stack([a[..., 0] for a in args]).prod(0)
        width = raw.shape[1]
        got = atoms[:, position:position + width]
        position += width
        if sees_absent_objects_of(call.fn):
            assert torch.equal(got, raw), call.predicate
            continue
        assert torch.equal(got[present == 0], torch.zeros(int((present == 0).sum()))), call.predicate
        assert torch.equal(got[present == 1], raw[present == 1]), call.predicate
    assert position == atoms.shape[1]
    assert (atoms == 0).any() and (atoms > 0.5).any()  # both cases occur


@pytest.mark.parametrize("env", ENV_NAMES)
def test_actor_and_blender_in_one_pass_equal_the_separate_programs(env):
    """``LogicActor(with_blender=True)`` (what the BlendRL agent uses) gives exactly what a separate
    actor and blender give, on real states, and keeps the two programs' weights apart."""
    torch.set_num_threads(1)
    rule_set = load_rule_set(env)
    states = _real_states(env, 20, seed=2)
    joint, actor, blender = LogicActor(rule_set, with_blender=True), LogicActor(rule_set), LogicBlender(rule_set)
    with torch.no_grad():
        for module, scale in ((actor, 0.3), (blender, -0.2), (joint, 0.0)):
            for w in module.reasoner.raw_weights:  # distinct weights, so a mix-up would show
                w.add_(torch.linspace(-1, 1, len(w)) * scale)
        joint.reasoner.raw_weights[0].copy_(actor.reasoner.raw_weights[0])
        joint.reasoner.raw_weights[1].copy_(blender.reasoner.raw_weights[0])
        probs, blend = joint.with_blend_values(states)
        assert torch.allclose(probs, actor(states), atol=1e-6)
        assert torch.allclose(blend, blender(states), atol=1e-6)
    assert joint.program_text() == actor.program_text()
    assert joint.blender_program_text() == blender.program_text()
    assert joint.actor_parameters() == [joint.reasoner.raw_weights[0]]
    assert joint.blender_parameters() == [joint.reasoner.raw_weights[1]]


def test_cartpole_valuations_and_blender_by_hand():
    rule_set = load_rule_set("cartpole")
    actor, blender = LogicActor(rule_set), LogicBlender(rule_set)
    # pole angle 0.02 rad, angular velocity -0.02 rad/s -> heading 0.02 - 0.01 = 0.01 -> sigmoid(0.5)
    state = torch.tensor([[[0.0, 0.0], [0.02, -0.02]], [[2.0, 0.0], [-0.05, 0.0]]])
    right = 0.98 * torch.sigmoid(torch.tensor(0.5))
    left = 0.98 * torch.sigmoid(torch.tensor(-0.5))
    assert torch.allclose(actor.action_values(state)[0], torch.stack([left, right]), atol=1e-6)
    assert actor(state).argmax(1).tolist() == [1, 0]
    edge = torch.sigmoid(torch.tensor([(0.0 - 1.5) / 0.15, (2.0 - 1.5) / 0.15]))
    assert torch.allclose(blender(state), 0.98 * torch.stack([edge, 1 - edge], dim=1), atol=1e-6)


@pytest.mark.parametrize("env,rules", [(e, "default") for e in ENV_NAMES] + [("mountaincar", "no_left")])
def test_every_default_rule_set_builds_with_a_blender(env, rules):
    rule_set = load_rule_set(env, rules)
    assert rule_set.has_blender
    assert LogicActor(rule_set).program_text().count("\n") + 1 == len(rule_set.actor_clauses)
    assert LogicBlender(rule_set).program_text().startswith("0.980 ")


def _real_states(env: str, steps: int, seed: int) -> torch.Tensor:
    """Logic states of a reset and ``steps`` random steps of two parallel copies."""
    rng = np.random.default_rng(seed)
    vec = make_vec_env(env, 2)
    logic, _ = vec.reset(seed=seed)
    states = [logic]
    for _ in range(steps):
        states.append(vec.step(rng.integers(vec.spec.n_actions, size=2)).obs_logic)
    vec.close()
    return torch.as_tensor(np.concatenate(states))


def _check_outputs(actor: LogicActor, blender: LogicBlender, states: torch.Tensor):
    with torch.no_grad():
        probs, values, blend = actor(states), actor.action_values(states), blender(states)
    assert probs.shape == (len(states), actor.rule_set.spec.n_actions)
    assert torch.isfinite(probs).all() and (probs > 0).all()
    assert torch.allclose(probs.sum(1), torch.ones(len(states)), atol=1e-5)
    assert ((values >= 0) & (values <= 1)).all() and ((blend >= 0) & (blend <= 1)).all()
    return probs, values, blend


@pytest.mark.parametrize("env", ["cartpole", "mountaincar"])
def test_classic_default_rules_run_on_real_states(env):
    states = _real_states(env, 20, seed=3)
    rule_set = load_rule_set(env)
    probs, values, _ = _check_outputs(LogicActor(rule_set), LogicBlender(rule_set), states)
    assert values.max() > 0.5  # some rule is true on these states


@pytest.mark.parametrize("env", ATARI_ENVS)
def test_atari_default_rules_fire_on_real_states(env):
    """300 random steps of two copies: the rules run, and both blender heads and an action fire."""
    torch.set_num_threads(1)
    states = _real_states(env, 300, seed=0)
    rule_set = load_rule_set(env)
    actor = LogicActor(rule_set)
    probs, values, blend = _check_outputs(actor, LogicBlender(rule_set), states)
    assert blend[:, 0].max() > 0.9, "the neural_agent (danger) rule never fired"
    assert blend[:, 1].max() > 0.9, "the logic_agent rule never fired"
    spec = rule_set.spec
    names = spec.action_names
    greedy = probs.argmax(1)
    player = states[:, spec.objects.index("player")]
    if env == "seaquest":
        oxygen = states[:, spec.objects.index("oxygenbar")]
        low = (oxygen[:, 0] == 1) & (oxygen[:, 5] < 10) & (player[:, 0] == 1)
        assert low.any()
        assert all(names[a] == "up" for a in greedy[low]), "low oxygen: surface"
        by_name = dict(zip(actor.action_predicates, values.max(0).values))
        assert by_name["down_to_diver"] > 0.5 and by_name["up_to_diver"] > 0.5
    elif env == "kangaroo":
        # at the reset the player stands left of the first ladder: walk right
        assert names[greedy[0]] == "right" and names[greedy[1]] == "right"
    else:
        # the environment presses FIRE at every reset (the Atari protocol), so the game runs at the
        # reset: Mario walks right, up the sloping girder, to the first ladder
        assert names[greedy[0]] == "upright" and names[greedy[1]] == "upright"


def test_seaquest_six_divers_aboard_means_surface_before_any_diver():
    """Hand-made Seaquest state: a diver below the player; with six divers aboard, surface instead."""
    spec = get_spec("seaquest")
    actor = LogicActor(load_rule_set("seaquest"))
    state = torch.zeros(2, *spec.logic_shape)
    rows = {"player": [1, 76, 80, 16, 11, 0], "diver1": [1, 80, 117, 8, 11, 0],
            "oxygenbar": [1, 49, 170, 50, 5, 50]}
    for name, row in rows.items():
        state[:, spec.objects.index(name)] = torch.tensor(row, dtype=torch.float32)
    for k in range(1, 7):
        state[1, spec.objects.index(f"collecteddiver{k}")] = torch.tensor([1, 50 + 8 * k, 178, 8, 9, 0.0])
    greedy = [spec.action_names[a] for a in actor(state).argmax(1)]
    assert greedy == ["down", "up"]


def test_seaquest_empty_tank_reads_as_oxygen_low_on_a_real_state():
    """OCAtari drops the oxygen bar object at zero oxygen. A real game: the submarine dives just
    below the surface and waits there until the oxygen runs out; in the states where the bar is
    gone and the player still there (the tank is empty), oxygen_low is true and the greedy logic
    action is up -- with the presence gate the atom would be 0 at the most urgent moment."""
    torch.set_num_threads(1)
    spec = get_spec("seaquest")
    names, objects = spec.action_names, spec.objects
    player, bar = objects.index("player"), objects.index("oxygenbar")
    rule_set = load_rule_set("seaquest")
    actor = LogicActor(rule_set)
    reasoner = actor.reasoner
    oxygen_atom = reasoner.index_of(0, ("oxygen_low", ("oxygenbar",)))
    vec = make_vec_env("seaquest", 1, vectorization="sync")
    vec.reset(seed=0)
    levels, empty = [], []
    for t in range(800):
        action = names.index("down") if 60 <= t < 62 else names.index("noop")
        state = vec.step(np.array([action])).obs_logic[0]
        if state[player, 0] == 1 and state[player, 2] > 46:  # underwater
            if state[bar, 0] == 1:
                levels.append(float(state[bar, 5]))
            else:
                empty.append(state)
        if empty and state[player, 0] == 0:  # the submarine died of it
            break
    vec.close()
    assert empty, "the oxygen bar never disappeared under water"
    assert levels[-1] <= 2 and levels[0] > 50  # it ran down from full to (almost) nothing first
    states = torch.as_tensor(np.stack(empty))
    with torch.no_grad():
        atoms = reasoner(states)
        probs = actor(states)
    assert (atoms[:, oxygen_atom] > 0.99).all()
    assert all(names[a] == "up" for a in probs.argmax(1))
    raw = rule_set.valuation_fns["oxygen_low"](states[:, bar])
    assert torch.equal(raw * states[:, bar, 0], torch.zeros(len(states)))  # what the gate gave
