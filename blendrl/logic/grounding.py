"""Grounding: a program (the clauses of one clause file) -> index tensors for the batched reasoner.

Every variable of a clause ranges over the constants of its type; each combination of constants is
a *grounding* of the clause. The ground atoms are numbered in one table (the valuation vector ``V``):

====================  =========================================================================
index                 atom
====================  =========================================================================
0, 1                  the constants false (0) and true (1) (padding of bodies / head lists)
2 ..                  valuation atoms (computed by the valuation functions), grouped by predicate
then                  derived atoms (heads of the clauses), in order of first appearance
====================  =========================================================================

A body literal is an index into ``V``; a negated one an index into ``1 - V`` (offset ``n_atoms``).
Only the valuation atoms that some grounding uses are computed.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Sequence

import torch

from blendrl.logic.ruleset import RuleSet, ValuationFn, predicate_depths
from blendrl.logic.syntax import Clause, RuleSetError

FALSE_INDEX = 0
TRUE_INDEX = 1
N_CONSTANT_ATOMS = 2

GroundAtom = tuple[str, tuple[str, ...]]
"""(predicate, object slot names)."""


@dataclass(frozen=True)
class ValuationCall:
    """One call of a valuation function for all its ground atoms at once."""

    predicate: str
    fn: ValuationFn
    arg_slots: tuple[tuple[int, ...], ...]
    """Per argument position, the object slot of each ground atom (all of equal length G)."""


@dataclass(frozen=True)
class GroundProgram:
    """The grounded clauses of one program, as plain index lists (turned into tensors by the reasoner)."""

    clauses: tuple[Clause, ...]
    atoms: tuple[GroundAtom, ...]
    """Every atom of ``V`` from index :data:`N_CONSTANT_ATOMS` on (valuation atoms, then derived)."""
    valuation_calls: tuple[ValuationCall, ...]
    n_valuation_atoms: int
    body_index: tuple[tuple[int, ...], ...]
    """Per grounding, its body literals as indices into ``cat(V, 1 - V)``, padded with TRUE."""
    clause_of_grounding: tuple[int, ...]
    head_groundings: tuple[tuple[int, ...], ...]
    """Per derived atom, the groundings that derive it."""
    depth: int
    """Inference steps after which every derived atom has its final value."""

    @property
    def n_atoms(self) -> int:
        return N_CONSTANT_ATOMS + len(self.atoms)

    @property
    def n_derived(self) -> int:
        return len(self.atoms) - self.n_valuation_atoms

    @property
    def has_negation(self) -> bool:
        return any(lit.negated for c in self.clauses for lit in c.body)

    def index_of(self, atom: GroundAtom) -> int:
        """Index of a ground atom in ``V``."""
        return N_CONSTANT_ATOMS + self.atoms.index(atom)

    def atoms_of(self, predicate: str) -> list[int]:
        """Indices in ``V`` of every ground atom of ``predicate``."""
        return [N_CONSTANT_ATOMS + i for i, (p, _) in enumerate(self.atoms) if p == predicate]


def _groundings(clause: Clause, rule_set: RuleSet) -> list[dict[str, str]]:
    """Every binding of the clause's variables to constants of their types."""
    types: dict[str, str] = {}
    for literal in (clause.head, *clause.body):
        decl = rule_set.declarations[literal.predicate]
        for term, object_type in zip(literal.args, decl.types):
            if term.is_variable:
                types.setdefault(term.name, object_type)
    variables = clause.variables()
    domains = [rule_set.constants[types[v]] for v in variables]
    return [dict(zip(variables, combo)) for combo in itertools.product(*domains)]


def _ground(literal, binding: dict[str, str]) -> GroundAtom:
    return literal.predicate, tuple(binding[t.name] if t.is_variable else t.name for t in literal.args)


def ground_program(rule_set: RuleSet, clauses: Sequence[Clause]) -> GroundProgram:
    """Ground ``clauses`` (one clause file of ``rule_set``) into a :class:`GroundProgram`."""
    if not clauses:
        raise RuleSetError("a program needs at least one clause", rule_set.folder)
    grounded: list[tuple[int, GroundAtom, list[tuple[GroundAtom, bool]]]] = []
    derived: dict[GroundAtom, None] = {}
    used_valuation: dict[str, dict[tuple[str, ...], None]] = {}
    for clause_id, clause in enumerate(clauses):
        for binding in _groundings(clause, rule_set):
            head = _ground(clause.head, binding)
            body = [(_ground(lit, binding), lit.negated) for lit in clause.body]
            derived.setdefault(head, None)
            for (predicate, args), _ in body:
                if rule_set.kinds[predicate] == "valuation":
                    used_valuation.setdefault(predicate, {}).setdefault(args, None)
            grounded.append((clause_id, head, body))

    atoms: list[GroundAtom] = []
    calls: list[ValuationCall] = []
    for decl in rule_set.valuations:  # declaration order, so that the layout is deterministic
        args_list = list(used_valuation.get(decl.name, {}))
        if not args_list:
            continue
        atoms.extend((decl.name, args) for args in args_list)
        slots = tuple(tuple(rule_set.slot_index(args[k]) for args in args_list) for k in range(decl.arity))
        calls.append(ValuationCall(decl.name, rule_set.valuation_fns[decl.name], slots))
    n_valuation = len(atoms)
    atoms.extend(derived)
    index = {atom: N_CONSTANT_ATOMS + i for i, atom in enumerate(atoms)}
    n_atoms = N_CONSTANT_ATOMS + len(atoms)

    width = max((len(body) for _, _, body in grounded), default=0)
    body_index: list[tuple[int, ...]] = []
    head_groundings: dict[GroundAtom, list[int]] = {atom: [] for atom in derived}
    for g, (clause_id, head, body) in enumerate(grounded):
        row = []
        for atom, negated in body:
            if atom not in index:
                raise RuleSetError(f"body atom {atom[0]}({','.join(atom[1])}) is derived by no clause "
                                   "of this file (it would always be false)", clauses[clause_id].source)
            row.append(index[atom] + (n_atoms if negated else 0))
        row.extend([TRUE_INDEX] * (width - len(row)))
        body_index.append(tuple(row))
        head_groundings[head].append(g)
    depths = predicate_depths(clauses)
    return GroundProgram(
        clauses=tuple(clauses), atoms=tuple(atoms), valuation_calls=tuple(calls),
        n_valuation_atoms=n_valuation, body_index=tuple(body_index),
        clause_of_grounding=tuple(c for c, _, _ in grounded),
        head_groundings=tuple(tuple(head_groundings[a]) for a in derived),
        depth=max(depths.values()))


def as_index_tensor(rows: Sequence[Sequence[int]], pad: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Ragged rows -> (long tensor [R, max_len] padded with ``pad``, bool mask of real entries)."""
    width = max((len(r) for r in rows), default=0)
    index = torch.full((len(rows), width), pad, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.bool)
    for i, row in enumerate(rows):
        index[i, :len(row)] = torch.tensor(row, dtype=torch.long)
        mask[i, :len(row)] = True
    return index, mask


@dataclass(frozen=True)
class JointProgram:
    """Several programs of one rule set (the actor's and the blender's clause files) in one
    valuation vector, so that one forward pass evaluates them all.

    Layout: the constants, then the **union** of the programs' valuation atoms (an atom used by two
    programs is computed once), then the derived atoms of program 0, of program 1, ... -- kept
    apart, because each clause file defines its own helpers (``danger`` of one file is not
    ``danger`` of another). Clauses are numbered program after program.
    """

    parts: tuple[GroundProgram, ...]
    valuation_calls: tuple[ValuationCall, ...]
    valuation_slots: tuple[tuple[int, ...], ...]
    """Per valuation atom (in layout order), the object slots of its arguments."""
    n_derived: int
    body_index: tuple[tuple[int, ...], ...]
    """Per grounding, its body literals as indices into ``cat(V, 1 - V)`` of the joint vector."""
    clause_of_grounding: tuple[int, ...]
    head_groundings: tuple[tuple[int, ...], ...]
    atom_maps: tuple[tuple[int, ...], ...]
    """Per program, its atom index (as in :class:`GroundProgram`) -> the joint index."""
    depth: int

    @property
    def n_valuation_atoms(self) -> int:
        return len(self.valuation_slots)

    @property
    def n_atoms(self) -> int:
        return N_CONSTANT_ATOMS + self.n_valuation_atoms + self.n_derived

    @property
    def has_negation(self) -> bool:
        return any(p.has_negation for p in self.parts)


def _valuation_atoms(program: GroundProgram):
    """(call, atom, slots) for every valuation atom of ``program``, in its layout order."""
    position = 0
    for call in program.valuation_calls:
        n = len(call.arg_slots[0]) if call.arg_slots else 1
        for j in range(n):
            yield call, program.atoms[position], tuple(slots[j] for slots in call.arg_slots)
            position += 1


def join_programs(programs: Sequence[GroundProgram]) -> JointProgram:
    """Lay ``programs`` (grounded from one rule set) out in one valuation vector; see :class:`JointProgram`."""
    if not programs:
        raise ValueError("join_programs needs at least one program")
    # the union of the valuation atoms, grouped by predicate in order of first appearance
    by_predicate: dict[str, tuple[ValuationCall, dict[tuple[str, ...], tuple[int, ...]]]] = {}
    for program in programs:
        for call, (predicate, args), slots in _valuation_atoms(program):
            by_predicate.setdefault(predicate, (call, {}))[1].setdefault(args, slots)
    calls, valuation_slots, valuation_index = [], [], {}
    for predicate, (call, atoms) in by_predicate.items():
        arity = len(call.arg_slots)
        calls.append(ValuationCall(predicate, call.fn,
                                   tuple(tuple(s[k] for s in atoms.values()) for k in range(arity))))
        for args, slots in atoms.items():
            valuation_index[(predicate, args)] = N_CONSTANT_ATOMS + len(valuation_slots)
            valuation_slots.append(slots)
    n_fixed = N_CONSTANT_ATOMS + len(valuation_slots)
    n_atoms = n_fixed + sum(p.n_derived for p in programs)
    width = max(len(row) for p in programs for row in p.body_index)

    atom_maps, body_index, clause_of_grounding, head_groundings = [], [], [], []
    derived_offset, clause_offset = n_fixed, 0
    for program in programs:
        mapping = list(range(N_CONSTANT_ATOMS))
        mapping += [valuation_index[atom] for atom in program.atoms[:program.n_valuation_atoms]]
        mapping += range(derived_offset, derived_offset + program.n_derived)

        def joint(i: int, mapping=mapping, own=program.n_atoms) -> int:
            return mapping[i - own] + n_atoms if i >= own else mapping[i]

        grounding_offset = len(body_index)
        for row in program.body_index:
            body_index.append(tuple(joint(i) for i in row) + (TRUE_INDEX,) * (width - len(row)))
        clause_of_grounding += [clause_offset + c for c in program.clause_of_grounding]
        head_groundings += [tuple(grounding_offset + g for g in gs) for gs in program.head_groundings]
        atom_maps.append(tuple(mapping))
        derived_offset += program.n_derived
        clause_offset += len(program.clauses)
    return JointProgram(
        parts=tuple(programs), valuation_calls=tuple(calls), valuation_slots=tuple(valuation_slots),
        n_derived=n_atoms - n_fixed, body_index=tuple(body_index),
        clause_of_grounding=tuple(clause_of_grounding), head_groundings=tuple(head_groundings),
        atom_maps=tuple(atom_maps), depth=max(p.depth for p in programs))
