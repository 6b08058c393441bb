"""``summary.csv`` and ``paired_differences.csv`` (docs/FORMATS.md): one row per series (or
offline series) and mark. Numbers at full precision; an unknown value is an empty cell."""

from __future__ import annotations

import csv
import io
import math

from blendrl.plotting.summary import ExperimentSummary

SUMMARY_COLUMNS = ("method", "online_source", "env", "mark", "seeds", "seed_ids", "episodes",
                   "estimate", "ci_low", "ci_high", "ci_over", "iqm", "iqm_ci_low", "iqm_ci_high",
                   "confidence", "label")
DIFFERENCE_COLUMNS = ("method", "online_source", "env", "mark", "seeds", "seed_ids", "episodes",
                      "difference", "ci_low", "ci_high", "ci_over", "verdict", "offline_estimate",
                      "online_estimate", "confidence", "label")


def _num(x: float | None) -> str:
    return "" if x is None or math.isnan(x) else repr(float(x))


def _seed_ids(seeds) -> str:
    return " ".join("?" if s is None else str(s) for s in seeds)


def _write(columns, rows) -> str:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(columns)
    w.writerows(rows)
    return buf.getvalue()


def summary_csv(summary: ExperimentSummary) -> str:
    """One row per series and mark: the estimate across seeds (one seed: across episodes)."""
    conf = repr(float(summary.settings.confidence))
    rows = []
    for ss in summary.series:
        s = ss.series
        for m in ss.marks:
            iqm = m.iqm
            rows.append([s.method, s.source_method or "", s.env, m.mark, len(m.seeds),
                         _seed_ids(m.seeds), m.episodes, _num(m.estimate), _num(m.ci_low),
                         _num(m.ci_high), m.ci_over, _num(iqm.estimate if iqm else None),
                         _num(iqm.low if iqm else None), _num(iqm.high if iqm else None), conf,
                         s.label])
    return _write(SUMMARY_COLUMNS, rows)


def differences_csv(summary: ExperimentSummary) -> str:
    """One row per offline series and mark: offline - online with its paired CI."""
    conf = repr(float(summary.settings.confidence))
    rows = []
    for p in summary.pairs:
        s = p.offline
        for d in p.marks:
            rows.append([s.method, s.source_method or "", s.env, d.mark, len(d.seeds),
                         _seed_ids(d.seeds), d.episodes, _num(d.difference), _num(d.ci_low),
                         _num(d.ci_high), d.ci_over, d.verdict, _num(d.offline), _num(d.online),
                         conf, f"{s.label} - {p.online_label}"])
    return _write(DIFFERENCE_COLUMNS, rows)
