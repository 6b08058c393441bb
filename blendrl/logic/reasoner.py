"""The differentiable forward reasoner: batched forward chaining over a :class:`GroundProgram`.

Semantics (``T`` = the temperature):

* a valuation atom's value is its valuation function's output -- times the presence flag of each
  of its objects where the environment has one (an atom about an empty slot is exactly 0), unless
  the function is marked :func:`~blendrl.logic.ruleset.sees_absent_objects` (it reads an empty
  slot's all-zero row itself, e.g. an oxygen bar that OCAtari drops when the tank is empty);
* soft NOT: ``1 - v``; soft AND over a clause body: the product of its literals (1 for a fact);
* soft OR (``soft_or``), one of

  - ``boltzmann``: the softmax-weighted mean ``sum_i x_i softmax(x/T)_i``. It lies between the
    mean and the max of its arguments, is within ``T*log(n)`` of the max, equals ``x`` for a single
    argument and is 0 for all-zero arguments -- it never exceeds 1;
  - ``logsumexp`` (the BlendRL reference's NSFR reasoner): ``T * log(sum_i exp(x_i / T))``, at
    least the max and at most ``max + T*log(n)`` (so ``T*log(n)`` for ``n`` zeros). Where the
    atoms one soft OR computes together exceed 1, they are divided by their maximum -- per state
    and per program (the reference divides by the maximum over the whole batch, which makes a
    state's values depend on the other states of its batch);

* clause weights (``clause_weights``), one of

  - ``sigmoid``: one weight ``w_c = sigmoid(theta_c)`` per clause ``c``, initialised to
    ``init_weight``. A derived atom ``h`` is the soft OR of ``w_c * body(c, g)`` over every clause
    ``c`` with head predicate of ``h`` and every grounding ``g`` of ``c`` that derives ``h`` --
    body-only (existential) variables and several clauses of one head are OR-ed in this one soft OR;
  - ``softmax`` (the reference): per program a matrix ``W`` of ``m x C`` (``m`` = the number of
    distinct head predicates, ``C`` = the clauses), initialised from N(0, 1). Per clause ``c`` and
    head atom ``h``, ``b_c(h)`` = the soft OR of ``body(c, g)`` over the groundings ``g`` of ``c``
    that derive ``h``; row ``j`` gives ``H_j(h) = sum_c softmax(W_j)_c * b_c(h)``; the atom is the
    soft OR of ``H_j(h)`` over the rows ``j``. The clauses of a program compete for each row's
    weight. The weight printed for clause ``c`` is the soft OR over rows of ``softmax(W_j)_c``;

* one inference step recomputes every derived atom from the previous step's values (derived
  atoms start at 0). Rules are not recursive, so after ``depth`` steps (the longest chain of helper
  predicates + 1) the values are final; more steps change nothing.

The forward pass is a fixed sequence of tensor ops on index tensors built once: one call per
valuation predicate (shared by the programs evaluated together), then per step one gather, a
product, a gather and a soft OR (and for ``softmax`` weights, one small matmul per program).
"""

from __future__ import annotations

import math
from typing import Sequence

import torch
from torch import nn

from blendrl.logic.grounding import (FALSE_INDEX, TRUE_INDEX, GroundAtom, GroundProgram, JointProgram,
                                     as_index_tensor, join_programs)
from blendrl.logic.ruleset import sees_absent_objects_of
from blendrl.logic.soft import constant

DEFAULT_TEMPERATURE = 0.01
DEFAULT_INIT_WEIGHT = 0.98
"""Initial sigmoid clause weight: a clause whose body is 1 starts at 0.98, inside the actor's and the
blender's clamp to [0.01, 0.99] (at 0.99 itself, float32 rounding put the weight just above the
clamp, where its gradient is exactly 0)."""

SOFT_ORS = ("boltzmann", "logsumexp")
CLAUSE_WEIGHTS = ("sigmoid", "softmax")


def check_choice(name: str, value: str, valid: Sequence[str]) -> None:
    """ValueError naming the option unless ``value`` is one of ``valid``."""
    if value not in valid:
        raise ValueError(f"unknown {name} {value!r}; valid: {', '.join(valid)}")


def soft_or(x: torch.Tensor, temperature: float, padding: torch.Tensor | None = None,
            kind: str = "boltzmann") -> torch.Tensor:
    """Soft OR over the last dim (see the module docstring; ``logsumexp`` without the division by
    the maximum, which the reasoner applies over the atoms of a program); entries where ``padding``
    is True are ignored (every row needs at least one entry that is not padding)."""
    check_choice("soft_or", kind, SOFT_ORS)
    logits = x / temperature
    if padding is not None:
        logits = logits.masked_fill(padding, float("-inf"))
    if kind == "logsumexp":
        return temperature * torch.logsumexp(logits, dim=-1)
    return (torch.softmax(logits, dim=-1) * x).sum(dim=-1)


def divide_by_max_above_one(x: torch.Tensor, segments: Sequence[tuple[int, int]]) -> torch.Tensor:
    """Per row and per column range ``[start, stop)`` of ``segments`` (which tile the columns):
    ``x / max(1, max of the range)`` -- the reference's normalisation of a logsumexp soft OR."""
    if len(segments) == 1:
        return x / x.amax(dim=1, keepdim=True).clamp_min(1.0)
    return torch.cat([x[:, a:b] / x[:, a:b].amax(dim=1, keepdim=True).clamp_min(1.0)
                      for a, b in segments], dim=1)


class SoftOrGroups(nn.Module):
    """Soft OR over ragged groups of columns: ``[B, n] -> [B, n_groups]``, group ``g`` being the
    soft OR of the columns ``groups[g]`` -- a plain gather where every group has one column
    (nothing at all where that gather is the identity on ``n_columns`` columns).

    The padding of short groups is an additive ``-inf`` bias of the scaled logits (one fused op
    instead of a division and a masked fill; the same numbers as :func:`soft_or`). With
    ``kind="logsumexp"`` the groups of each range of ``segments`` (default: all groups) are divided
    by their maximum where it exceeds 1 (a single column is its own soft OR and never exceeds 1).
    """

    def __init__(self, groups: Sequence[Sequence[int]], temperature: float, n_columns: int | None = None,
                 kind: str = "boltzmann", segments: Sequence[tuple[int, int]] | None = None):
        super().__init__()
        check_choice("soft_or", kind, SOFT_ORS)
        index, mask = as_index_tensor(groups, pad=groups[0][0])  # pads point at a real column, masked
        self._shape = tuple(index.shape)
        self._inv_temperature = 1.0 / temperature
        self._temperature = constant(temperature)
        self._logsumexp = kind == "logsumexp"
        self._segments = [(0, len(groups))] if segments is None else [tuple(s) for s in segments]
        self._single = self._shape[1] == 1
        self._identity = self._single and n_columns == len(groups) and \
            torch.equal(index[:, 0], torch.arange(len(groups)))
        self.register_buffer("_index", index.flatten(), persistent=False)
        bias = torch.zeros(self._shape).masked_fill(~mask, float("-inf"))
        self.register_buffer("_bias", bias, persistent=False)

    def forward(self, values: torch.Tensor) -> torch.Tensor:
        if self._identity:
            return values
        buffers = self._buffers  # (see ForwardReasoner.valuate)
        x = values.index_select(1, buffers["_index"])
        if self._single:
            return x
        x = x.view(values.shape[0], *self._shape)
        logits = torch.add(buffers["_bias"], x, alpha=self._inv_temperature)
        if self._logsumexp:
            out = torch.logsumexp(logits, dim=-1) * self._temperature.to(x.dtype)
            return divide_by_max_above_one(out, self._segments)
        return torch.linalg.vecdot(torch.softmax(logits, dim=-1), x)  # sum_i softmax_i x_i


def _rows_soft_or(h: torch.Tensor, temperature: float, logsumexp: bool) -> torch.Tensor:
    """Soft OR over dim 1 of ``[B, m, A]`` -> ``[B, A]`` (logsumexp: divided by the max above 1)."""
    if h.shape[1] == 1:
        return h[:, 0]
    if logsumexp:
        out = temperature * torch.logsumexp(h / temperature, dim=1)
        return divide_by_max_above_one(out, [(0, out.shape[1])])
    return (torch.softmax(h / temperature, dim=1) * h).sum(dim=1)


class _SoftmaxMixing(nn.Module):
    """The reference's clause weighting of the programs of a joint program (see the module docstring):
    body products ``[B, n_groundings]`` -> derived atoms ``[B, n_derived]``, given ``softmax(W)`` per
    program."""

    def __init__(self, joint: JointProgram, temperature: float, logsumexp: bool):
        super().__init__()
        self._temperature = temperature
        self._logsumexp = logsumexp
        clause_of = joint.clause_of_grounding
        pairs: list[list[int]] = []       # groundings of each (clause, head atom) pair
        pair_clause: list[int] = []       # global clause of each pair
        pair_atom: list[int] = []         # derived atom (joint order) of each pair
        for atom, groundings in enumerate(joint.head_groundings):
            by_clause: dict[int, list[int]] = {}
            for g in groundings:
                by_clause.setdefault(clause_of[g], []).append(g)
            for clause, gs in sorted(by_clause.items()):
                pairs.append(gs)
                pair_clause.append(clause)
                pair_atom.append(atom)
        # programs are contiguous in the clause numbering and in the derived atoms, so in the pairs
        self._parts: list[tuple[int, int, int, int]] = []  # (pair start, stop, atom start, stop)
        clause_start = atom_start = pair_start = 0
        pair_segments = []
        for k, program in enumerate(joint.parts):
            n_clauses, n_atoms = len(program.clauses), program.n_derived
            pair_stop = pair_start
            while pair_stop < len(pairs) and pair_clause[pair_stop] < clause_start + n_clauses:
                pair_stop += 1
            local = torch.tensor([c - clause_start for c in pair_clause[pair_start:pair_stop]])
            incidence = torch.zeros(pair_stop - pair_start, n_atoms)
            incidence[torch.arange(pair_stop - pair_start),
                      torch.tensor(pair_atom[pair_start:pair_stop]) - atom_start] = 1.0
            self.register_buffer(f"_clause_{k}", local, persistent=False)
            self.register_buffer(f"_incidence_{k}", incidence, persistent=False)
            self._parts.append((pair_start, pair_stop, atom_start, atom_start + n_atoms))
            pair_segments.append((pair_start, pair_stop))
            clause_start += n_clauses
            atom_start += n_atoms
            pair_start = pair_stop
        self._pairs = SoftOrGroups(pairs, temperature, n_columns=len(clause_of),
                                   kind="logsumexp" if logsumexp else "boltzmann", segments=pair_segments)

    def forward(self, body: torch.Tensor, softmaxed: Sequence[torch.Tensor]) -> torch.Tensor:
        pairs = self._modules["_pairs"](body)  # [B, n_pairs]
        buffers = self._buffers
        out = []
        for k, (p0, p1, _, _) in enumerate(self._parts):
            weights = softmaxed[k].index_select(1, buffers[f"_clause_{k}"])  # [m_k, pairs of k]
            rows = (pairs[:, None, p0:p1] * weights) @ buffers[f"_incidence_{k}"]  # [B, m_k, atoms of k]
            out.append(_rows_soft_or(rows, self._temperature, self._logsumexp))
        return out[0] if len(out) == 1 else torch.cat(out, dim=1)


def _check_options(temperature: float, init_weight: float, soft_or: str, clause_weights: str) -> None:
    """ValueError unless the reasoner's options are valid."""
    if not temperature > 0:
        raise ValueError(f"temperature must be positive, got {temperature}")
    if not 0.0 < init_weight < 1.0:
        raise ValueError(f"init_weight must lie strictly between 0 and 1, got {init_weight}")
    check_choice("soft_or", soft_or, SOFT_ORS)
    check_choice("clause_weights", clause_weights, CLAUSE_WEIGHTS)


def _inference_steps(joint: JointProgram, infer_steps: int | None) -> int:
    """``infer_steps`` (default: the program's depth); ValueError where it is fewer."""
    steps = joint.depth if infer_steps is None else int(infer_steps)
    if steps < joint.depth:
        raise ValueError(f"infer_steps={infer_steps} is fewer than the {joint.depth} steps this "
                         "program needs (its helper predicates chain that deep)")
    return steps


class ForwardReasoner(nn.Module):
    """Forward chaining over one or several ground programs of a rule set, with learnable clause
    weights (one parameter per program, so that each can have its own learning rate).

    Several programs (the actor's and the blender's) are evaluated in one pass over a
    :class:`~blendrl.logic.grounding.JointProgram`: their shared valuation atoms are computed once.
    ``presence_feature`` (a column of the logic state, 1 for an object, 0 for an empty slot) makes
    every valuation atom about an empty slot exactly 0, whatever its valuation function returns
    (except for functions marked :func:`~blendrl.logic.ruleset.sees_absent_objects`).
    ``soft_or`` and ``clause_weights`` select the semantics (module docstring); ``init_weight`` is
    the initial weight of ``sigmoid`` clause weights (``softmax`` weights start from N(0, 1)).
    """

    def __init__(self, programs: GroundProgram | Sequence[GroundProgram],
                 temperature: float = DEFAULT_TEMPERATURE, infer_steps: int | None = None,
                 init_weight: float = DEFAULT_INIT_WEIGHT, presence_feature: int | None = None,
                 soft_or: str = "boltzmann", clause_weights: str = "sigmoid"):
        super().__init__()
        _check_options(temperature, init_weight, soft_or, clause_weights)
        joint = join_programs([programs] if isinstance(programs, GroundProgram) else list(programs))
        steps = _inference_steps(joint, infer_steps)
        self.joint = joint
        self.programs = joint.parts
        self.temperature = float(temperature)
        self.infer_steps = steps
        self.soft_or_kind = soft_or
        self.clause_weighting = clause_weights
        self._init_weights(joint, init_weight)
        self._init_valuation_calls(joint)
        self._init_presence_gate(joint, presence_feature)
        self._init_body_index(joint)
        self._init_heads(joint, temperature)

    def _init_weights(self, joint: JointProgram, init_weight: float) -> None:
        """One parameter of clause weights per program (module docstring)."""
        if self.clause_weighting == "sigmoid":
            raw = math.log(init_weight / (1 - init_weight))
            self.raw_weights = nn.ParameterList(
                [nn.Parameter(torch.full((len(p.clauses),), raw)) for p in joint.parts])
        else:  # m x C, m = the distinct head predicates of the program
            self.raw_weights = nn.ParameterList(
                [nn.Parameter(torch.randn(len({c.head.predicate for c in p.clauses}), len(p.clauses)))
                 for p in joint.parts])

    def _init_valuation_calls(self, joint: JointProgram) -> None:
        """The valuation functions to call and the rows of each argument position, gathered once
        per distinct slot list; the constants (false, true) in front of the valuation atoms."""
        self._calls = [call.fn for call in joint.valuation_calls]
        gathers: dict[tuple[int, ...], int] = {}
        self._call_args = [[gathers.setdefault(slots, len(gathers)) for slots in call.arg_slots]
                           for call in joint.valuation_calls]
        # (one index_select each: contiguous rows, on which the geometry's matmuls stay single ops)
        self._gather_names = [f"_gather_{k}" for k in range(len(gathers))]
        for name, slots in zip(self._gather_names, gathers):
            self.register_buffer(name, torch.tensor(slots, dtype=torch.long), persistent=False)
        self.register_buffer("_constants", torch.tensor([0.0, 1.0]), persistent=False)
        self.register_buffer("_one", torch.tensor(1.0), persistent=False)

    def _init_body_index(self, joint: JointProgram) -> None:
        """The literals of every grounding's body, as indices into the values of a step (the first
        step's apart), and the clause of each grounding."""
        n_groundings = len(joint.body_index)
        width = len(joint.body_index[0])
        self._body_shape = (n_groundings, width)
        self.register_buffer("_body_index", torch.tensor(joint.body_index, dtype=torch.long).flatten(),
                             persistent=False)
        # the first step reads no derived atom (all 0 then): its index points into
        # cat(fixed, 1 - fixed), a derived literal at the constant false (or true where negated)
        n_fixed, n_atoms = joint.n_atoms - joint.n_derived, joint.n_atoms

        def first_step(i: int) -> int:
            negated, atom = i >= n_atoms, i % n_atoms
            if atom >= n_fixed:
                return TRUE_INDEX if negated else FALSE_INDEX
            return atom + n_fixed if negated else atom

        self.register_buffer("_first_body_index",
                             torch.tensor([first_step(i) for row in joint.body_index for i in row],
                                          dtype=torch.long), persistent=False)
        self.register_buffer("_clause_of_grounding",
                             torch.tensor(joint.clause_of_grounding, dtype=torch.long), persistent=False)

    def _init_heads(self, joint: JointProgram, temperature: float) -> None:
        """How the weighted bodies are OR-ed into their heads: per derived atom over its
        groundings (``sigmoid`` weights) or the reference's softmax mixing."""
        logsumexp = self.soft_or_kind == "logsumexp"
        derived_segments, start = [], 0
        for program in joint.parts:
            derived_segments.append((start, start + program.n_derived))
            start += program.n_derived
        if self.clause_weighting == "sigmoid":
            self._heads = SoftOrGroups(joint.head_groundings, temperature, n_columns=len(joint.body_index),
                                       kind=self.soft_or_kind, segments=derived_segments)
        else:
            self._mixing = _SoftmaxMixing(joint, temperature, logsumexp)
        self._negation = joint.has_negation

    def _init_presence_gate(self, joint: JointProgram, presence_feature: int | None) -> None:
        """Per valuation atom, the slots whose presence flags multiply it, padded by repeating its
        first slot (presence is 0 or 1, so p * p = p). Atoms of functions that see absent objects
        point at a constant 1 put in front of the flags (slot s is then at s + 1)."""
        slots = joint.valuation_slots
        self._presence = presence_feature if slots else None  # (a program of facts has no atom to gate)
        if self._presence is None:
            return
        gated = [not sees_absent_objects_of(call.fn)
                 for call in joint.valuation_calls for _ in range(len(call.arg_slots[0]) if call.arg_slots else 1)]
        if any(g and not s for g, s in zip(gated, slots)):
            raise ValueError("a presence gate needs every valuation atom to be about an object")
        self._gate_padded = not all(gated)
        arity = max(len(s) for s in slots) or 1
        if self._gate_padded:
            gate = [[x + 1 for x in s] + [s[0] + 1] * (arity - len(s)) if g else [0] * arity
                    for g, s in zip(gated, slots)]
        else:
            gate = [list(s) + [s[0]] * (arity - len(s)) for s in slots]
        self.register_buffer("_gate_index", torch.tensor(gate, dtype=torch.long).flatten(), persistent=False)
        self._gate_shape = (len(slots), arity)

    # -- atoms of one program -------------------------------------------------------------------
    def index_of(self, part: int, atom: GroundAtom) -> int:
        """Index in the output of ground atom ``atom`` of program ``part``."""
        return self.joint.atom_maps[part][self.programs[part].index_of(atom)]

    def atoms_of(self, part: int, predicate: str) -> list[int]:
        """Indices in the output of every ground atom of ``predicate`` in program ``part``."""
        return [self.joint.atom_maps[part][i] for i in self.programs[part].atoms_of(predicate)]

    # -- weights --------------------------------------------------------------------------------
    def clause_weights(self, part: int = 0) -> torch.Tensor:
        """[n_clauses of program ``part``] its clause weights: ``sigmoid(theta)``, or for ``softmax``
        weights the soft OR over the rows of ``softmax(W)`` (what the reference prints)."""
        raw = self.raw_weights[part]
        if self.clause_weighting == "sigmoid":
            return torch.sigmoid(raw)
        return _rows_soft_or(torch.softmax(raw, dim=1).unsqueeze(0), self.temperature,
                             self.soft_or_kind == "logsumexp")[0]

    # -- forward --------------------------------------------------------------------------------
    # (the forward pass reads buffers from ``self._buffers`` directly: nn.Module's attribute
    # fallback costs about as much as a small tensor op, and these run at every rollout step)
    def valuate(self, logic: torch.Tensor) -> torch.Tensor:
        """[B, 2 + n_valuation_atoms]: the constants and every valuation atom's value."""
        batch = logic.shape[0]
        buffers = self._buffers
        constants = buffers["_constants"].expand(batch, 2)
        if not self._calls:  # only facts and helpers: no valuation atom
            return constants.to(logic.dtype)
        rows = [logic.index_select(1, buffers[name]) for name in self._gather_names]
        values = torch.cat([fn(*(rows[k] for k in args)) for fn, args in zip(self._calls, self._call_args)],
                           dim=1)
        if self._presence is not None:
            present = logic.select(2, self._presence)
            if self._gate_padded:
                present = torch.nn.functional.pad(present, (1, 0), value=1.0)
            present = present.index_select(1, buffers["_gate_index"])
            if self._gate_shape[1] > 1:
                present = present.view(batch, *self._gate_shape).prod(dim=2)
            values = values * present
        return torch.cat([constants, values], dim=1)

    def forward(self, logic: torch.Tensor) -> torch.Tensor:
        """[B, n_atoms] the value of every ground atom after ``infer_steps`` steps."""
        fixed = self.valuate(logic)
        buffers = self._buffers
        raw = tuple(self._modules["raw_weights"]._parameters.values())
        if self.clause_weighting == "sigmoid":
            weights = torch.sigmoid(raw[0] if len(raw) == 1 else torch.cat(raw))
            weights = weights.index_select(0, buffers["_clause_of_grounding"])
        else:
            weights = [torch.softmax(w, dim=1) for w in raw]
        one = buffers["_one"]
        values = torch.cat([fixed, torch.sub(one, fixed)], dim=1) if self._negation else fixed
        derived = self._step(values, buffers["_first_body_index"], weights)
        for _ in range(self.infer_steps - 1):
            values = torch.cat([fixed, derived], dim=1)
            if self._negation:
                values = torch.cat([values, torch.sub(one, values)], dim=1)
            derived = self._step(values, buffers["_body_index"], weights)
        return torch.cat([fixed, derived], dim=1)

    def _bodies(self, values: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
        """[B, n_groundings] every grounding's body: the product of its atoms' values."""
        return values.index_select(1, index).view(values.shape[0], *self._body_shape).prod(dim=2)

    def _step(self, values: torch.Tensor, index: torch.Tensor, weights) -> torch.Tensor:
        """One inference step: every grounding's body product, weighted and OR-ed into its head."""
        body = self._bodies(values, index)
        if self.clause_weighting == "sigmoid":
            return self._modules["_heads"](body * weights)
        return self._modules["_mixing"](body, weights)

    @torch.no_grad()
    def clause_values(self, logic: torch.Tensor, part: int = 0) -> torch.Tensor:
        """[B, n_clauses of program ``part``] how much each clause fires at each state: its weight
        (:meth:`clause_weights`) times its truest grounding's body at the final atom values
        (the max over its groundings). A separate pass for explanations (evaluation videos); the
        forward pass is unchanged."""
        values = self.forward(logic)
        if self._negation:
            values = torch.cat([values, torch.sub(self._buffers["_one"], values)], dim=1)
        body = self._bodies(values, self._buffers["_body_index"])
        first = sum(len(p.clauses) for p in self.programs[:part])
        count = len(self.programs[part].clauses)
        clause = self._buffers["_clause_of_grounding"]
        mine = (clause >= first) & (clause < first + count)
        best = body.new_zeros(body.shape[0], count).scatter_reduce(
            1, (clause[mine] - first).expand(body.shape[0], -1), body[:, mine], "amax")
        return best * self.clause_weights(part).to(best.dtype)

    # -- text -----------------------------------------------------------------------------------
    def program_text(self, part: int = 0) -> str:
        """Each clause of program ``part`` with its current weight, one per line: ``0.980 head :- body.``."""
        weights = self.clause_weights(part).detach().cpu().tolist()
        return "\n".join(f"{w:.3f} {clause}" for w, clause in zip(weights, self.programs[part].clauses))
