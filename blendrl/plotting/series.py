"""The series of an experiment: its runs grouped by (method, dataset source, env), in a fixed order,
each with its legend label and its explicit drawing style."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

from blendrl.plotting.collect import METHOD_LABELS, RunRecord, series_label


@dataclass(frozen=True)
class Style:
    color: str
    marker: str
    linestyle: str


# Explicit style of each (method, dataset source) pair: colour = method, line style = data source.
STYLES: dict[tuple[str, str | None], Style] = {
    ("ppo", None): Style("tab:blue", "o", "-"),
    ("blendrl_ppo", None): Style("tab:orange", "o", "-"),
    ("iql", "ppo"): Style("tab:green", "s", "--"),
    ("iql", "blendrl_ppo"): Style("tab:olive", "s", ":"),
    ("blendrl_iql", "ppo"): Style("tab:purple", "^", "--"),
    ("blendrl_iql", "blendrl_ppo"): Style("tab:red", "^", ":"),
}
FALLBACK_STYLE = Style("tab:gray", "x", "-.")

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
        return STYLES.get((self.method, self.source_method), FALLBACK_STYLE)

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
