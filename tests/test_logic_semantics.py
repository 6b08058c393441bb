"""The reasoner's selectable semantics against hand computations on the toy rule set of
``test_logic.py``: the logsumexp soft OR (with the division by the maximum), softmax clause weights,
the reduced action set, and the gradient every clause weight gets at initialisation.
"""

from __future__ import annotations

import math

import pytest
import torch

from blendrl.logic import CLAUSE_WEIGHTS, SOFT_ORS, LogicActor, LogicBlender, soft_or
from blendrl.logic.actors import ACTION_EPS
from test_logic import STATES, toy_rule_set, toy_state

# --------------------------------------------------------------------------------------------
# plain-Python references


def _lse(xs: list[float], t: float) -> float:
    """T log sum exp(x / T)."""
    m = max(xs)
    return m + t * math.log(sum(math.exp((x - m) / t) for x in xs))


def _boltzmann(xs: list[float], t: float) -> float:
    weights = [math.exp(x / t) for x in xs]
    return sum(x * w for x, w in zip(xs, weights)) / sum(weights)


def _or(kind: str, xs: list[float], t: float) -> float:
    return _lse(xs, t) if kind == "logsumexp" else _boltzmann(xs, t)


def _normalised(kind: str, values: list[float]) -> list[float]:
    """The logsumexp soft OR's division by the maximum of the atoms computed together, above 1."""
    top = max(values)
    return [v / top for v in values] if kind == "logsumexp" and top > 1 else values


def _logit(v: float) -> float:
    v = min(max(v, ACTION_EPS), 1 - ACTION_EPS)
    return math.log(v / (1 - v))


def _softmax(xs: list[float]) -> list[float]:
    m = max(xs)
    e = [math.exp(x - m) for x in xs]
    return [v / sum(e) for v in e]


def _near(a: float, b: float) -> float:
    return min(max(1.0 - abs(a - b), 0.0), 1.0)


# --------------------------------------------------------------------------------------------
# the logsumexp soft OR


def test_soft_or_logsumexp_is_its_formula():
    x = torch.tensor([[0.0, 0.0, 0.0], [1.0, 0.0, 0.0], [0.5, 0.49, 0.0]])
    out = soft_or(x, 0.01, kind="logsumexp")
    for row, got in zip(x.tolist(), out.tolist()):
        assert abs(got - _lse(row, 0.01)) < 1e-6
    assert abs(out[0].item() - 0.01 * math.log(3)) < 1e-7  # n zeros give T log n, not 0
    padding = torch.tensor([[False, True, True]] * 3)
    assert torch.allclose(soft_or(x, 0.01, padding, kind="logsumexp"), x[:, 0], atol=1e-6)
    with pytest.raises(ValueError, match="unknown soft_or 'max'"):
        soft_or(x, 0.01, kind="max")


@pytest.mark.parametrize("kind", SOFT_ORS)
def test_two_clause_program_by_hand_with_either_soft_or(tmp_path, kind):
    """grab_gem :- near(A,G), shiny(G).   flee :- near(A,G), not shiny(G).   (w = 0.95, T = 0.1)

    The states of test_logic.py, and a third where the agent stands on both gems and both shine
    fully: grab_gem's groundings are 0.95 and 0.95, whose logsumexp 0.95 + 0.1 log 2 = 1.0193
    exceeds 1, so that state's derived atoms (grab_gem, and flee = 0.1 log 2 from two zeros) are
    divided by 1.0193 -- per state: the other states' values are what they are alone."""
    w, t = 0.95, 0.1
    states = STATES + [[[0.3, 0.0], [0.3, 1.0], [0.3, 1.0]]]
    actor = LogicActor(toy_rule_set(tmp_path / "rs"), temperature=t, init_weight=w, soft_or=kind)
    state = toy_state(states)
    values, probs = actor.action_values(state), actor(state)
    for b, ((ax, _), (x1, s1), (x2, s2)) in enumerate(states):
        grab = _or(kind, [w * _near(ax, x1) * s1, w * _near(ax, x2) * s2], t)
        flee = _or(kind, [w * _near(ax, x1) * (1 - s1), w * _near(ax, x2) * (1 - s2)], t)
        grab, flee = _normalised(kind, [grab, flee])
        assert torch.allclose(values[b], torch.tensor([grab, flee]), atol=1e-6), b
        # env actions: stay has no rule (the constant false), grab and flee one atom each
        scores = _normalised(kind, [0.0, grab, flee])
        expected = _softmax([_logit(v) for v in scores])
        assert torch.allclose(probs[b], torch.tensor(expected), atol=1e-6), b
    if kind == "logsumexp":
        assert abs(values[2, 0].item() - 1.0) < 1e-6
        assert abs(values[2, 1].item() - 0.1 * math.log(2) / (0.95 + 0.1 * math.log(2))) < 1e-6
    alone = actor(state[:1])
    assert torch.allclose(alone, probs[:1], atol=1e-7)  # no dependence on the rest of the batch


# --------------------------------------------------------------------------------------------
# softmax clause weights

HELPER_FILES = {
    "preds.txt": "grab_any:0\ngrab_first:0\nstay:0\n",
    "helper_preds.txt": "lit:0\n",
    "clauses.txt": ("lit :- shiny(G).\n"
                    "grab_any :- lit.\n"
                    "grab_first :- near(A, gem1).\n"
                    "stay :- not lit.\n"),
}
"""Four clauses with four head predicates (m = 4, C = 4); two inference steps."""


@pytest.mark.parametrize("kind", SOFT_ORS)
def test_softmax_clause_weights_by_hand(tmp_path, kind):
    """The reference's weighting: W (m x C), each row softmax-normalised over the clauses; per
    head atom h, row j gives H_j(h) = sum_c softmax(W_j)_c * b_c(h), b_c(h) being the soft OR of
    clause c's body over its groundings; the atom is the soft OR over the rows. Computed here
    in plain Python for a helper, its negation and two steps, with a given W."""
    t = 0.1
    rule_set = toy_rule_set(tmp_path / "rs", HELPER_FILES)
    actor = LogicActor(rule_set, temperature=t, soft_or=kind, clause_weights="softmax")
    raw = actor.reasoner.raw_weights[0]
    assert raw.shape == (4, 4)
    w = [[0.3, -1.0, 2.0, 0.1], [1.5, 0.2, -0.4, 0.0], [-2.0, 1.0, 0.5, 0.7], [0.0, 0.0, 3.0, -1.0]]
    with torch.no_grad():
        raw.copy_(torch.tensor(w))
    sm = [_softmax(row) for row in w]  # sm[j][c]

    def atom(clause: int, body: float) -> float:  # one clause derives the atom: b_c(h) = body
        return _or(kind, [sm[j][clause] * body for j in range(4)], t)

    state = toy_state(STATES)
    values, probs = actor.action_values(state), actor(state)
    for b, ((ax, _), (x1, s1), (x2, s2)) in enumerate(STATES):
        def step(lit: float) -> list[float]:
            """One inference step from the previous value of lit: b_c per clause (each clause
            derives one atom), normalised together, then the atoms, normalised together."""
            bodies = _normalised(kind, [_or(kind, [s1, s2], t), lit, _near(ax, x1), 1 - lit])
            return _normalised(kind, [atom(c, body) for c, body in enumerate(bodies)])

        lit = step(0.0)[0]  # step 1: derived atoms still 0 (so not lit = 1)
        lit, grab_any, grab_first, stay = step(lit)
        assert torch.allclose(values[b], torch.tensor([grab_any, grab_first, stay]), atol=1e-6), b
        grab = _or(kind, [grab_any, grab_first], t)
        scores = _normalised(kind, [stay, grab, 0.0])  # env actions stay, grab, flee (no rule)
        expected = _softmax([_logit(v) for v in scores])
        assert torch.allclose(probs[b], torch.tensor(expected), atol=1e-6), b
    # the printed weight of clause c: the soft OR over rows of softmax(W_j)_c
    printed = [float(line.split()[0]) for line in actor.program_text().splitlines()]
    shown = _normalised(kind, [_or(kind, [sm[j][c] for j in range(4)], t) for c in range(4)])
    assert printed == [round(v, 3) for v in shown]


def test_softmax_weights_start_from_a_standard_normal_per_head_predicate(tmp_path):
    """m = the program's distinct head predicates (``grab_gem :-`` twice counts once)."""
    files = {"clauses.txt": ("grab_gem :- near(A, G), shiny(G).\n"
                             "grab_gem :- shiny(gem2).\n"
                             "flee :- near(A, G), not shiny(G).\n")}
    rule_set = toy_rule_set(tmp_path / "rs", files)
    torch.manual_seed(3)
    actor = LogicActor(rule_set, clause_weights="softmax")
    torch.manual_seed(3)
    assert torch.equal(actor.reasoner.raw_weights[0], torch.randn(2, 3))
    with pytest.raises(ValueError, match="unknown clause_weights 'relu'"):
        LogicActor(rule_set, clause_weights="relu")


def test_softmax_weights_of_a_head_with_two_clauses_by_hand(tmp_path):
    """Two clauses of one head: H_j(grab_gem) = sm_j0 * b_0 + sm_j1 * b_1 (a weighted sum inside a
    row, the soft OR across rows), b_0 the soft OR of clause 0 over its two groundings."""
    t = 0.1
    files = {"clauses.txt": ("grab_gem :- near(A, G), shiny(G).\n"
                             "grab_gem :- shiny(gem2).\n"
                             "flee :- near(A, G), not shiny(G).\n")}
    actor = LogicActor(toy_rule_set(tmp_path / "rs", files), temperature=t, clause_weights="softmax")
    w = [[0.5, -0.5, 1.0], [2.0, 0.0, -1.0]]
    with torch.no_grad():
        actor.reasoner.raw_weights[0].copy_(torch.tensor(w))
    sm = [_softmax(row) for row in w]
    values = actor.action_values(toy_state(STATES))
    for b, ((ax, _), (x1, s1), (x2, s2)) in enumerate(STATES):
        b0 = _boltzmann([_near(ax, x1) * s1, _near(ax, x2) * s2], t)
        b2 = _boltzmann([_near(ax, x1) * (1 - s1), _near(ax, x2) * (1 - s2)], t)
        grab = _boltzmann([sm[j][0] * b0 + sm[j][1] * s2 for j in range(2)], t)
        flee = _boltzmann([sm[j][2] * b2 for j in range(2)], t)
        assert torch.allclose(values[b], torch.tensor([grab, flee]), atol=1e-6), b


# --------------------------------------------------------------------------------------------
# the reduced action set


def test_rules_action_set_gives_zero_probability_outside_the_rules(tmp_path):
    """``action_set="rules"``: the env action ``stay`` has no rule, so it gets probability exactly
    0 and the softmax runs over grab and flee alone (values as in test_logic.py, w = 0.9, T = 0.1)."""
    rule_set = toy_rule_set(tmp_path / "rs")
    actor = LogicActor(rule_set, temperature=0.1, init_weight=0.9, action_set="rules")
    probs = actor(toy_state(STATES))
    for b, (grab, flee) in enumerate([(0.34849277531466993, 0.07831150843406727),
                                      (0.7194628592396375, 0.7194628592396375)]):
        expected = [0.0] + _softmax([_logit(grab), _logit(flee)])
        assert torch.allclose(probs[b], torch.tensor(expected), atol=1e-6)
        assert probs[b, 0].item() == 0.0
    full = LogicActor(rule_set, temperature=0.1, init_weight=0.9)
    assert (full(toy_state(STATES))[:, 0] > 0).all()
    with pytest.raises(ValueError, match="unknown action_set"):
        LogicActor(rule_set, action_set="some")


# --------------------------------------------------------------------------------------------
# the defect: no gradient at initialisation

BLENDER_FILES = {
    "helper_preds.txt": "bright:0\n",
    "blender_clauses.txt": ("bright :- shiny(G).\n"
                            "neural_agent :- bright.\n"
                            "logic_agent :- not bright.\n"),
}

BODY_ONE = [
    # agent on gem1 (shining) and gem2 (dull): grab_gem's and flee's bodies are exactly 1
    [[0.5, 0.0], [0.5, 1.0], [0.5, 0.0]],
    # nothing shines: bright = 0, so logic_agent's body (not bright) is exactly 1
    [[0.5, 0.0], [0.5, 0.0], [0.5, 0.0]],
    # gem1 shines: bright's and neural_agent's bodies are 1
    [[0.0, 0.0], [0.9, 1.0], [0.1, 0.0]],
]


def _clause_gradients(actor: LogicActor, states: torch.Tensor) -> list[torch.Tensor]:
    """d/d(weights) of the sum of the actor's logits and the blender's logits, each clamped to
    [0.01, 0.99] before the logit as the actor and the BlendRL agent do."""
    probs_logits = actor.action_logits(states)
    _, blend = actor.with_blend_values(states)
    blend_logits = torch.logit(blend.clamp(ACTION_EPS, 1 - ACTION_EPS))
    (probs_logits[:, 1:].sum() + blend_logits.sum()).backward()
    return [w.grad for w in actor.reasoner.raw_weights]


@pytest.mark.parametrize("kind", SOFT_ORS)
@pytest.mark.parametrize("weights", CLAUSE_WEIGHTS)
def test_every_clause_weight_has_a_gradient_at_initialisation(tmp_path, kind, weights):
    """On a batch where each clause's body is exactly 1 somewhere, every clause weight (actor and
    blender) gets a non-zero gradient from the default initialisation."""
    rule_set = toy_rule_set(tmp_path / "rs", BLENDER_FILES)
    torch.manual_seed(0)
    actor = LogicActor(rule_set, with_blender=True, soft_or=kind, clause_weights=weights)
    for grad in _clause_gradients(actor, toy_state(BODY_ONE)):
        assert grad is not None and torch.isfinite(grad).all()
        assert (grad != 0).all(), grad


def test_a_weight_of_0_99_had_no_gradient_where_its_body_is_1(tmp_path):
    """The defect the 0.98 default fixes: sigmoid(logit(0.99)) is 0.99000007 in float32, above the
    0.99 clamp, so a clause whose body is exactly 1 got a gradient of exactly 0 (here: logic_agent
    on the second state, the only state where it is not 0)."""
    rule_set = toy_rule_set(tmp_path / "rs", BLENDER_FILES)
    old = LogicActor(rule_set, with_blender=True, init_weight=0.99)
    assert torch.sigmoid(old.reasoner.raw_weights[1][0]).item() > 0.99
    _, blender_grad = _clause_gradients(old, toy_state(BODY_ONE[1:2]))
    assert blender_grad[2].item() == 0.0  # logic_agent :- not bright.
    new = LogicActor(rule_set, with_blender=True)
    _, blender_grad = _clause_gradients(new, toy_state(BODY_ONE[1:2]))
    assert blender_grad[2].item() != 0.0


def test_logic_blender_alone_takes_the_same_options(tmp_path):
    rule_set = toy_rule_set(tmp_path / "rs", BLENDER_FILES)
    torch.manual_seed(1)
    joint = LogicActor(rule_set, with_blender=True, soft_or="logsumexp", clause_weights="softmax")
    blender = LogicBlender(rule_set, soft_or="logsumexp", clause_weights="softmax")
    with torch.no_grad():
        blender.reasoner.raw_weights[0].copy_(joint.reasoner.raw_weights[1])
    state = toy_state(STATES + BODY_ONE)
    assert torch.allclose(joint.with_blend_values(state)[1], blender(state), atol=1e-6)
    assert joint.blender_program_text() == blender.program_text()
