"""Collecting the runs of one experiment from a runs folder (docs/FORMATS.md), tolerantly.

A run belongs to experiment EXP when its ``run.json`` says ``"exp_id": EXP`` -- never by its folder
name. Every file may be missing (a job still starting), empty or unreadable (a job killed before its
first write): such a problem becomes a warning in :attr:`Collection.warnings` and the rest of the
run is still used. Nothing here raises on bad file contents. What keeps a run's ``results.json``
from giving a valid result at every entry is kept, in words, in :attr:`RunRecord.results_problem`
(the report lists it); a folder whose ``run.json`` cannot be read is kept in
:attr:`Collection.unreadable`.

The parsed records are plain, typed values (:class:`RunRecord`, :class:`Evaluation`,
:class:`TrainingCurves`), so the drawing and table code never touches raw JSON.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from blendrl.contract import RESULTS_JSON, RUN_JSON, TIMING_JSON, TRAINING_LOG
from blendrl.file_io import load_training_log
from blendrl.methods import METHOD_TABLE, METHODS

METHOD_LABELS: dict[str, str] = {m.id: m.label for m in METHOD_TABLE}
"""Display name of each method id (from the method table, blendrl.methods)."""

BLENDRL_METHODS: frozenset[str] = frozenset(m.id for m in METHOD_TABLE if m.blendrl)
"""Methods whose policy blends a neural and a logic actor (they record logic weights)."""


@dataclass(frozen=True)
class Evaluation:
    """One entry of ``results.json``: an evaluation after ``data_limit`` environment transitions."""

    interval: int
    data_limit: int
    mean: float
    """mean episodic return (of ``returns`` when present, else the recorded ``mean_return``)"""
    std: float
    """std of ``returns`` across episodes (population std, ddof 0), else ``std_return``"""
    returns: tuple[float, ...]
    train_seconds: float | None
    eval_seconds: float | None
    logic_weight: float | None


@dataclass(frozen=True)
class TrainingCurves:
    """The parts of ``training_log.pkl`` the plots use, as parallel sequences sorted by step."""

    episode_steps: tuple[float, ...] = ()
    """global step (environment transitions) at which each training episode ended"""
    episode_returns: tuple[float, ...] = ()
    blend_steps: tuple[float, ...] = ()
    """global step of each BlendRL update that logged its blend weights"""
    logic_weight_mean: tuple[float, ...] = ()
    logic_weight_std: tuple[float, ...] = ()


@dataclass
class RunRecord:
    """Everything readable about one run folder."""

    run_id: str
    path: Path
    exp_id: str
    method: str
    kind: str
    """``online`` or ``offline``"""
    env: str
    seed: int | None
    source_method: str | None = None
    """offline runs: the method of the online run whose dataset it trains on"""
    source_run_id: str | None = None
    args: dict[str, Any] = field(default_factory=dict)
    """the script's arguments as recorded in ``run.json`` (empty when missing)"""
    evaluations: list[Evaluation] = field(default_factory=list)
    timing: dict[str, Any] | None = None
    """``timing.json`` as read (None when missing or unreadable)"""
    curves: TrainingCurves | None = None
    """``training_log.pkl`` (None when missing or unreadable)"""
    results_problem: str | None = None
    """why ``results.json`` gives no valid result, or not for every entry (``"no results.json"``,
    ``"results.json is not valid JSON ..."``, ``"results.json holds an object, not a list ..."``,
    ``"entries 1, 3 of 4 of results.json are unusable"``); None when every entry is valid"""
    partial_dataset: bool = False
    """``run.json`` says the run trained on a dataset whose writer had not finished (a key of
    :data:`PARTIAL_KEYS` set to true)"""

    @property
    def is_blendrl(self) -> bool:
        return self.method in BLENDRL_METHODS


@dataclass
class Collection:
    """The runs of one experiment, the experiment ids seen in the folder, and every warning."""

    runs_dir: Path
    exp_id: str
    runs: list[RunRecord] = field(default_factory=list)
    found_exp_ids: set[str] = field(default_factory=set)
    warnings: list[str] = field(default_factory=list)
    unreadable: dict[str, str] = field(default_factory=dict)
    """folder name -> why its ``run.json`` is unusable (it may be a run of this experiment)"""


def series_label(method: str, source_method: str | None, kind: str) -> str:
    """The legend label of a method: ``"PPO (online)"``, ``"IQL on BlendRL-PPO data"``."""
    name = METHOD_LABELS.get(method, method)
    if kind == "online":
        return f"{name} (online)"
    if source_method is None:
        return f"{name} on data of unknown origin"
    return f"{name} on {METHOD_LABELS.get(source_method, source_method)} data"


def seed_name(seed: int | None) -> str:
    """``"seed 3"``, or ``"seed ?"`` for a run that recorded no seed."""
    return "seed ?" if seed is None else f"seed {seed}"


# --------------------------------------------------------------------------- small validators

def _number(value: Any) -> float | None:
    """A real number (bools excluded) as float, else None."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value)


def _finite(value: Any) -> float | None:
    x = _number(value)
    return x if x is not None and math.isfinite(x) else None


def whole_number(value: Any) -> int | None:
    """A finite integral number (bools excluded) as int, else None."""
    x = _number(value)
    return int(x) if x is not None and math.isfinite(x) and x == int(x) else None


MISSING = "missing"
"""The problem :func:`load_json` gives for a file that does not exist."""


def load_json(path: Path) -> tuple[Any, str | None]:
    """``(value, None)``; ``(None, MISSING)`` when there is no file; ``(None, why)`` when it
    cannot be read or parsed (a truncated file: "not valid JSON ...")."""
    if not path.is_file():
        return None, MISSING
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f), None
    except json.JSONDecodeError as e:
        return None, f"not valid JSON, truncated or corrupt ({e})"
    except UnicodeDecodeError as e:
        return None, f"not UTF-8 text ({e})"
    except (OSError, RecursionError, ValueError) as e:  # ValueError: e.g. a huge integer literal
        return None, f"unreadable ({e})"


def _read_json(path: Path, warnings: list[str]) -> tuple[bool, Any]:
    """``(True, value)``; ``(False, None)`` when missing (silently) or unreadable (with a warning)."""
    data, problem = load_json(path)
    if problem is None:
        return True, data
    if problem != MISSING:
        warnings.append(f"{path}: unreadable JSON ({problem}); ignoring this file")
    return False, None


# --------------------------------------------------------------------------- the three files

def _parse_evaluation(entry: Any, where: str, warnings: list[str]) -> Evaluation | None:
    """One ``results.json`` entry, or None (with a warning naming ``where``) when unusable."""
    if not isinstance(entry, dict):
        warnings.append(f"{where}: not an object; skipped")
        return None
    data_limit = whole_number(entry.get("data_limit"))
    if data_limit is None or data_limit < 0:
        warnings.append(f"{where}: no valid data_limit ({entry.get('data_limit')!r}); skipped")
        return None
    raw_returns = entry.get("returns")
    returns: tuple[float, ...] = ()
    if isinstance(raw_returns, list) and raw_returns:
        values = [_finite(r) for r in raw_returns]
        if any(v is None for v in values):
            warnings.append(f"{where}: 'returns' holds a non-number; using mean_return/std_return")
        else:
            returns = tuple(v for v in values if v is not None)
    if returns:
        mean = sum(returns) / len(returns)
        std = math.sqrt(sum((r - mean) ** 2 for r in returns) / len(returns))
        if not (math.isfinite(mean) and math.isfinite(std)):
            warnings.append(f"{where}: 'returns' too large to average; skipped")
            return None
    else:
        mean_v, std_v = _finite(entry.get("mean_return")), _finite(entry.get("std_return"))
        if mean_v is None:
            warnings.append(f"{where}: neither 'returns' nor 'mean_return'; skipped")
            return None
        mean, std = mean_v, (std_v if std_v is not None else 0.0)
    interval = whole_number(entry.get("interval"))
    return Evaluation(interval=interval if interval is not None else 0, data_limit=data_limit,
                      mean=mean, std=std, returns=returns,
                      train_seconds=_finite(entry.get("train_seconds")),
                      eval_seconds=_finite(entry.get("eval_seconds")),
                      logic_weight=_finite(entry.get("logic_weight")))


def _json_kind(value: Any) -> str:
    """How JSON calls the type of ``value`` ("an object", "a string", ...)."""
    kinds = {dict: "an object", list: "a list", str: "a string", bool: "a boolean",
             type(None): "null", int: "a number", float: "a number"}
    return kinds.get(type(value), type(value).__name__)


def _entry_numbers(indices: list[int]) -> str:
    """0-based entry indices as the 1-based numbers a person counts (``"1, 3"``)."""
    return ", ".join(str(i + 1) for i in indices)


def _read_results(path: Path, warnings: list[str]) -> tuple[list[Evaluation], str | None]:
    """``results.json``: each usable entry in file order, and what keeps it from being a valid
    result at every entry (None when nothing does; see :attr:`RunRecord.results_problem`)."""
    data, problem = load_json(path)
    if problem == MISSING:
        return [], "no results.json"
    if problem is not None:
        warnings.append(f"{path}: unreadable JSON ({problem}); ignoring this file")
        return [], f"results.json is {problem}"
    if not isinstance(data, list):
        warnings.append(f"{path}: expected a JSON list, found {type(data).__name__}; ignoring it")
        return [], f"results.json holds {_json_kind(data)}, not a list of evaluations"
    parsed = [_parse_evaluation(e, f"{path} entry {i}", warnings) for i, e in enumerate(data)]
    bad = [i for i, e in enumerate(parsed) if e is None]
    why = (f"entr{'y' if len(bad) == 1 else 'ies'} {_entry_numbers(bad)} of {len(data)} of "
           "results.json unusable (see the warnings)") if bad else None
    return [e for e in parsed if e is not None], why


def _pairs(log: dict, x_key: str, y_keys: tuple[str, ...], where: str,
           warnings: list[str]) -> list[tuple[float, ...]]:
    """Parallel numeric lists of ``log`` as rows ``(x, *ys)`` sorted by x (stable)."""
    columns = []
    for key in (x_key, *y_keys):
        col = log.get(key, [])
        if not isinstance(col, list):
            warnings.append(f"{where}: '{key}' is not a list; ignoring those entries")
            return []
        columns.append(col)
    n = min(len(c) for c in columns)
    if any(len(c) != n for c in columns):
        warnings.append(f"{where}: {', '.join(repr(k) for k in (x_key, *y_keys))} have different "
                        f"lengths; using the first {n} entries")
    rows = []
    for i in range(n):
        row = tuple(_finite(c[i]) for c in columns)
        if all(v is not None for v in row):
            rows.append(row)
    if len(rows) < n:
        warnings.append(f"{where}: {n - len(rows)} entries of {x_key!r} hold non-numbers; skipped")
    rows.sort(key=lambda r: r[0])
    return rows


def _parse_training_log(log: dict, where: str, warnings: list[str]) -> TrainingCurves:
    """The episode and blend curves of a loaded training log (bad parts skipped with a warning)."""
    episodes = _pairs(log, "episode_end_steps", ("episode_returns",), where, warnings)
    blend_entries = log.get("blend", [])
    blend_rows: list[tuple[float, float, float]] = []
    if not isinstance(blend_entries, list):
        warnings.append(f"{where}: 'blend' is not a list; ignoring it")
        blend_entries = []
    for i, b in enumerate(blend_entries):
        step = _finite(b.get("global_step")) if isinstance(b, dict) else None
        mean = _finite(b.get("logic_weight_mean")) if isinstance(b, dict) else None
        if step is None or mean is None:
            warnings.append(f"{where}: blend entry {i} lacks global_step/logic_weight_mean; skipped")
            continue
        std = _finite(b.get("logic_weight_std"))
        blend_rows.append((step, mean, std if std is not None else 0.0))
    blend_rows.sort(key=lambda r: r[0])
    return TrainingCurves(
        episode_steps=tuple(r[0] for r in episodes), episode_returns=tuple(r[1] for r in episodes),
        blend_steps=tuple(r[0] for r in blend_rows), logic_weight_mean=tuple(r[1] for r in blend_rows),
        logic_weight_std=tuple(r[2] for r in blend_rows))


def _read_training_curves(path: Path, warnings: list[str]) -> TrainingCurves | None:
    """``training_log.pkl`` through the restricted loader; None when missing or unreadable."""
    if not path.is_file():
        return None
    try:
        log = load_training_log(path)
    except (OSError, ValueError) as e:  # FileFormatError is a ValueError
        warnings.append(f"{path}: unreadable training log ({e}); ignoring it")
        return None
    return _parse_training_log(log, str(path), warnings)


def _read_timing(path: Path, warnings: list[str]) -> dict[str, Any] | None:
    ok, data = _read_json(path, warnings)
    if not ok:
        return None
    if not isinstance(data, dict):
        warnings.append(f"{path}: expected a JSON object, found {type(data).__name__}; ignoring it")
        return None
    return data


# --------------------------------------------------------------------------- the folder

PARTIAL_KEYS = ("partial_dataset", "dataset_partial", "partial")
"""Keys of ``run.json`` (or of its ``dataset_source``) by which an offline run says it trained on
a dataset whose writer had not finished."""


def _says_partial(meta: dict) -> bool:
    """``run.json`` (or its ``dataset_source``) sets a :data:`PARTIAL_KEYS` key to true, or to a
    non-empty object describing the partial dataset."""
    source = meta.get("dataset_source")
    for where in (meta, source if isinstance(source, dict) else {}):
        for key in PARTIAL_KEYS:
            value = where.get(key)
            if value is True or (isinstance(value, dict) and value):
                return True
    return False


def _run_from_json(folder: Path, meta: dict, warnings: list[str]) -> RunRecord | None:
    """The identity part of a run from its ``run.json``; None (warned) when unusable."""
    method = meta.get("method")
    if method not in METHODS:
        warnings.append(f"{folder / 'run.json'}: unknown method {method!r} (known: "
                        f"{', '.join(METHODS)}); skipping this run")
        return None
    seed = whole_number(meta.get("seed"))
    source = meta.get("dataset_source")
    source_method = source_run = None
    if METHODS[method] == "offline":
        if isinstance(source, dict) and source.get("method") in METHODS:
            source_method = source["method"]
            source_run = source.get("run_id") if isinstance(source.get("run_id"), str) else None
        else:
            warnings.append(f"{folder / 'run.json'}: offline run without dataset_source.method; "
                            "labelled as data of unknown origin")
    run_id = meta.get("run_id") if isinstance(meta.get("run_id"), str) else folder.name
    env = meta.get("env") if isinstance(meta.get("env"), str) else "unknown env"
    args = meta.get("args") if isinstance(meta.get("args"), dict) else {}
    return RunRecord(run_id=run_id, path=folder, exp_id=meta["exp_id"], method=method,
                     kind=METHODS[method], env=env, seed=seed, source_method=source_method,
                     source_run_id=source_run, args=args, partial_dataset=_says_partial(meta))


def _read_run_files(run: RunRecord, warnings: list[str]) -> None:
    """Fill ``run`` from the files of its folder beside ``run.json``."""
    folder = run.path
    run.evaluations, run.results_problem = _read_results(folder / RESULTS_JSON, warnings)
    run.timing = _read_timing(folder / TIMING_JSON, warnings)
    run.curves = _read_training_curves(folder / TRAINING_LOG, warnings)


def _experiment_of(folder: Path, col: Collection) -> dict | None:
    """The ``run.json`` of ``folder`` when it names an experiment (recorded in ``col``), else None
    (warned; an unreadable one is kept in :attr:`Collection.unreadable`)."""
    meta, problem = load_json(folder / RUN_JSON)
    if problem == MISSING:
        col.warnings.append(f"{folder}: no run.json (not a run, or not started); skipped")
        return None
    if problem is not None:
        col.warnings.append(f"{folder / RUN_JSON}: unreadable JSON ({problem}); ignoring this file")
        col.unreadable[folder.name] = f"its run.json is {problem}"
        return None
    if not isinstance(meta, dict) or not isinstance(meta.get("exp_id"), str):
        col.warnings.append(f"{folder / 'run.json'}: no exp_id; skipping this folder")
        col.unreadable[folder.name] = "its run.json names no experiment (no exp_id)"
        return None
    col.found_exp_ids.add(meta["exp_id"])
    return meta


def collect_runs(runs_dir: Path, exp_id: str) -> Collection:
    """Every run under ``runs_dir`` whose ``run.json`` names ``exp_id``, sorted by run id.

    ``runs_dir`` must be an existing folder (checked by the caller)."""
    col = Collection(runs_dir=Path(runs_dir), exp_id=exp_id)
    for folder in sorted(p for p in Path(runs_dir).iterdir() if p.is_dir()):
        meta = _experiment_of(folder, col)
        if meta is None or meta["exp_id"] != exp_id:
            continue
        run = _run_from_json(folder, meta, col.warnings)
        if run is None:
            col.unreadable[folder.name] = f"its run.json names an unknown method {meta.get('method')!r}"
            continue
        _read_run_files(run, col.warnings)
        col.runs.append(run)
    col.runs.sort(key=lambda r: r.run_id)
    return col
