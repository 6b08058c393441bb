"""What one run lacks: the planned marks at which it has no valid evaluation, and why -- one line
of the report's "What is missing" each.

How many marks a run plans: an online run the ``intervals`` of its ``run.json`` args; an offline
run those of its online partner (its data limits are that run's evaluation marks). At least the
marks any run of its series, or its online partner, evaluated. Why: what was wrong with its
``results.json`` (:attr:`RunRecord.results_problem`), a partial dataset
(:attr:`RunRecord.partial_dataset`), and whether the run finished (``timing.json``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

from blendrl.plotting.collect import Evaluation, RunRecord, seed_name, whole_number

PARTIAL_DATASET_REASON = ("trained on a partial dataset: its writer had not finished "
                          "(run.json says so)")


def latest_by_mark(evaluations: Sequence[Evaluation]) -> dict[int, Evaluation]:
    """Each mark's last evaluation (a rerun after a resume replaces an earlier one)."""
    return {e.data_limit: e for e in evaluations}


def planned_count(run: RunRecord, partner: RunRecord | None) -> int | None:
    """How many evaluations ``run`` plans (module docstring); None when not recorded."""
    source = run if run.kind == "online" else partner
    if source is None:
        return None
    n = whole_number(source.args.get("intervals"))
    return n if n is not None and n >= 1 else None


def unfinished(run: RunRecord) -> str:
    """`` (unfinished: ...)`` / `` (no timing.json: ...)`` for a run that did not finish, else ``""``."""
    if run.timing is None:
        return " (no timing.json: not started or killed early)"
    return "" if run.timing.get("finished") is True else " (unfinished: still running or stopped)"


def run_reasons(run: RunRecord) -> list[str]:
    """What is wrong with the run's own files, in words (empty when nothing is)."""
    reasons = [run.results_problem] if run.results_problem else []
    if run.partial_dataset:
        reasons.append(PARTIAL_DATASET_REASON)
    return reasons


def _marks_text(lacking: Sequence[int], unknown: int) -> str:
    """The marks a run lacks: their x where a run of the series (or its partner) recorded it."""
    known = ", ".join(str(m) for m in lacking)
    if not unknown:
        return known
    if not known:
        return "no run has recorded their x"
    return f"{known}, and {unknown} whose x no run has recorded"


@dataclass(frozen=True)
class RunGap:
    """The planned marks of one run without a valid evaluation there, and why."""

    label: str
    """the series' label"""
    run: RunRecord
    total: int
    """marks planned (0: not known)"""
    have: int
    """planned marks with a valid evaluation"""
    lacking: tuple[int, ...]
    """the marks (x known) without a valid evaluation"""
    reasons: tuple[str, ...]

    @property
    def missing(self) -> int:
        return self.total - self.have

    @property
    def line(self) -> str:
        who = f"{self.label}: {seed_name(self.run.seed)} ({self.run.run_id})"
        why = "".join(f" ({r})" for r in self.reasons)
        if self.missing > 0:
            marks = _marks_text(self.lacking, self.missing - len(self.lacking))
            return (f"{who} has no evaluation at {self.missing} of {self.total} marks ({marks})"
                    f"{why}{unfinished(self.run)}")
        if self.have == 0:
            return f"{who} has no valid evaluation (how many marks it plans is not recorded){why}" \
                   f"{unfinished(self.run)}"
        return f"{who} has a valid evaluation at every planned mark, but: {'; '.join(self.reasons)}"


def run_gap(label: str, run: RunRecord, expected_marks: set[int],
            partner: RunRecord | None) -> RunGap | None:
    """What ``run`` lacks of ``expected_marks`` (the marks its series and partner evaluated) and
    of its planned count; None when it lacks nothing and nothing is wrong with its files."""
    have = set(latest_by_mark(run.evaluations))
    total = max(len(expected_marks | have), planned_count(run, partner) or 0)
    gap = RunGap(label, run, total, len(have), tuple(sorted(expected_marks - have)),
                 tuple(run_reasons(run)))
    if gap.missing > 0 or gap.reasons or gap.have == 0:
        return gap
    return None
