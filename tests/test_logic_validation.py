"""Building a rule set validates it completely: every error names file and line (or the function)."""

from __future__ import annotations

import re
import tempfile
from pathlib import Path

import pytest

from blendrl.logic import RuleSetError
from test_logic import near, shiny, toy_rule_set


def _error(tmp_path, files=None, valuations=None) -> RuleSetError:
    """The error of building the base rule set changed by ``files`` (in a fresh folder)."""
    folder = Path(tempfile.mkdtemp(dir=tmp_path)) / "rs"
    with pytest.raises(RuleSetError) as info:
        toy_rule_set(folder, files, valuations)
    return info.value


def _at(err: RuleSetError, name: str, line: int) -> None:
    """The message starts with ``.../name:line:``."""
    assert err.path is not None and err.path.endswith(name) and err.line == line, str(err)
    assert re.match(rf".*{re.escape(name)}:{line}: ", str(err)), str(err)


def test_the_base_rule_set_is_valid(tmp_path):
    rule_set = toy_rule_set(tmp_path / "rs")
    assert [a.name for a in rule_set.actions] == ["grab_gem", "flee"]
    assert rule_set.action_ids == (1, 2)


def test_unknown_predicate(tmp_path):
    err = _error(tmp_path, {"clauses.txt": "grab_gem :- near(A, G), shiny(G).\n"
                                           "flee :- near(A, G), glitter(G).\n"})
    _at(err, "clauses.txt", 2)
    assert "unknown predicate 'glitter'" in str(err)
    err = _error(tmp_path, {"clauses.txt": "grab_gem :- shiny(G).\nflee :- shiny(G).\nrun :- shiny(G).\n"})
    _at(err, "clauses.txt", 3)
    assert "unknown predicate 'run' in the head" in str(err)


def test_wrong_arity(tmp_path):
    err = _error(tmp_path, {"clauses.txt": "grab_gem :- shiny(A, G).\nflee :- shiny(G).\n"})
    _at(err, "clauses.txt", 1)
    assert "'shiny' has arity 1" in str(err) and "2 argument(s)" in str(err)
    err = _error(tmp_path, {"clauses.txt": "grab_gem(X) :- shiny(X).\nflee :- shiny(G).\n"})
    _at(err, "clauses.txt", 1)
    assert "'grab_gem' has arity 0" in str(err)


def test_variable_whose_type_has_no_constant(tmp_path):
    files = {"neural_preds.txt": "shiny:1:gem\nnear:2:agent,gem\nsparkly:1:diamond\n",
             "clauses.txt": "grab_gem :- near(A, G), shiny(G).\nflee :- sparkly(D).\n"}
    valuations = {"shiny": shiny, "near": near, "sparkly": shiny}
    err = _error(tmp_path, files, valuations)
    _at(err, "clauses.txt", 2)
    assert "variable D has type 'diamond', which has no constant" in str(err)


def test_variable_used_with_two_types_and_constant_of_a_wrong_type(tmp_path):
    err = _error(tmp_path, {"clauses.txt": "grab_gem :- near(A, G), shiny(A).\nflee :- shiny(G).\n"})
    _at(err, "clauses.txt", 1)
    assert "variable A is used with type 'agent' and with type 'gem'" in str(err)
    err = _error(tmp_path, {"clauses.txt": "grab_gem :- shiny(agent).\nflee :- shiny(G).\n"})
    _at(err, "clauses.txt", 1)
    assert "constant 'agent' in shiny(agent) is not a constant of type 'gem'" in str(err)


def test_valuation_function_missing_for_a_declared_predicate(tmp_path):
    err = _error(tmp_path, valuations={"near": near})
    _at(err, "neural_preds.txt", 1)
    assert "valuation predicate 'shiny' has no valuation function" in str(err)


def test_valuation_function_registered_for_no_predicate(tmp_path):
    def dazzling(gem):
        return gem[..., 1]

    err = _error(tmp_path, valuations={"shiny": shiny, "near": near, "dazzling": dazzling})
    assert "'dazzling' is registered in VALUATIONS but declared for no predicate" in str(err)
    # the error points at the function's definition
    _at(err, "test_logic_validation.py", dazzling.__code__.co_firstlineno)


def test_valuation_function_with_the_wrong_signature_or_output(tmp_path):
    err = _error(tmp_path, valuations={"shiny": near, "near": near})
    _at(err, "neural_preds.txt", 1)
    assert "takes 2 object argument(s) but the predicate has arity 1" in str(err)
    err = _error(tmp_path, valuations={"shiny": lambda g: g, "near": near})
    _at(err, "neural_preds.txt", 1)
    assert "must map rows [..., F] to truth values [...]; got (2, 3, 2)" in str(err)
    err = _error(tmp_path, valuations={"shiny": lambda g: g[..., 1] - 1.0, "near": near})
    assert "outside [0, 1]" in str(err)


def test_action_predicate_that_maps_to_no_env_action(tmp_path):
    err = _error(tmp_path, {"preds.txt": "grab_gem:0\njump_high:0\n",
                            "clauses.txt": "grab_gem :- shiny(G).\njump_high :- shiny(G).\n"})
    _at(err, "preds.txt", 2)
    assert "'jump_high' maps to no action of toy: its prefix 'jump'" in str(err)
    assert "stay, grab, flee" in str(err)


def test_action_predicate_without_a_clause_would_be_always_false(tmp_path):
    err = _error(tmp_path, {"clauses.txt": "grab_gem :- shiny(G).\n"})
    _at(err, "preds.txt", 2)
    assert "'flee' has no clause" in str(err)


def test_blender_heads_and_helpers_must_be_defined(tmp_path):
    err = _error(tmp_path, {"blender_clauses.txt": "neural_agent :- shiny(G).\n"})
    assert "blender head 'logic_agent' has no clause" in str(err)
    err = _error(tmp_path, {"helper_preds.txt": "lit:0\n",
                            "blender_clauses.txt": "neural_agent :- lit.\nlogic_agent :- not lit.\n"})
    _at(err, "blender_clauses.txt", 1)
    assert "helper predicate 'lit' is defined by no clause of this file" in str(err)
    err = _error(tmp_path, {"helper_preds.txt": "\n\nlit:0\n"})
    _at(err, "helper_preds.txt", 3)
    assert "'lit' is defined by no clause" in str(err)


def test_heads_and_bodies_by_kind(tmp_path):
    err = _error(tmp_path, {"clauses.txt": "grab_gem :- shiny(G).\nflee :- grab_gem.\n"})
    _at(err, "clauses.txt", 2)
    assert "action predicate 'grab_gem' cannot appear in a clause body" in str(err)
    err = _error(tmp_path, {"clauses.txt": "grab_gem :- shiny(G).\nflee :- shiny(G).\nshiny(G) :- near(A, G).\n"})
    _at(err, "clauses.txt", 3)
    assert "valuation predicate 'shiny' cannot be the head of an actor clause" in str(err)
    err = _error(tmp_path, {"blender_clauses.txt": "neural_agent :- shiny(G).\nflee :- shiny(G).\n"})
    _at(err, "blender_clauses.txt", 2)
    assert "action predicate 'flee' cannot be the head of a blender clause" in str(err)


def test_recursion_is_rejected(tmp_path):
    err = _error(tmp_path, {"helper_preds.txt": "a:0\nb:0\n",
                            "clauses.txt": ("grab_gem :- a.\nflee :- shiny(G).\n"
                                            "a :- b.\nb :- a, shiny(G).\n")})
    assert "recursive definition" in str(err) and "rules may not be recursive" in str(err)
    assert err.path.endswith("clauses.txt") and err.line in (3, 4)


def test_declarations_and_constants(tmp_path):
    err = _error(tmp_path, {"preds.txt": "grab_gem:0\nflee:0\ngrab_gem:0\n"})
    _at(err, "preds.txt", 3)
    assert "declared twice (first at" in str(err)
    err = _error(tmp_path, {"preds.txt": "grab_gem:0\nneural_agent:0\n"})
    _at(err, "preds.txt", 2)
    assert "built-in blender head" in str(err)
    err = _error(tmp_path, {"consts.txt": "gem: gem1, ruby\n"})
    _at(err, "consts.txt", 1)
    assert "constant 'ruby' of type 'gem' is not an object slot of toy" in str(err)
    err = _error(tmp_path, {"preds.txt": "# none\n", "clauses.txt": "\n"})
    assert "no action predicate declared" in str(err)


@pytest.mark.parametrize("name,text,line,message", [
    ("preds.txt", "grab_gem:0\nflee\n", 2, "expected a declaration 'name:arity:type1,type2'"),
    ("preds.txt", "grab_gem:0\nflee:x\n", 2, "arity of 'flee' must be a non-negative integer"),
    ("preds.txt", "grab_gem:0\nflee:1\n", 2, "declared with arity 1 but 0 argument type(s)"),
    ("preds.txt", "grab_gem:0\nFlee:0\n", 2, "bad predicate name 'Flee'"),
    ("neural_preds.txt", "shiny:1:Gem\nnear:2:agent,gem\n", 1, "bad type name 'Gem'"),
    ("consts.txt", "gem gem1\n", 1, "expected 'type:object1,object2'"),
    ("consts.txt", "gem: gem1, gem1\n", 1, "lists an object twice"),
    ("clauses.txt", "grab_gem :- shiny(G)\nflee :- shiny(G).\n", 2, "expected ',' or '.'"),
    ("clauses.txt", "grab_gem :- shiny(G).\nflee :- shiny(G) ; near(A, G).\n", 2, "unexpected character ';'"),
    ("clauses.txt", "grab_gem :- shiny(G).\n\nnot flee :- shiny(G).\n", 3, "a clause head cannot be negated"),
    ("clauses.txt", "grab_gem :- shiny(G.\nflee :- shiny(G).\n", 1, "expected ',' or ')'"),
    ("clauses.txt", "grab_gem :- Shiny(G).\nflee :- shiny(G).\n", 1, "expected a predicate name"),
    ("clauses.txt", "grab_gem :- shiny(G).\nflee :- shiny(G),\n", 2, "found the end of the file"),
])
def test_syntax_errors_name_file_and_line(tmp_path, name, text, line, message):
    err = _error(tmp_path, {name: text})
    _at(err, name, line)
    assert message in str(err)


def test_missing_required_file(tmp_path):
    err = _error(tmp_path, {"clauses.txt": None})
    assert "missing required file 'clauses.txt'" in str(err)
