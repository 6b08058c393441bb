"""The differentiable forward reasoner: batched forward chaining over a :class:`GroundProgram`.

Semantics (``T`` = the temperature, ``w_c = sigmoid(theta_c)`` the learnable weight of clause ``c``):

* a valuation atom's value is its valuation function's output;
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
valuation predicate, then per step one gather, a product, a gather and a masked softmax.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from blendrl.logic.grounding import GroundProgram, as_index_tensor

DEFAULT_TEMPERATURE = 0.01
DEFAULT_INIT_WEIGHT = 0.99


def soft_or(x: torch.Tensor, temperature: float, padding: torch.Tensor | None = None) -> torch.Tensor:
    """Soft OR over the last dim: ``sum_i x_i softmax(x / T)_i``; entries where ``padding`` is True
    are ignored (every row needs at least one entry that is not padding)."""
    logits = x / temperature
    if padding is not None:
        logits = logits.masked_fill(padding, float("-inf"))
    return (torch.softmax(logits, dim=-1) * x).sum(dim=-1)


class ForwardReasoner(nn.Module):
    """Forward chaining over one ground program with one learnable weight per clause."""

    def __init__(self, program: GroundProgram, temperature: float = DEFAULT_TEMPERATURE,
                 infer_steps: int | None = None, init_weight: float = DEFAULT_INIT_WEIGHT):
        super().__init__()
        if not temperature > 0:
            raise ValueError(f"temperature must be positive, got {temperature}")
        if not 0.0 < init_weight < 1.0:
            raise ValueError(f"init_weight must lie strictly between 0 and 1, got {init_weight}")
        steps = program.depth if infer_steps is None else int(infer_steps)
        if steps < program.depth:
            raise ValueError(f"infer_steps={infer_steps} is fewer than the {program.depth} steps this "
                             "program needs (its helper predicates chain that deep)")
        self.program = program
        self.temperature = float(temperature)
        self.infer_steps = steps
        n_clauses = len(program.clauses)
        self.raw_weights = nn.Parameter(torch.full((n_clauses,), math.log(init_weight / (1 - init_weight))))
        # valuation calls: the rows of each argument position are gathered once per distinct slot list
        self._calls = [call.fn for call in program.valuation_calls]
        gathers: dict[tuple[int, ...], int] = {}
        self._call_args = [[gathers.setdefault(slots, len(gathers)) for slots in call.arg_slots]
                           for call in program.valuation_calls]
        for k, slots in enumerate(gathers):
            self.register_buffer(f"_gather_{k}", torch.tensor(slots, dtype=torch.long), persistent=False)
        self._n_gathers = len(gathers)
        n_groundings = len(program.body_index)
        width = len(program.body_index[0]) if n_groundings else 0
        body = torch.tensor(program.body_index, dtype=torch.long).reshape(n_groundings, width)
        self.register_buffer("_body_index", body, persistent=False)
        self.register_buffer("_clause_of_grounding",
                             torch.tensor(program.clause_of_grounding, dtype=torch.long), persistent=False)
        # pads point at grounding 0 and are masked out of the soft OR
        head_index, head_mask = as_index_tensor(program.head_groundings, pad=0)
        # fast path: every derived atom has exactly one grounding
        self._single = bool(head_mask.all()) and head_index.shape[1] == 1
        self.register_buffer("_head_index", head_index[:, 0].contiguous() if self._single else head_index,
                             persistent=False)
        self.register_buffer("_head_padding", ~head_mask, persistent=False)
        self._identity_heads = self._single and torch.equal(self._head_index, torch.arange(n_groundings))
        self._negation = program.has_negation
        self.register_buffer("_constants", torch.tensor([0.0, 1.0]), persistent=False)

    # -- weights --------------------------------------------------------------------------------
    def clause_weights(self) -> torch.Tensor:
        """[n_clauses] the clause weights in (0, 1)."""
        return torch.sigmoid(self.raw_weights)

    # -- forward --------------------------------------------------------------------------------
    def valuate(self, logic: torch.Tensor) -> torch.Tensor:
        """[B, 2 + n_valuation_atoms]: the constants and every valuation atom's value."""
        batch = logic.shape[0]
        rows = [logic.index_select(1, getattr(self, f"_gather_{k}")) for k in range(self._n_gathers)]
        parts = [self._constants.to(logic.dtype).expand(batch, 2)]
        for fn, args in zip(self._calls, self._call_args):
            parts.append(fn(*(rows[k] for k in args)))
        return torch.cat(parts, dim=1)

    def forward(self, logic: torch.Tensor) -> torch.Tensor:
        """[B, n_atoms] the value of every ground atom after ``infer_steps`` steps."""
        fixed = self.valuate(logic)
        weights = self.clause_weights()[self._clause_of_grounding]
        derived = fixed.new_zeros(fixed.shape[0], self.program.n_derived)
        for _ in range(self.infer_steps):
            values = torch.cat([fixed, derived], dim=1)
            if self._negation:
                values = torch.cat([values, 1.0 - values], dim=1)
            grounded = values[:, self._body_index].prod(dim=2) * weights
            derived = self._heads(grounded)
        return torch.cat([fixed, derived], dim=1)

    def _heads(self, grounded: torch.Tensor) -> torch.Tensor:
        """[B, n_groundings] -> [B, n_derived] by the soft OR over each head's groundings."""
        if self._identity_heads:
            return grounded
        if self._single:
            return grounded[:, self._head_index]
        return soft_or(grounded[:, self._head_index], self.temperature, self._head_padding)

    # -- text -----------------------------------------------------------------------------------
    def program_text(self) -> str:
        """Each clause with its current weight, one per line: ``0.990 head :- body.``."""
        weights = self.clause_weights().detach().cpu().tolist()
        return "\n".join(f"{w:.3f} {clause}" for w, clause in zip(weights, self.program.clauses))
