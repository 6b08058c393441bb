"""The series of an experiment: its runs grouped by (method, dataset source, env), in a fixed order,
each with its legend label and its explicit drawing style."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

from blendrl.methods import METHOD_INFO, ONLINE_METHODS
from blendrl.plotting.collect import METHOD_LABELS, RunRecord, series_label


@dataclass(frozen=True)
class Style:
    color: str
    marker: str
    linestyle: str


FALLBACK_STYLE = Style("tab:gray", "x", "-.")
"""A method or dataset source outside the method table (runs of an older or foreign version)."""


def style_of(method: str, source: str | None) -> Style:
    """The drawing style of a (method, dataset source) series, from the method table: the
    method's marker; its colour (an offline method's colour for that source); a solid line for
    an online method, the source's ``data_linestyle`` for an offline one."""
    m = METHOD_INFO.get(method)
    if m is None:
        return FALLBACK_STYLE
    if m.kind == "online":
        return Style(m.colors[0], m.marker, "-") if source is None else FALLBACK_STYLE
    if source not in ONLINE_METHODS:  # also None: an offline run of unknown data origin
        return FALLBACK_STYLE
    return Style(m.colors[ONLINE_METHODS.index(source)], m.marker,
                 METHOD_INFO[source].data_linestyle)


METHOD_ORDER = tuple(METHOD_LABELS)


@dataclass(frozen=True)
class Series:
    """The runs (seeds) of one method on one dataset source (and one env)."""

    method: str
    source_method: str | None
    """offline: the method of the online runs whose data it trains on; online: None"""
    kind: str
    env: str
    label: str
    runs: tuple[RunRecord, ...]

    @property
    def style(self) -> Style:
        return style_of(self.method, self.source_method)

    @property
    def key(self) -> str:
        """A stable text naming the series (seeds the bootstrap of its intervals)."""
        return f"{self.method}|{self.source_method}|{self.env}"


def group_series(runs: Sequence[RunRecord]) -> list[Series]:
    """Runs grouped by (method, dataset source, env): online methods first, in method order.

    The env joins the label only when the runs span several envs."""
    several_envs = len({r.env for r in runs}) > 1
    groups: dict[tuple[str, str | None, str], list[RunRecord]] = {}
    for r in runs:
        groups.setdefault((r.method, r.source_method, r.env), []).append(r)

    def order(key: tuple[str, str | None, str]) -> tuple:
        method, source, env = key
        rank = METHOD_ORDER.index(method) if method in METHOD_ORDER else len(METHOD_ORDER)
        src = METHOD_ORDER.index(source) if source in METHOD_ORDER else len(METHOD_ORDER)
        return (rank, src, env)

    out = []
    for key in sorted(groups, key=order):
        method, source, env = key
        kind = groups[key][0].kind
        label = series_label(method, source, kind) + (f" [{env}]" if several_envs else "")
        out.append(Series(method, source, kind, env, label, tuple(groups[key])))
    return out
