"""Rule sets: loading a rule-set folder and validating it completely against an environment.

A rule-set folder holds (see docs/logic.md for the full format):

==========================  ===========  ==========================================================
file                        required     content
==========================  ===========  ==========================================================
``preds.txt``               yes          action predicates ``name:arity:types`` (heads of the actor)
``neural_preds.txt``        yes          valuation predicates ``name:arity:types``; one valuation
                                         function each, registered in the env's ``VALUATIONS``
``helper_preds.txt``        no           helper predicates: defined by clauses, used in bodies
``consts.txt``              no           ``type:object1,object2`` constants; a type not listed here
                                         has every object slot of that type in the env's SPEC
``clauses.txt``             yes          the actor's clauses (heads: action or helper predicates)
``blender_clauses.txt``     no           the blender's clauses (heads: ``neural_agent``,
                                         ``logic_agent`` or helper predicates)
==========================  ===========  ==========================================================

Naming rule of action predicates: the part of the name before its first ``_`` (the whole name if
it has none) must be one of the env's action names; ``up_to_diver`` -> ``up``, ``right`` -> ``right``.

Everything is checked when the rule set is built, each error naming file and line.
"""

from __future__ import annotations

import inspect
import re
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Callable, Mapping, Protocol, Sequence

import torch

from blendrl.logic.syntax import (Clause, ConstantDecl, PredicateDecl, RuleSetError, Source,
                                  parse_clauses, parse_constants, parse_predicates)

class EnvSpec(Protocol):
    """What the logic package needs to know of an environment (``blendrl.envs.base.EnvSpec`` has
    it; the logic package imports no environment): the object slots of the logic state and their
    types, the feature columns of an object row (and which says a slot is filled), the actions."""

    name: str
    objects: Sequence[str]
    object_types: Sequence[str]
    features: Sequence[str]
    action_names: Sequence[str]
    presence_feature: str | None

    @property
    def logic_shape(self) -> tuple[int, int]: ...

    @property
    def n_actions(self) -> int: ...

    def feature_index(self, feature: str) -> int: ...


_ACTION_PREDS_FILE = "preds.txt"
_VALUATION_PREDS_FILE = "neural_preds.txt"
_HELPER_PREDS_FILE = "helper_preds.txt"
_CONSTS_FILE = "consts.txt"
_ACTOR_CLAUSES_FILE = "clauses.txt"
_BLENDER_CLAUSES_FILE = "blender_clauses.txt"

BLENDER_HEADS: tuple[str, str] = ("neural_agent", "logic_agent")
"""The blender's two head predicates (arity 0, built in): soft truth of "let the neural actor act"
and "let the logic actor act"."""

_RULE_SET_NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_\-]*\Z")

ValuationFn = Callable[..., torch.Tensor]


_SEES_ABSENT = "_blendrl_sees_absent_objects"


def sees_absent_objects(fn: ValuationFn) -> ValuationFn:
    """Mark a valuation function as reading absent objects itself: its atoms are not multiplied by
    the presence flags of their objects, and an empty slot reaches it as its (all-zero) row. For
    objects whose absence means something, e.g. Seaquest's oxygen bar, which OCAtari drops when the
    tank is empty. Returns ``fn``."""
    setattr(fn, _SEES_ABSENT, True)
    return fn


def sees_absent_objects_of(fn: ValuationFn) -> bool:
    """Whether ``fn`` is marked with :func:`sees_absent_objects`."""
    return bool(getattr(fn, _SEES_ABSENT, False))


def action_of_predicate(name: str) -> str:
    """The env action an action predicate stands for: its name up to the first ``_``."""
    return name.split("_", 1)[0]


@dataclass(frozen=True)
class RuleSet:
    """A validated rule set of one environment (built by :func:`build_rule_set`; an
    environment's own by :func:`blendrl.envs.load_rule_set`)."""

    name: str
    """The rule-set folder's name (``default``, ``no_left``, ...)."""
    folder: Path
    spec: EnvSpec
    actions: tuple[PredicateDecl, ...]
    """The action predicates, in declaration order."""
    action_ids: tuple[int, ...]
    """The env action of each action predicate (by :func:`action_of_predicate`)."""
    helpers: tuple[PredicateDecl, ...]
    valuations: tuple[PredicateDecl, ...]
    constants: Mapping[str, tuple[str, ...]]
    """Object type -> its constants (object slot names)."""
    valuation_fns: Mapping[str, ValuationFn]
    """Valuation predicate name -> its function."""
    actor_clauses: tuple[Clause, ...]
    blender_clauses: tuple[Clause, ...]
    """Empty when the folder has no ``blender_clauses.txt``."""
    declarations: Mapping[str, PredicateDecl]
    """Every predicate by name (the built-in blender heads included)."""
    kinds: Mapping[str, str]
    """Every predicate's kind: ``action``, ``valuation``, ``helper`` or ``blender``."""

    def slot_index(self, obj: str) -> int:
        """Row of object slot ``obj`` in the logic state."""
        return self.spec.objects.index(obj)

    @property
    def has_blender(self) -> bool:
        return bool(self.blender_clauses)


# ---------------------------------------------------------------------------------------------
# locating and reading


def rule_set_folder(env_dir: Path, rules: str) -> Path:
    """The folder of rule set ``rules``: a name under ``env_dir/rules`` or a path to a folder.

    ``rules`` is a *name* when it consists of letters, digits, ``_`` and ``-`` only; anything else
    (it contains a ``/``, starts with ``.``, ...) is a path.
    """
    if _RULE_SET_NAME_RE.match(rules):
        folder = env_dir / "rules" / rules
        if not folder.is_dir():
            available = sorted(p.name for p in (env_dir / "rules").iterdir() if p.is_dir()) \
                if (env_dir / "rules").is_dir() else []
            raise RuleSetError(f"no rule set named {rules!r} for this environment; available: "
                               f"{', '.join(available) or 'none'} (or give a path to a folder)",
                               env_dir / "rules")
        return folder
    folder = Path(rules)
    if not folder.is_dir():
        raise RuleSetError(f"rule-set folder {rules!r} does not exist", rules)
    return folder


def _read(folder: Path, name: str, required: bool) -> tuple[str, str] | None:
    path = folder / name
    if not path.is_file():
        if required:
            raise RuleSetError(f"missing required file {name!r} in rule-set folder", folder)
        return None
    return path.read_text(encoding="utf-8"), str(path)


def build_rule_set(folder: Path | str, spec: EnvSpec, valuations: Mapping[str, ValuationFn]) -> RuleSet:
    """Parse the files of ``folder`` and validate them against ``spec`` and ``valuations``."""
    folder = Path(folder)
    if not folder.is_dir():
        raise RuleSetError("rule-set folder does not exist", folder)
    texts = {name: _read(folder, name, required)
             for name, required in ((_ACTION_PREDS_FILE, True), (_VALUATION_PREDS_FILE, True),
                                    (_HELPER_PREDS_FILE, False), (_CONSTS_FILE, False),
                                    (_ACTOR_CLAUSES_FILE, True), (_BLENDER_CLAUSES_FILE, False))}

    def preds(name: str) -> list[PredicateDecl]:
        entry = texts[name]
        return parse_predicates(entry[0], entry[1]) if entry else []

    def clauses(name: str) -> list[Clause]:
        entry = texts[name]
        return parse_clauses(entry[0], entry[1]) if entry else []

    actions, valuation_decls, helpers = preds(_ACTION_PREDS_FILE), preds(_VALUATION_PREDS_FILE), \
        preds(_HELPER_PREDS_FILE)
    consts = parse_constants(*texts[_CONSTS_FILE]) if texts[_CONSTS_FILE] else []
    actor_clauses, blender_clauses = clauses(_ACTOR_CLAUSES_FILE), clauses(_BLENDER_CLAUSES_FILE)

    decls, kinds = _check_declarations(actions, valuation_decls, helpers)
    action_ids = _check_actions(actions, spec, folder / _ACTION_PREDS_FILE)
    constants = _constants(spec, consts)
    _check_valuations(valuation_decls, valuations, spec)
    _check_program(actor_clauses, decls, kinds, constants, ("action", "helper"), "actor")
    has_blender_file = texts[_BLENDER_CLAUSES_FILE] is not None
    if has_blender_file:
        _check_program(blender_clauses, decls, kinds, constants, ("blender", "helper"), "blender")
    for decl in actions:
        if not any(c.head.predicate == decl.name for c in actor_clauses):
            raise RuleSetError(f"action predicate {decl.name!r} has no clause in {_ACTOR_CLAUSES_FILE} "
                               "(it would always be false)", decl.source)
    if has_blender_file:
        for head in BLENDER_HEADS:
            if not any(c.head.predicate == head for c in blender_clauses):
                raise RuleSetError(f"blender head {head!r} has no clause (it would always be false)",
                                   folder / _BLENDER_CLAUSES_FILE)
    for decl in helpers:
        if not any(c.head.predicate == decl.name for c in (*actor_clauses, *blender_clauses)):
            raise RuleSetError(f"helper predicate {decl.name!r} is defined by no clause", decl.source)
    return RuleSet(
        name=folder.name, folder=folder, spec=spec, actions=tuple(actions), action_ids=action_ids,
        helpers=tuple(helpers), valuations=tuple(valuation_decls),
        constants=MappingProxyType(constants),
        valuation_fns=MappingProxyType({d.name: valuations[d.name] for d in valuation_decls}),
        actor_clauses=tuple(actor_clauses), blender_clauses=tuple(blender_clauses),
        declarations=MappingProxyType(decls), kinds=MappingProxyType(kinds))


# ---------------------------------------------------------------------------------------------
# validation


def _check_declarations(actions: Sequence[PredicateDecl], valuations: Sequence[PredicateDecl],
                        helpers: Sequence[PredicateDecl]
                        ) -> tuple[dict[str, PredicateDecl], dict[str, str]]:
    """Name -> declaration and name -> kind (``action``/``valuation``/``helper``/``blender``)."""
    decls: dict[str, PredicateDecl] = {}
    kinds: dict[str, str] = {}
    for kind, group in (("action", actions), ("valuation", valuations), ("helper", helpers)):
        for decl in group:
            if decl.name in BLENDER_HEADS:
                raise RuleSetError(f"{decl.name!r} is a built-in blender head and cannot be declared",
                                   decl.source)
            if decl.name in decls:
                raise RuleSetError(f"predicate {decl.name!r} is declared twice (first at "
                                   f"{decls[decl.name].source})", decl.source)
            decls[decl.name] = decl
            kinds[decl.name] = kind
    for head in BLENDER_HEADS:
        decls[head] = PredicateDecl(head, (), Source("<built-in>", 0))
        kinds[head] = "blender"
    return decls, kinds


def _check_actions(actions: Sequence[PredicateDecl], spec: EnvSpec, path: Path) -> tuple[int, ...]:
    if not actions:
        raise RuleSetError("no action predicate declared (the logic actor needs at least one)", path)
    ids = []
    for decl in actions:
        action = action_of_predicate(decl.name)
        if action not in spec.action_names:
            raise RuleSetError(
                f"action predicate {decl.name!r} maps to no action of {spec.name}: its prefix "
                f"{action!r} (the name up to the first '_') must be one of "
                f"{', '.join(spec.action_names)}", decl.source)
        ids.append(spec.action_names.index(action))
    return tuple(ids)


def _constants(spec: EnvSpec, consts: Sequence[ConstantDecl]) -> dict[str, tuple[str, ...]]:
    """Type -> constants: every slot by its SPEC type, overridden / extended by ``consts.txt``."""
    constants: dict[str, list[str]] = {}
    for obj, object_type in zip(spec.objects, spec.object_types):
        constants.setdefault(object_type, []).append(obj)
    seen: dict[str, Source] = {}
    for decl in consts:
        if decl.type in seen:
            raise RuleSetError(f"the constants of type {decl.type!r} are declared twice (first at "
                               f"{seen[decl.type]})", decl.source)
        seen[decl.type] = decl.source
        for obj in decl.objects:
            if obj not in spec.objects:
                raise RuleSetError(f"constant {obj!r} of type {decl.type!r} is not an object slot of "
                                   f"{spec.name}; slots: {', '.join(spec.objects)}", decl.source)
        constants[decl.type] = list(decl.objects)
    return {t: tuple(objs) for t, objs in constants.items()}


def _definition_source(fn: Callable) -> Source | str:
    """Where a function is defined (file and line), for error messages; its module if unknown."""
    try:
        path = inspect.getsourcefile(fn)
        line = inspect.getsourcelines(fn)[1]
    except (OSError, TypeError):
        path = None
    if path is None:
        return getattr(fn, "__module__", None) or "<unknown module>"
    return Source(path, line)


def _positional_arity(fn: Callable) -> int | None:
    """How many positional arguments ``fn`` takes, or None if it takes ``*args``/is opaque."""
    try:
        params = inspect.signature(fn).parameters.values()
    except (TypeError, ValueError):
        return None
    if any(p.kind is inspect.Parameter.VAR_POSITIONAL for p in params):
        return None
    return sum(p.kind in (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
               and p.default is inspect.Parameter.empty for p in params)


def _check_valuations(decls: Sequence[PredicateDecl], valuations: Mapping[str, ValuationFn],
                      spec: EnvSpec) -> None:
    declared = {d.name for d in decls}
    for decl in decls:
        fn = valuations.get(decl.name)
        if fn is None:
            raise RuleSetError(f"valuation predicate {decl.name!r} has no valuation function in the "
                               f"VALUATIONS of {spec.name}", decl.source)
        arity = _positional_arity(fn)
        if arity is not None and arity != decl.arity:
            raise RuleSetError(f"valuation function {decl.name!r} ({_definition_source(fn)}) takes "
                               f"{arity} object argument(s) but the predicate has arity {decl.arity}",
                               decl.source)
        _probe_valuation(decl, fn, spec)
    for name, fn in valuations.items():
        if name not in declared:
            raise RuleSetError(f"valuation function {name!r} is registered in VALUATIONS but declared "
                               f"for no predicate of {_VALUATION_PREDS_FILE}", _definition_source(fn))


def _probe_valuation(decl: PredicateDecl, fn: ValuationFn, spec: EnvSpec) -> None:
    """Call ``fn`` on a zero state ``[2, 3, F]`` per argument; it must give ``[2, 3]`` in [0, 1]."""
    rows = torch.zeros(2, 3, len(spec.features))
    try:
        out = fn(*([rows] * decl.arity))
    except Exception as exc:  # noqa: BLE001 - any failure is reported with its origin
        raise RuleSetError(f"valuation function {decl.name!r} ({_definition_source(fn)}) fails on "
                           f"object rows of shape [2, 3, {len(spec.features)}]: {exc!r}",
                           decl.source) from exc
    if not isinstance(out, torch.Tensor) or tuple(out.shape) != (2, 3):
        shape = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
        raise RuleSetError(f"valuation function {decl.name!r} ({_definition_source(fn)}) must map "
                           f"rows [..., F] to truth values [...]; got {shape} for input [2, 3, F]",
                           decl.source)
    if not bool(torch.all((out >= 0) & (out <= 1))):
        raise RuleSetError(f"valuation function {decl.name!r} ({_definition_source(fn)}) returned a "
                           f"value outside [0, 1] on an all-zero state", decl.source)


_BODY_KINDS = ("valuation", "helper")
"""Kinds of predicates a clause body may use."""


def _check_program(clauses: Sequence[Clause], decls: Mapping[str, PredicateDecl],
                   kinds: Mapping[str, str], constants: Mapping[str, tuple[str, ...]],
                   head_kinds: tuple[str, ...], role: str) -> None:
    """Predicates, arities, heads and types of one clause file; its helpers defined in it; no recursion."""
    defined = {c.head.predicate for c in clauses}
    for clause in clauses:
        _check_clause(clause, decls, kinds, constants, head_kinds, role)
        for literal in clause.body:
            if kinds[literal.predicate] == "helper" and literal.predicate not in defined:
                raise RuleSetError(f"helper predicate {literal.predicate!r} is defined by no clause of "
                                   "this file (each clause file defines the helpers it uses)",
                                   clause.source)
    _check_acyclic(clauses)


def _check_clause(clause: Clause, decls: Mapping[str, PredicateDecl], kinds: Mapping[str, str],
                  constants: Mapping[str, tuple[str, ...]], head_kinds: tuple[str, ...],
                  role: str) -> None:
    head = clause.head.predicate
    if head not in decls:
        raise RuleSetError(f"unknown predicate {head!r} in the head", clause.source)
    if kinds[head] not in head_kinds:
        article = "an" if role == "actor" else "a"
        raise RuleSetError(f"{kinds[head]} predicate {head!r} cannot be the head of {article} {role} clause "
                           f"(heads here: {' or '.join(head_kinds)} predicates)", clause.source)
    for literal in clause.body:
        name = literal.predicate
        if name not in decls:
            raise RuleSetError(f"unknown predicate {name!r}", clause.source)
        if kinds[name] not in _BODY_KINDS:
            raise RuleSetError(f"{kinds[name]} predicate {name!r} cannot appear in a clause body "
                               "(bodies use valuation and helper predicates)", clause.source)
    variable_types: dict[str, str] = {}
    for literal in (clause.head, *clause.body):
        decl = decls[literal.predicate]
        if literal.arity != decl.arity:
            raise RuleSetError(f"{literal.predicate!r} has arity {decl.arity} (declared "
                               f"{decl}) but is used with {literal.arity} argument(s): {literal}",
                               clause.source)
        for term, object_type in zip(literal.args, decl.types):
            if term.is_variable:
                known = variable_types.setdefault(term.name, object_type)
                if known != object_type:
                    raise RuleSetError(f"variable {term.name} is used with type {known!r} and with type "
                                       f"{object_type!r} (in {literal})", clause.source)
                if not constants.get(object_type):
                    raise RuleSetError(f"variable {term.name} has type {object_type!r}, which has no "
                                       f"constant (types with constants: {', '.join(sorted(constants))})",
                                       clause.source)
            elif term.name not in constants.get(object_type, ()):
                raise RuleSetError(f"constant {term.name!r} in {literal} is not a constant of type "
                                   f"{object_type!r} (its constants: "
                                   f"{', '.join(constants.get(object_type, ())) or 'none'})",
                                   clause.source)


def _check_acyclic(clauses: Sequence[Clause]) -> None:
    """Helper predicates may not depend on themselves (no recursion)."""
    uses: dict[str, set[str]] = {}
    first: dict[str, Clause] = {}
    heads = {c.head.predicate for c in clauses}
    for clause in clauses:
        uses.setdefault(clause.head.predicate, set()).update(
            lit.predicate for lit in clause.body if lit.predicate in heads)
        first.setdefault(clause.head.predicate, clause)
    state: dict[str, int] = {}  # 1 = on the stack, 2 = done

    def visit(name: str, path: list[str]) -> None:
        state[name] = 1
        for dep in sorted(uses.get(name, ())):
            if state.get(dep) == 1:
                cycle = path[path.index(dep):] + [dep] if dep in path else [name, dep]
                raise RuleSetError(f"recursive definition {' -> '.join(cycle)} (rules may not be "
                                   "recursive)", first[dep].source)
            if state.get(dep) is None:
                visit(dep, path + [dep])
        state[name] = 2

    for name in sorted(uses):
        if state.get(name) is None:
            visit(name, [name])


def predicate_depths(clauses: Sequence[Clause]) -> dict[str, int]:
    """Inference steps a head predicate needs: 1 + the largest depth of the heads in its bodies."""
    heads = {c.head.predicate for c in clauses}
    by_head: dict[str, list[Clause]] = {}
    for clause in clauses:
        by_head.setdefault(clause.head.predicate, []).append(clause)
    depths: dict[str, int] = {}

    def depth(name: str) -> int:
        if name not in depths:
            deps = [lit.predicate for c in by_head[name] for lit in c.body if lit.predicate in heads]
            depths[name] = 1 + max((depth(d) for d in deps), default=0)
        return depths[name]

    for name in by_head:
        depth(name)
    return depths


__all__ = ["RuleSet", "RuleSetError", "build_rule_set", "rule_set_folder",
           "action_of_predicate", "predicate_depths", "BLENDER_HEADS", "sees_absent_objects",
           "sees_absent_objects_of"]
