"""Where the time went: per run, the training and evaluation seconds of each interval
(``results.json``), their sums, and the end-to-end wall time (``timing.json``).

Written as ``timing.csv`` (long format: one row per interval, then one ``total`` row per run) and
``timing.md`` (a summary table and a per-interval table), the latter also printed.
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from typing import Sequence

from blendrl.plotting.collect import RunRecord

CSV_COLUMNS = ("run_id", "method", "kind", "seed", "interval", "data_limit", "train_seconds",
               "eval_seconds", "wall_seconds", "status")


@dataclass(frozen=True)
class IntervalTime:
    interval: int
    data_limit: int
    train_seconds: float | None
    eval_seconds: float | None


@dataclass(frozen=True)
class RunTiming:
    run_id: str
    method: str
    kind: str
    seed: int | None
    intervals: tuple[IntervalTime, ...]
    wall_seconds: float | None
    """end-to-end wall time of the run (``timing.json``; None when missing)"""
    status: str
    """``finished``, ``unfinished`` (still running, or stopped) or ``no timing.json``"""

    @property
    def train_seconds(self) -> float:
        """Sum of the per-interval training seconds (missing values count as 0)."""
        return sum(i.train_seconds or 0.0 for i in self.intervals)

    @property
    def eval_seconds(self) -> float:
        return sum(i.eval_seconds or 0.0 for i in self.intervals)


def run_timings(runs: Sequence[RunRecord]) -> list[RunTiming]:
    """One :class:`RunTiming` per run, in the order given."""
    out = []
    for r in runs:
        wall = status = None
        if r.timing is None:
            status = "no timing.json"
        else:
            w = r.timing.get("wall_seconds")
            wall = float(w) if isinstance(w, (int, float)) and not isinstance(w, bool) else None
            status = "finished" if r.timing.get("finished") is True else "unfinished"
        intervals = tuple(IntervalTime(e.interval, e.data_limit, e.train_seconds, e.eval_seconds)
                          for e in r.evaluations)
        out.append(RunTiming(r.run_id, r.method, r.kind, r.seed, intervals, wall, status))
    return out


def _num(x: float | None) -> str:
    return "" if x is None else repr(float(x))


def timing_csv(timings: Sequence[RunTiming]) -> str:
    """The CSV text: per run, one row per interval, then a ``total`` row with the sums and the
    wall time (empty cells where a value is unknown)."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(CSV_COLUMNS)
    for t in timings:
        seed = "" if t.seed is None else t.seed
        for i in t.intervals:
            w.writerow([t.run_id, t.method, t.kind, seed, i.interval, i.data_limit,
                        _num(i.train_seconds), _num(i.eval_seconds), "", ""])
        w.writerow([t.run_id, t.method, t.kind, seed, "total", "", _num(t.train_seconds),
                    _num(t.eval_seconds), _num(t.wall_seconds), t.status])
    return buf.getvalue()


def _cell(x: float | None) -> str:
    return "–" if x is None else f"{x:.2f}"


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[str]],
                   right: Sequence[bool]) -> list[str]:
    """A Markdown table with padded columns (readable as plain text too); ``right[c]`` aligns
    column c to the right."""
    widths = [max(len(h), *(len(r[c]) for r in rows)) if rows else len(h)
              for c, h in enumerate(header)]

    def line(cells: Sequence[str]) -> str:
        return "| " + " | ".join(c.rjust(w) if r else c.ljust(w)
                                 for c, w, r in zip(cells, widths, right)) + " |"

    rule = "|" + "|".join(("-" * (w + 1) + ":") if r else ("-" * (w + 2))
                          for w, r in zip(widths, right)) + "|"
    return [line(header), rule, *(line(r) for r in rows)]


TIMING_NOTE = ("Seconds. train/eval: sums over the evaluated intervals (results.json); "
               "wall: end-to-end wall time of the run (timing.json).")


def timing_summary_table(timings: Sequence[RunTiming]) -> list[str]:
    """The per-run lines of the timing summary (a Markdown table)."""
    summary = [[t.run_id, t.method, "" if t.seed is None else str(t.seed), str(len(t.intervals)),
                f"{t.train_seconds:.2f}", f"{t.eval_seconds:.2f}", _cell(t.wall_seconds), t.status]
               for t in timings]
    return markdown_table(("run", "method", "seed", "intervals", "train s", "eval s", "wall s",
                           "status"), summary, (False, False, True, True, True, True, True, False))


def timing_markdown(exp_id: str, timings: Sequence[RunTiming]) -> str:
    """The Markdown text: a summary per run, then the seconds of every interval."""
    out = [f"# Timing of experiment {exp_id}", "", TIMING_NOTE, ""]
    out += timing_summary_table(timings)
    detail = [[t.run_id, str(i.interval), str(i.data_limit), _cell(i.train_seconds),
               _cell(i.eval_seconds)] for t in timings for i in t.intervals]
    out += ["", "## Per interval", ""]
    if detail:
        out += markdown_table(("run", "interval", "transitions", "train s", "eval s"), detail,
                              (False, True, True, True, True))
    else:
        out.append("No interval evaluated yet.")
    return "\n".join(out) + "\n"
