"""The logic reasoner on a toy rule set: forward chaining computed by hand, gradients, text, loading.

The toy world (also used by ``test_logic_validation.py``): an ``agent`` and two gems (``gem1``,
``gem2``) on a line; features ``(x, shine)``; actions ``stay``, ``grab``, ``flee``; valuation functions
simple enough to compute by hand.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch

from blendrl.envs import load_rule_set
from blendrl.envs.base import EnvSpec
from blendrl.logic import (NO_RULE_LOGIT, LogicActor, LogicBlender, RuleSet, RuleSetError, build_rule_set,
                           soft_or)

# --------------------------------------------------------------------------------------------
# the toy environment

TOY_SPEC = EnvSpec(
    name="toy",
    gym_id="Toy-v0",
    objects=("agent", "gem1", "gem2"),
    object_types=("agent", "gem", "gem"),
    features=("x", "shine"),
    neural_shape=(6,),
    neural_dtype=np.dtype(np.float32),
    action_names=("stay", "grab", "flee"),
    max_episode_steps=10,
)


def shiny(gem: torch.Tensor) -> torch.Tensor:
    """The gem's shine feature itself."""
    return gem[..., 1]


def near(agent: torch.Tensor, gem: torch.Tensor) -> torch.Tensor:
    """1 - |x_agent - x_gem|, clamped to [0, 1]."""
    return (1.0 - (agent[..., 0] - gem[..., 0]).abs()).clamp(0.0, 1.0)


def toy_valuations() -> dict:
    return {"shiny": shiny, "near": near}


BASE_FILES: dict[str, str] = {
    "preds.txt": "grab_gem:0\nflee:0\n",
    "neural_preds.txt": "shiny:1:gem\nnear:2:agent,gem\n",
    "clauses.txt": ("grab_gem :- near(A, G), shiny(G).\n"
                    "flee :- near(A, G), not shiny(G).\n"),
}
"""The two-clause rule set (valid)."""


def write_rule_set(folder: Path, files: dict[str, str | None]) -> Path:
    """Write ``BASE_FILES`` updated by ``files`` (a None value leaves that file out) into ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    merged = {**BASE_FILES, **files}
    for name, text in merged.items():
        if text is not None:
            (folder / name).write_text(text, encoding="utf-8")
    return folder


def toy_rule_set(folder: Path, files: dict[str, str | None] | None = None,
                 valuations: dict | None = None) -> RuleSet:
    write_rule_set(folder, files or {})
    return build_rule_set(folder, TOY_SPEC, toy_valuations() if valuations is None else valuations)


def toy_state(rows: list[list[list[float]]]) -> torch.Tensor:
    """[B, 3, 2] from nested lists: per state, (agent, gem1, gem2) rows of (x, shine)."""
    return torch.tensor(rows, dtype=torch.float32)


# --------------------------------------------------------------------------------------------
# forward chaining, by hand

STATES = [
    # agent x=0.0; gem1 at 0.5 shining 0.8; gem2 at 0.9 shining 0.3
    [[0.0, 0.0], [0.5, 0.8], [0.9, 0.3]],
    # agent x=0.7; gem1 at 0.5, dull; gem2 at 0.9, fully shining
    [[0.7, 0.0], [0.5, 0.0], [0.9, 1.0]],
]


def test_two_clause_forward_chaining_matches_the_hand_computation(tmp_path):
    """grab_gem :- near(A,G), shiny(G).   flee :- near(A,G), not shiny(G).   (w = 0.9, T = 0.1)

    State 0: near(agent,gem1) = 1 - 0.5 = 0.5, near(agent,gem2) = 1 - 0.9 = 0.1.
      grab_gem groundings: 0.9*0.5*0.8 = 0.36 and 0.9*0.1*0.3 = 0.027;
        softor = (0.36 e^3.6 + 0.027 e^0.27) / (e^3.6 + e^0.27) = 0.348492775...
      flee groundings: 0.9*0.5*(1-0.8) = 0.09 and 0.9*0.1*(1-0.3) = 0.063;
        softor = (0.09 e^0.9 + 0.063 e^0.63) / (e^0.9 + e^0.63) = 0.078311508...
      logits: stay (no rule) = logit(0.01), grab = logit(0.3485), flee = logit(0.0783)
        -> softmax = (0.016034147, 0.849093644, 0.134872209).
    State 1: near = 0.8 for both gems; shine 0 and 1.
      grab_gem: 0 and 0.72 -> 0.72 e^7.2 / (1 + e^7.2) = 0.719462859...; flee: the mirror image, same.
        -> softmax = (0.001965452, 0.499017274, 0.499017274).
    """
    rule_set = toy_rule_set(tmp_path / "rs")
    actor = LogicActor(rule_set, temperature=0.1, init_weight=0.9)
    state = toy_state(STATES)
    values = actor.action_values(state)
    expected_values = torch.tensor([[0.34849277531466993, 0.07831150843406727],
                                    [0.7194628592396375, 0.7194628592396375]])
    assert torch.allclose(values, expected_values, atol=1e-6)
    expected_probs = torch.tensor([[0.016034146684944413, 0.8490936440390585, 0.13487220927599705],
                                   [0.0019654516832122875, 0.4990172741583939, 0.4990172741583939]])
    assert torch.allclose(actor(state), expected_probs, atol=1e-6)


def _boltzmann(xs: list[float], temperature: float) -> float:
    """sum_i x_i softmax(x / T)_i in plain Python (the reference for the soft OR)."""
    weights = [math.exp(x / temperature) for x in xs]
    return sum(x * w for x, w in zip(xs, weights)) / sum(weights)


def _logit(v: float) -> float:
    v = min(max(v, 0.01), 0.99)
    return math.log(v / (1 - v))


def test_helpers_negation_and_clauses_of_one_action_need_two_steps(tmp_path):
    """A helper (OR over gems), its negation, two action predicates of one action, a fact-free rule."""
    files = {
        "preds.txt": "grab_any:0\ngrab_first:0\nstay:0\n",
        "helper_preds.txt": "lit:0\n",
        "clauses.txt": ("lit :- shiny(G).\n"
                        "grab_any :- lit.\n"
                        "grab_first :- near(A, gem1).\n"
                        "stay :- not lit.\n"),
    }
    rule_set = toy_rule_set(tmp_path / "rs", files)
    w, temp = 0.8, 0.2
    with pytest.raises(ValueError, match="fewer than the 2 steps"):
        LogicActor(rule_set, temperature=temp, init_weight=w, infer_steps=1)
    actor = LogicActor(rule_set, temperature=temp, init_weight=w)
    assert actor.reasoner.infer_steps == 2
    state = toy_state(STATES)
    for b, ((ax, _), (x1, s1), (x2, s2)) in enumerate(STATES):
        lit = _boltzmann([w * s1, w * s2], temp)
        grab_any = w * lit
        grab_first = w * max(0.0, 1 - abs(ax - x1))
        stay = w * (1 - lit)
        assert torch.allclose(actor.action_values(state)[b],
                              torch.tensor([grab_any, grab_first, stay]), atol=1e-6)
        logits = [_logit(stay), _logit(_boltzmann([grab_any, grab_first], temp)), NO_RULE_LOGIT]
        z = sum(math.exp(v) for v in logits)
        assert torch.allclose(actor(state)[b], torch.tensor([math.exp(v) / z for v in logits]), atol=1e-6)
    # more steps than needed change nothing (the rules are not recursive)
    longer = LogicActor(rule_set, temperature=temp, init_weight=w, infer_steps=5)
    assert torch.allclose(longer(state), actor(state), atol=1e-7)


def test_soft_or_properties():
    x = torch.tensor([[0.0, 0.0, 0.0], [1.0, 0.0, 0.0], [0.3, 0.3, 0.3], [0.5, 0.49, 0.0]])
    out = soft_or(x, 0.01)
    assert out[0] == 0.0 and abs(out[1] - 1.0) < 1e-6 and abs(out[2] - 0.3) < 1e-6
    assert 0.49 < out[3] < 0.5  # between the mean and the max, within T*log(n) of the max
    padding = torch.tensor([[False, True, True]] * 4)
    assert torch.equal(soft_or(x, 0.01, padding), x[:, 0])  # a single entry is itself


def test_soft_comparisons_are_their_formulas():
    """blendrl.logic.soft computes with cached 0-dim constants and fused ops; the values are the
    documented formulas, for float32 and float64, with gradients."""
    from blendrl.logic.soft import constant, greater, near, proximity, within
    torch.manual_seed(0)
    a, b = torch.randn(3, 4) * 10, torch.randn(3, 4) * 10
    for x, y, tol in ((a, b, 1e-6), (a.double(), b.double(), 1e-12)):  # float64 stays float64-exact
        assert torch.allclose(greater(x, 2.0, 3.0), torch.sigmoid((x - 2.0) / 3.0), atol=tol)
        assert torch.allclose(greater(2.0, x, 3.0), torch.sigmoid((2.0 - x) / 3.0), atol=tol)
        assert torch.allclose(greater(x, y, 0.5), torch.sigmoid((x - y) / 0.5), atol=tol)
        assert torch.allclose(within(x, 2.0, 0.5), torch.sigmoid((2.0 - x.abs()) / 0.5), atol=tol)
        assert torch.allclose(near(x, y, 2.0, 0.3), torch.sigmoid((2.0 - (x - y).abs()) / 0.3), atol=tol)
        assert torch.allclose(near(x, 1.7, 2.0, 0.3), torch.sigmoid((2.0 - (x - 1.7).abs()) / 0.3), atol=tol)
        assert torch.allclose(proximity(x, 100.0), torch.exp(-x.abs() / 100.0), atol=tol)
        assert greater(x, 1.0, 1.0).dtype == x.dtype
    assert constant(0.25) is constant(0.25) and constant(0.25).shape == ()
    x = a.clone().requires_grad_()
    greater(x, 1.0, 2.0).sum().backward()
    s = torch.sigmoid((a - 1.0) / 2.0)
    assert torch.allclose(x.grad, s * (1 - s) / 2.0, atol=1e-6)


def test_distribution_is_proper_without_zeros_on_random_states(tmp_path):
    actor = LogicActor(toy_rule_set(tmp_path / "rs"))
    torch.manual_seed(0)
    state = torch.rand(64, 3, 2) * 2 - 0.5
    probs = actor(state)
    assert probs.shape == (64, 3)
    assert torch.isfinite(probs).all() and (probs > 0).all()
    assert torch.allclose(probs.sum(1), torch.ones(64), atol=1e-6)


def test_gradients_reach_every_clause_weight_and_training_changes_the_text(tmp_path):
    rule_set = toy_rule_set(tmp_path / "rs")
    actor = LogicActor(rule_set, temperature=0.1)
    state = toy_state(STATES)
    loss = -torch.log(actor(state)[:, 2]).mean()  # make "flee" more likely
    loss.backward()
    grad = actor.reasoner.raw_weights[0].grad
    assert grad is not None and torch.isfinite(grad).all() and (grad != 0).all()
    assert grad[1] < 0 < grad[0]  # raise the flee clause's weight, lower the grab clause's
    before = actor.program_text()
    optimizer = torch.optim.SGD(actor.parameters(), lr=10.0)
    optimizer.step()
    after = actor.program_text()
    assert before.splitlines() == ["0.980 grab_gem :- near(A,G), shiny(G).",
                                   "0.980 flee :- near(A,G), not shiny(G)."]
    grab_w, flee_w = (float(line.split()[0]) for line in after.splitlines())
    assert grab_w < 0.98 < flee_w


def test_parameters_are_the_clause_weights_only_and_state_dict_round_trips(tmp_path):
    rule_set = toy_rule_set(tmp_path / "rs")
    actor = LogicActor(rule_set)
    assert [name for name, _ in actor.named_parameters()] == ["reasoner.raw_weights.0"]
    assert list(actor.state_dict()) == ["reasoner.raw_weights.0"]
    assert actor.actor_parameters() == [actor.reasoner.raw_weights[0]] and actor.blender_parameters() == []
    with torch.no_grad():
        actor.reasoner.raw_weights[0].copy_(torch.tensor([0.3, -1.2]))
    clone = LogicActor(rule_set)
    clone.load_state_dict(actor.state_dict())
    state = toy_state(STATES)
    assert torch.equal(clone(state), actor(state))


def test_logic_state_of_the_wrong_shape_is_a_clear_error(tmp_path):
    actor = LogicActor(toy_rule_set(tmp_path / "rs"))
    with pytest.raises(ValueError, match=r"shape \[B, 3, 2\] for toy"):
        actor(torch.zeros(4, 2, 2))


def test_blender_values_by_hand(tmp_path):
    files = {
        "helper_preds.txt": "bright:0\n",
        "blender_clauses.txt": ("% the neural actor where some gem shines, the logic actor elsewhere\n"
                                "bright :- shiny(G).\n"
                                "neural_agent :- bright.\n"
                                "logic_agent :- not bright.\n"),
    }
    blender = LogicBlender(toy_rule_set(tmp_path / "rs", files), temperature=0.1, init_weight=0.9)
    out = blender(toy_state(STATES))
    for b, (_, (_, s1), (_, s2)) in enumerate(STATES):
        bright = _boltzmann([0.9 * s1, 0.9 * s2], 0.1)
        assert torch.allclose(out[b], torch.tensor([0.9 * bright, 0.9 * (1 - bright)]), atol=1e-6)
    assert blender.program_text().splitlines()[1] == "0.900 neural_agent :- bright."


def test_blender_needs_blender_clauses(tmp_path):
    rule_set = toy_rule_set(tmp_path / "rs")
    assert not rule_set.has_blender
    with pytest.raises(RuleSetError, match="no blender clauses"):
        LogicBlender(rule_set)


def test_actor_and_blender_in_one_pass_share_atoms_but_not_helpers(tmp_path):
    """Both files define a helper ``lit`` with different meanings: the joint pass keeps them apart,
    computes the ``shiny`` atoms both files use once, and sends each file's gradient to its own
    weights only."""
    calls = []

    def counted_shiny(gem):
        calls.append(gem.shape)
        return shiny(gem)

    files = {
        "preds.txt": "grab_gem:0\n",
        "helper_preds.txt": "lit:0\n",
        "clauses.txt": "lit :- shiny(G).\ngrab_gem :- lit.\n",
        "blender_clauses.txt": ("lit :- near(A, G), shiny(gem2).\n"
                                "neural_agent :- lit.\nlogic_agent :- not lit.\n"),
    }
    rule_set = toy_rule_set(tmp_path / "rs", files, {"shiny": counted_shiny, "near": near})
    joint = LogicActor(rule_set, temperature=0.1, init_weight=0.9, with_blender=True)
    state = toy_state(STATES)
    calls.clear()
    probs, blend = joint.with_blend_values(state)
    assert calls == [torch.Size([2, 2, 2])]  # one call, on the rows of gem1 and gem2
    assert torch.allclose(probs, LogicActor(rule_set, temperature=0.1, init_weight=0.9)(state), atol=1e-6)
    assert torch.allclose(blend, LogicBlender(rule_set, temperature=0.1, init_weight=0.9)(state), atol=1e-6)
    for b, ((ax, _), (x1, s1), (x2, s2)) in enumerate(STATES):  # by hand
        lit = _boltzmann([0.9 * max(0.0, 1 - abs(ax - x1)) * s2, 0.9 * max(0.0, 1 - abs(ax - x2)) * s2], 0.1)
        assert torch.allclose(blend[b], torch.tensor([0.9 * lit, 0.9 * (1 - lit)]), atol=1e-6)
    blend[:, 0].sum().backward()
    actor_w, blender_w = joint.reasoner.raw_weights
    assert actor_w.grad is None or torch.all(actor_w.grad == 0)
    assert blender_w.grad is not None and blender_w.grad[0] != 0 and blender_w.grad[1] != 0
    with pytest.raises(RuntimeError, match="with_blender=False"):
        LogicActor(rule_set).with_blend_values(state)


def test_constants_in_clauses_and_a_union_type_from_consts(tmp_path):
    files = {
        "preds.txt": "grab_gem:0\n",
        "neural_preds.txt": "shiny:1:thing\nnear:2:agent,gem\n",
        "consts.txt": "thing: gem2, agent   # a union type\n",
        "clauses.txt": "grab_gem :- shiny(T), near(agent, gem1).\n",
    }
    rule_set = toy_rule_set(tmp_path / "rs", files)
    assert rule_set.constants["thing"] == ("gem2", "agent")
    assert rule_set.constants["gem"] == ("gem1", "gem2")
    actor = LogicActor(rule_set, temperature=0.1, init_weight=0.5)
    state = toy_state(STATES)
    for b, ((ax, a_shine), (x1, _), (_, s2)) in enumerate(STATES):
        near1 = max(0.0, 1 - abs(ax - x1))
        expected = _boltzmann([0.5 * s2 * near1, 0.5 * a_shine * near1], 0.1)
        assert abs(float(actor.action_values(state).detach()[b, 0]) - expected) < 1e-6


def test_multiline_clauses_comments_and_arity_zero_forms(tmp_path):
    files = {"preds.txt": "grab_gem:0:   # arity 0 with an empty type list\nflee:0\n",
             "clauses.txt": ("% a clause over three lines\n"
                             "grab_gem :-\n    near(A, G),   # near\n    shiny(G).\n"
                             "flee() :- near(A, G), not shiny(G).\n")}
    rule_set = toy_rule_set(tmp_path / "rs", files)
    assert [str(c) for c in rule_set.actor_clauses] == ["grab_gem :- near(A,G), shiny(G).",
                                                       "flee :- near(A,G), not shiny(G)."]
    assert rule_set.actor_clauses[1].source.line == 5


# --------------------------------------------------------------------------------------------
# loading by name and by path


def test_load_by_name_and_by_path_give_the_same_rules():
    by_name = load_rule_set("mountaincar", "no_left")
    path = str(by_name.folder)
    by_path = load_rule_set("mountaincar", path)
    assert by_path.folder == Path(path)
    assert [str(c) for c in by_path.actor_clauses] == [str(c) for c in by_name.actor_clauses]
    assert "left" not in {a.name for a in by_name.actions}


def test_unknown_rule_set_name_lists_the_available_ones():
    with pytest.raises(RuleSetError, match=r"no rule set named 'nope'.*available: default, no_left"):
        load_rule_set("mountaincar", "nope")
    with pytest.raises(RuleSetError, match="does not exist"):
        load_rule_set("mountaincar", "./no/such/folder")
    with pytest.raises(ValueError, match="unknown environment"):
        load_rule_set("pong")


def test_the_logic_package_knows_no_game():
    """Dependencies point one way: environments hand their spec and valuation functions to the
    rule-set builder; no module of blendrl/logic imports an environment (only the interface types
    of blendrl.envs.base)."""
    import ast
    from pathlib import Path

    import blendrl.logic

    folder = Path(blendrl.logic.__file__).parent
    for path in sorted(folder.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                assert node.level == 0 or node.module not in (None, "envs"), path.name
                names = [node.module or ""]
                if node.module == "blendrl":  # from blendrl import envs
                    names += [f"blendrl.{a.name}" for a in node.names]
            else:
                continue
            for name in names:
                assert not (name.startswith("blendrl.envs") and name != "blendrl.envs.base"), \
                    f"{path.name} imports {name}"
