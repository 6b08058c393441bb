"""Valid ranges of the training scripts' numeric flags: declared once on each Args field, shown by
``--help``, checked before any work.

A numeric field (``int`` or ``float``, optional or not) declares its range in its annotation, in
interval notation::

    gamma: Annotated[float, in_range("[0, 1]")] = 0.99
    \"\"\"discount factor\"\"\"

``[``/``]`` include an end, ``(``/``)`` exclude it, ``inf`` is unbounded (an infinite end is
always excluded). ``--help`` then shows ``(default: 0.99; range [0, 1])`` after the field's
docstring. :func:`check_ranges` raises :class:`~blendrl.exits.UsageError` (exit status 2) naming
the first flag outside its range, its value and the range. NaN and infinity are never valid;
``None`` is valid for an optional field (its docstring says what it stands for).
``tests/test_validation.py`` fails when a numeric field of the four scripts' Args has no range.

:func:`check_rule_set` loads and validates a BlendRL rule set before any work, turning its
error (e.g. an unknown name, with the rule sets the environment has) into a UsageError.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import re
import types
import typing
from dataclasses import dataclass
from typing import Annotated, Any, Union

import tyro

from blendrl.exits import UsageError

_INTERVAL_RE = re.compile(r"\s*([\[(])\s*([^,\s]+)\s*,\s*([^,\s]+)\s*([\])])\s*\Z")


def _number(token: str) -> int | float:
    try:
        return int(token)
    except ValueError:
        return float(token)  # also inf, -inf; nan is refused by Range


def _show(x: int | float) -> str:
    if math.isinf(x):
        return "inf" if x > 0 else "-inf"
    return str(int(x)) if float(x).is_integer() else repr(float(x))


@dataclass(frozen=True)
class Range:
    """An interval of valid values; ``value in r`` is False for NaN and for +-infinity."""

    lo: int | float
    hi: int | float
    lo_open: bool = False
    hi_open: bool = False

    def __post_init__(self) -> None:
        if math.isnan(self.lo) or math.isnan(self.hi):
            raise ValueError(f"range {self}: an end is NaN")
        if math.isinf(self.lo) and not self.lo_open or math.isinf(self.hi) and not self.hi_open:
            raise ValueError(f"range {self}: an infinite end must be open")
        if not self.lo < self.hi and not (self.lo == self.hi and not self.lo_open and not self.hi_open):
            raise ValueError(f"range {self} is empty")

    @classmethod
    def parse(cls, text: str) -> "Range":
        """``"[0, 1]"``, ``"(0, inf)"``, ``"[1, inf)"``, ``"(0, 1]"``, ...; ValueError otherwise."""
        m = _INTERVAL_RE.match(text)
        if m is None:
            raise ValueError(f"range {text!r} is not in interval notation such as '[0, 1]' or '(0, inf)'")
        try:
            lo, hi = _number(m.group(2)), _number(m.group(3))
        except ValueError:
            raise ValueError(f"range {text!r}: an end is not a number") from None
        return cls(lo, hi, m.group(1) == "(", m.group(4) == ")")

    def __contains__(self, value: Any) -> bool:
        if not math.isfinite(value):
            return False
        above = value > self.lo if self.lo_open else value >= self.lo
        below = value < self.hi if self.hi_open else value <= self.hi
        return above and below

    def __str__(self) -> str:
        return (f"{'(' if self.lo_open else '['}{_show(self.lo)}, {_show(self.hi)}"
                f"{')' if self.hi_open else ']'}")

    def __call__(self, default_label: str) -> str:
        """The hint tyro's ``--help`` shows after the field's docstring."""
        return f"(default: {default_label}; range {self})"


def in_range(interval: str) -> Any:
    """Annotation metadata declaring a field's valid range: ``Annotated[float, in_range("[0, 1]")]``.

    It is tyro's own argument configuration with the range as its help hint, so ``--help`` shows
    the range; :func:`field_ranges` reads it back.
    """
    return tyro.conf.arg(help_behavior_hint=Range.parse(interval))


@functools.cache
def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls, include_extras=True)


def field_ranges(cls: type) -> dict[str, Range]:
    """The declared range of each field of dataclass ``cls`` that has one."""
    hints = _hints(cls)
    out: dict[str, Range] = {}
    for f in dataclasses.fields(cls):
        hint = hints[f.name]
        if typing.get_origin(hint) is Annotated:
            for meta in hint.__metadata__:
                r = getattr(meta, "help_behavior_hint", None)
                if isinstance(r, Range):
                    out[f.name] = r
    return out


def is_numeric(hint: Any) -> bool:
    """``int`` or ``float``, optionally ``| None`` or Annotated (``bool`` is not numeric)."""
    if typing.get_origin(hint) is Annotated:
        hint = typing.get_args(hint)[0]
    if typing.get_origin(hint) in (Union, types.UnionType):
        members = [a for a in typing.get_args(hint) if a is not type(None)]
    else:
        members = [hint]
    return bool(members) and all(m in (int, float) for m in members)


def numeric_fields(cls: type) -> list[str]:
    """The names of the numeric fields of dataclass ``cls``, in declaration order."""
    hints = _hints(cls)
    return [f.name for f in dataclasses.fields(cls) if is_numeric(hints[f.name])]


def check_ranges(args: Any) -> None:
    """Raise UsageError for the first field of ``args`` whose value is outside its declared range
    (``None`` passes: an optional field left unset)."""
    for name, r in field_ranges(type(args)).items():
        value = getattr(args, name)
        if value is not None and value not in r:
            raise UsageError(f"--{name} must be in {r}, got {value!r}")


def check_rule_set(env: str, rules: str) -> None:
    """Load and validate rule set ``rules`` of ``env`` (as the agent will); its error, on one line,
    becomes a UsageError naming ``--rules``."""
    from blendrl.envs import load_rule_set
    from blendrl.logic import RuleSetError

    try:
        load_rule_set(env, rules)
    except RuleSetError as e:
        message = " ".join(str(e).splitlines())
        raise UsageError(f"--rules {rules} (env {env}): {message}") from e
