"""The values given to the knobs, and the checks of each knob on its own.

A knob's value comes from its exported variable (:func:`knobs_from_env`, the defaults of
``run_full_cycle.py``'s flags) or from its flag (:func:`knob_fields`: ``NAME`` is ``--name``, with
its default and ``--help``); the launcher holds them as one :class:`KnobValues` record, typed by
the knob table (:mod:`blendrl.launch.knobs`). Checked here, knob by knob:

* a knob set but empty (:func:`empty_problems`): the shell script assigns a default only to a
  knob that is not set (``${NAME=default}``), so ``EXPERIMENT_ID=`` reaches Python empty and is
  refused instead of silently becoming the default; a list of methods that is meant to be empty
  is written ``none`` (:func:`without_none`);
* a whole number below its minimum, a text not among its choices (:func:`range_problems`).

The checks across knobs are :func:`blendrl.launch.config.build_config`'s.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Mapping

from blendrl.launch import knobs
from blendrl.launch.knobs import Knob

NONE = "none"
"""How a list of methods that may be empty says so (an empty value is refused)."""


class ConfigError(ValueError):
    """One or more bad knobs; ``problems`` lists each one as a full sentence."""

    def __init__(self, problems: list[str]):
        self.problems = list(problems)
        super().__init__("\n".join(f"  - {p}" for p in self.problems))


def _empty_problem(knob: Knob, given_as: str) -> str:
    """The refusal of ``knob`` given empty (``given_as``: how, e.g. ``"EXPERIMENT_ID is set"``)."""
    default = knob.kind.show(knob.default)
    hint = f", {NONE} for no method" if knob.none_ok else ""
    return (f"{given_as} but empty: give a value{hint}, or leave it unset for its default "
            f"({default})")


def knobs_from_env(environ: Mapping[str, str]) -> dict[str, Any]:
    """The knobs set in ``environ``, parsed, keyed by flag field name. Raises
    :class:`ConfigError` naming each variable that does not parse or is set but empty (a knob
    whose '' means something, such as ``CLUSTER_PARTITION``, excepted)."""
    values: dict[str, Any] = {}
    problems = []
    for knob in knobs.KNOBS:
        if knob.env_var not in environ:
            continue
        if not environ[knob.env_var].strip() and not knob.may_be_empty:
            problems.append(_empty_problem(knob, f"{knob.env_var} is set"))
            continue
        try:
            values[knob.field] = knob.kind.parse(environ[knob.env_var])
        except ValueError as e:
            problems.append(f"{knob.env_var}: {e}")
    if problems:
        raise ConfigError(problems)
    return values


def knob_fields() -> list[tuple[str, Any, Any]]:
    """``(field, annotated type, dataclasses.field)`` of every knob, in table order, for
    ``dataclasses.make_dataclass``: the flags of ``run_full_cycle.py`` with their help."""
    from typing import Annotated

    import tyro

    return [(k.field, Annotated[k.kind.type, tyro.conf.arg(help=_help_text(k))],
             dataclasses.field(default=k.default)) for k in knobs.KNOBS]


def _help_text(knob: Knob) -> str:
    """The ``--help`` of ``knob``'s flag: the variable, its doc and its flag note."""
    return f"{knob.env_var}: {knob.doc}" + (f"; {knob.flag_note}" if knob.flag_note else "")


def knob_values_class() -> type:
    """A frozen dataclass with one field per knob of the table (its flag's field name, its kind's
    type, its default): the launcher's record of the values given to the knobs. ``of(source)``
    takes each field from an object that has it (``run_full_cycle.py``'s ``Args``)."""

    def of(cls: type, source: Any) -> Any:
        return cls(**{f.name: getattr(source, f.name) for f in dataclasses.fields(cls)})

    cls = dataclasses.make_dataclass(
        "KnobValues", [(k.field, k.kind.type, dataclasses.field(default=k.default))
                       for k in knobs.KNOBS],
        frozen=True, namespace={"of": classmethod(of), "__doc__": "The value of each knob."})
    cls.__module__ = __name__
    return cls


KnobValues = knob_values_class()
"""The value of each knob (``values.experiment_id``, ...), one field per row of the table."""


def empty_problems(values: Any) -> list[str]:
    """One sentence per knob of ``values`` (a :class:`KnobValues`, or any object with knob
    fields) given empty ('' or no words) that may not be: ``--online_methods`` followed by no
    method, ``--experiment_id ''``."""
    return [_empty_problem(k, f"--{k.field} (the knob {k.env_var}) is given")
            for k in knobs.KNOBS if getattr(values, k.field, None) in ("", ())
            and not k.may_be_empty]


def without_none(name: str, words: tuple[str, ...], problems: list[str]) -> tuple[str, ...]:
    """The methods of a list knob ``name``: ``("none",)`` is no method; ``none`` beside methods is
    a problem (appended to ``problems``)."""
    if NONE not in words:
        return words
    if words != (NONE,):
        problems.append(f"{name}: {NONE} means no method; it cannot be listed with others "
                        f"({' '.join(words)})")
    return ()


def range_problems(values: Any) -> list[str]:
    """One sentence per knob of ``values`` (a :class:`KnobValues`, or any object with knob
    fields) below its minimum or outside its choices."""
    problems = []
    for k in knobs.KNOBS:
        if not hasattr(values, k.field):
            continue
        v = getattr(values, k.field)
        if k.minimum is not None and v is not None and int(v) < k.minimum:
            what = "a positive whole number" if k.minimum == 1 else f"a whole number >= {k.minimum}"
            problems.append(f"{k.env_var} must be {what}, got {v}")
        if k.choices and str(v) not in k.choices:
            problems.append(f"{k.env_var} {v!r} is not one of {', '.join(k.choices)}")
    return problems
