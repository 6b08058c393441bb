"""The differentiable forward reasoner: batched forward chaining over a :class:`GroundProgram`.

Semantics (``T`` = the temperature, ``w_c = sigmoid(theta_c)`` the learnable weight of clause ``c``):

* a valuation atom's value is its valuation function's output -- times the presence flag of each
  of its objects where the environment has one (an atom about an empty slot is exactly 0);
* soft NOT: ``1 - v``; soft AND over a clause body: the product of its literals (1 for a fact);
* a derived atom ``h`` is the soft OR of ``w_c * body(c, g)`` over every clause ``c`` with head
  predicate of ``h`` and every grounding ``g`` of ``c`` that derives ``h`` -- body-only
  (existential) variables and several clauses of one head are OR-ed in this one soft OR;
* soft OR = the softmax-weighted mean (Boltzmann operator) ``softor_T(x) = sum_i x_i softmax(x/T)_i``.
  It lies between the mean and the max of its arguments, is within ``T*log(n)`` of the max, equals
  the max when one argument leads by many ``T``, equals ``x`` for a single argument and is 0 for
  all-zero arguments -- a smooth max that needs no clamping to stay in [0, 1];
* one inference step recomputes every derived atom from the previous step's values (derived
  atoms start at 0). Rules are not recursive, so after ``depth`` steps (the longest chain of helper
  predicates + 1) the values are final; more steps change nothing.

The forward pass is a fixed sequence of tensor ops on index tensors built once: one call per
valuation predicate (shared by the programs evaluated together), then per step one gather, a
product, a gather and a masked softmax.
"""

from __future__ import annotations

import math
from typing import Sequence

import torch
from torch import nn

from blendrl.logic.grounding import (FALSE_INDEX, TRUE_INDEX, GroundAtom, GroundProgram, as_index_tensor,
                                     join_programs)

DEFAULT_TEMPERATURE = 0.01
DEFAULT_INIT_WEIGHT = 0.99


def soft_or(x: torch.Tensor, temperature: float, padding: torch.Tensor | None = None) -> torch.Tensor:
    """Soft OR over the last dim: ``sum_i x_i softmax(x / T)_i``; entries where ``padding`` is True
    are ignored (every row needs at least one entry that is not padding)."""
    logits = x / temperature
    if padding is not None:
        logits = logits.masked_fill(padding, float("-inf"))
    return (torch.softmax(logits, dim=-1) * x).sum(dim=-1)


class SoftOrGroups(nn.Module):
    """Soft OR over ragged groups of columns: ``[B, n] -> [B, n_groups]``, group ``g`` being the
    :func:`soft_or` of the columns ``groups[g]`` -- a plain gather where every group has one column
    (nothing at all where that gather is the identity on ``n_columns`` columns).

    The padding of short groups is an additive ``-inf`` bias of the scaled logits (one fused op
    instead of a division and a masked fill; the same numbers as :func:`soft_or`).
    """

    def __init__(self, groups: Sequence[Sequence[int]], temperature: float, n_columns: int | None = None):
        super().__init__()
        index, mask = as_index_tensor(groups, pad=groups[0][0])  # pads point at a real column, masked
        self._shape = tuple(index.shape)
        self._inv_temperature = 1.0 / temperature
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
        return torch.linalg.vecdot(torch.softmax(logits, dim=-1), x)  # sum_i softmax_i x_i


class ForwardReasoner(nn.Module):
    """Forward chaining over one or several ground programs of a rule set, with one learnable weight
    per clause (one parameter per program, so that each can have its own learning rate).

    Several programs (the actor's and the blender's) are evaluated in one pass over a
    :class:`~blendrl.logic.grounding.JointProgram`: their shared valuation atoms are computed once.
    ``presence_feature`` (a column of the logic state, 1 for an object, 0 for an empty slot) makes
    every valuation atom about an empty slot exactly 0, whatever its valuation function returns.
    """

    def __init__(self, programs: GroundProgram | Sequence[GroundProgram],
                 temperature: float = DEFAULT_TEMPERATURE, infer_steps: int | None = None,
                 init_weight: float = DEFAULT_INIT_WEIGHT, presence_feature: int | None = None):
        super().__init__()
        if not temperature > 0:
            raise ValueError(f"temperature must be positive, got {temperature}")
        if not 0.0 < init_weight < 1.0:
            raise ValueError(f"init_weight must lie strictly between 0 and 1, got {init_weight}")
        joint = join_programs([programs] if isinstance(programs, GroundProgram) else list(programs))
        steps = joint.depth if infer_steps is None else int(infer_steps)
        if steps < joint.depth:
            raise ValueError(f"infer_steps={infer_steps} is fewer than the {joint.depth} steps this "
                             "program needs (its helper predicates chain that deep)")
        self.joint = joint
        self.programs = joint.parts
        self.temperature = float(temperature)
        self.infer_steps = steps
        raw = math.log(init_weight / (1 - init_weight))
        self.raw_weights = nn.ParameterList(
            [nn.Parameter(torch.full((len(p.clauses),), raw)) for p in joint.parts])
        # valuation calls: the rows of each argument position are gathered once per distinct slot list
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
        # presence gate: per valuation atom, the slots of its objects, padded by repeating its
        # first slot (presence is 0 or 1, so p * p = p)
        slots = joint.valuation_slots
        self._presence = presence_feature if slots else None  # (a program of facts has no atom to gate)
        if self._presence is not None:
            if any(not s for s in slots):
                raise ValueError("a presence gate needs every valuation atom to be about an object")
            arity = max(len(s) for s in slots)
            gate = [list(s) + [s[0]] * (arity - len(s)) for s in slots]
            self.register_buffer("_gate_index", torch.tensor(gate, dtype=torch.long).flatten(),
                                 persistent=False)
            self._gate_shape = (len(slots), arity)
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
        self._heads = SoftOrGroups(joint.head_groundings, temperature, n_columns=n_groundings)
        self._negation = joint.has_negation

    # -- atoms of one program -------------------------------------------------------------------
    def index_of(self, part: int, atom: GroundAtom) -> int:
        """Index in the output of ground atom ``atom`` of program ``part``."""
        return self.joint.atom_maps[part][self.programs[part].index_of(atom)]

    def atoms_of(self, part: int, predicate: str) -> list[int]:
        """Indices in the output of every ground atom of ``predicate`` in program ``part``."""
        return [self.joint.atom_maps[part][i] for i in self.programs[part].atoms_of(predicate)]

    # -- weights --------------------------------------------------------------------------------
    def clause_weights(self, part: int = 0) -> torch.Tensor:
        """[n_clauses of program ``part``] its clause weights in (0, 1)."""
        return torch.sigmoid(self.raw_weights[part])

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
            present = logic.select(2, self._presence).index_select(1, buffers["_gate_index"])
            if self._gate_shape[1] > 1:
                present = present.view(batch, *self._gate_shape).prod(dim=2)
            values = values * present
        return torch.cat([constants, values], dim=1)

    def forward(self, logic: torch.Tensor) -> torch.Tensor:
        """[B, n_atoms] the value of every ground atom after ``infer_steps`` steps."""
        fixed = self.valuate(logic)
        buffers = self._buffers
        raw = tuple(self._modules["raw_weights"]._parameters.values())
        weights = torch.sigmoid(raw[0] if len(raw) == 1 else torch.cat(raw))
        weights = weights.index_select(0, buffers["_clause_of_grounding"])
        one = buffers["_one"]
        values = torch.cat([fixed, torch.sub(one, fixed)], dim=1) if self._negation else fixed
        derived = self._step(values, buffers["_first_body_index"], weights)
        for _ in range(self.infer_steps - 1):
            values = torch.cat([fixed, derived], dim=1)
            if self._negation:
                values = torch.cat([values, torch.sub(one, values)], dim=1)
            derived = self._step(values, buffers["_body_index"], weights)
        return torch.cat([fixed, derived], dim=1)

    def _step(self, values: torch.Tensor, index: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
        """One inference step: every grounding's weighted body product, OR-ed into its head."""
        body = values.index_select(1, index).view(values.shape[0], *self._body_shape)
        return self._modules["_heads"](body.prod(dim=2) * weights)

    # -- text -----------------------------------------------------------------------------------
    def program_text(self, part: int = 0) -> str:
        """Each clause of program ``part`` with its current weight, one per line: ``0.990 head :- body.``."""
        weights = self.clause_weights(part).detach().cpu().tolist()
        return "\n".join(f"{w:.3f} {clause}" for w, clause in zip(weights, self.programs[part].clauses))
