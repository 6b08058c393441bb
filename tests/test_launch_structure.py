"""The launcher's shape (issue 30), read from its source with :mod:`ast`, and the checklist "A knob"
of docs/extending.md tried with a toy knob.

* No function of ``blendrl/launch/`` is longer than :data:`MAX_FUNCTION_LINES` lines.
* No module of ``blendrl/launch/`` has more than :data:`MAX_PUBLIC_NAMES` public names.

  A *public name* of a module is a name bound by a statement at the module's top level (directly,
  or inside a top-level ``if`` / ``try`` / ``with`` / ``for`` block): ``def``, ``class``, an
  assignment (``=``, annotated or augmented), or a ``for`` / ``with`` target, whose name does not
  start with an underscore. Methods, nested functions and names bound inside functions are not
  module names. Imports are not counted: a name belongs to the module that defines it, and
  :func:`test_launcher_names_are_imported_from_the_module_that_defines_them` makes every importer
  take it from there (no re-exports). A declarative table counts as one declaration: the names
  of each table in :data:`TABLES` (the table and the vocabulary its rows are written with) count
  once together.
"""

from __future__ import annotations

import ast
import contextlib
import dataclasses
import importlib.util
import io
import sys
import types
from pathlib import Path

import pytest

from blendrl.envs import ENV_NAMES
from blendrl.launch import flags, knob_values, knobs
from blendrl.launch.config import LaunchConfig, build_config
from blendrl.launch.knob_values import ConfigError, knobs_from_env, range_problems
from blendrl.launch.knobs import EXPERIMENT, INT, ONLINE, PASS, Knob
from blendrl.launch.request import LaunchRequest
from blendrl.launch.resume import recorded_knobs

ROOT = Path(__file__).resolve().parents[1]
LAUNCH = ROOT / "blendrl" / "launch"
MAX_FUNCTION_LINES = 60
MAX_PUBLIC_NAMES = 15

TABLES: dict[str, dict[str, set[str]]] = {
    "knobs": {"KNOBS": {"KNOBS", "TEXT", "INT", "BOOL", "WORDS", "INTS", "OPT_INT",
                        "EXPERIMENT", "WHERE", "SLURM", "PASS", "CONTINUE"}},
    "flags": {"JOB_FLAGS": {"JOB_FLAGS"}},
    "outcomes": {"EXPLAINED": {"EXPLAINED"}},
    "script_args": {"CHECKS": {"CHECKS"}},
    "slurm_checks": {"PENDING_REASONS": {"PENDING_REASONS"}},
}
"""Per module, each declarative table and the names it is declared with (its rows' kinds and
sections included): they count as one public name."""


def launch_modules() -> list[Path]:
    return sorted(LAUNCH.glob("*.py"))


def _targets(node: ast.AST) -> list[str]:
    return [n.id for n in ast.walk(node) if isinstance(n, ast.Name)]


def defined_names(body: list[ast.stmt]) -> list[str]:
    """Every name bound at the top level of a module's ``body`` (see the module docstring),
    imports aside, in order."""
    names: list[str] = []
    for node in body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.append(node.name)
        elif isinstance(node, ast.Assign):
            names += [n for t in node.targets for n in _targets(t)]
        elif isinstance(node, (ast.AnnAssign, ast.AugAssign)):
            names += _targets(node.target)
        elif isinstance(node, (ast.For, ast.AsyncFor)):
            names += _targets(node.target) + defined_names(node.body + node.orelse)
        elif isinstance(node, (ast.With, ast.AsyncWith)):
            names += [n for item in node.items if item.optional_vars is not None
                      for n in _targets(item.optional_vars)] + defined_names(node.body)
        elif isinstance(node, ast.If):
            names += defined_names(node.body + node.orelse)
        elif isinstance(node, ast.Try):
            names += defined_names(node.body + [s for h in node.handlers for s in h.body]
                                   + node.orelse + node.finalbody)
    return names


def _module_names(path: Path) -> list[str]:
    return defined_names(ast.parse(path.read_text()).body)


def public_names(path: Path) -> list[str]:
    """The public names of a module, a declarative table's names counted once (as the table)."""
    names = [n for n in dict.fromkeys(_module_names(path)) if not n.startswith("_")]
    tables = TABLES.get(path.stem, {})
    in_tables = set().union(*tables.values()) if tables else set()
    return [n for n in names if n not in in_tables] + sorted(t for t in tables if t in names)


def long_functions(path: Path) -> list[str]:
    """``module.function: N lines`` of each function (methods and nested ones included) longer
    than the limit, counted from its ``def`` line to its last line (docstring included)."""
    tree = ast.parse(path.read_text())
    return [f"{path.stem}.{node.name}: {node.end_lineno - node.lineno + 1} lines"
            for node in ast.walk(tree) if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))
            and node.end_lineno - node.lineno + 1 > MAX_FUNCTION_LINES]


def test_no_function_of_the_launcher_is_longer_than_the_limit():
    assert [f for path in launch_modules() for f in long_functions(path)] == []


def test_no_module_of_the_launcher_has_more_public_names_than_the_limit():
    counts = {path.stem: public_names(path) for path in launch_modules()}
    assert {m: f"{len(n)}: {', '.join(n)}" for m, n in counts.items()
            if len(n) > MAX_PUBLIC_NAMES} == {}


def test_the_tables_exempted_by_name_exist():
    for module, tables in TABLES.items():
        defined = set(_module_names(LAUNCH / f"{module}.py"))
        for table, names in tables.items():
            assert table in names and names <= defined, (module, table, names - defined)


def test_the_counts_follow_the_definition(tmp_path):
    probe = tmp_path / "knobs.py"  # a module of that name: its table counts once
    probe.write_text("import os\nfrom x import y as z\nA = 1\n_B = 2\nC: int = 3\n"
                     "D, (E, F) = 1, (2, 3)\ndef f():\n    G = 1\nclass H:\n    I = 1\nif os:\n    J = 1\nelse:\n"
                     "    def k(): pass\ntry:\n    L = 1\nexcept ImportError:\n    M = 1\n"
                     "KNOBS = ()\nTEXT = INT = None\n")
    assert public_names(probe) == ["A", "C", "D", "E", "F", "f", "H", "J", "k", "L", "M", "KNOBS"]
    probe.write_text("def f():\n" + "    pass\n" * (MAX_FUNCTION_LINES - 1)
                     + "def g():\n" + "    pass\n" * MAX_FUNCTION_LINES)
    assert long_functions(probe) == [f"knobs.g: {MAX_FUNCTION_LINES + 1} lines"]


# --------------------------------------------------------------------------- no re-exports

def _importers() -> list[Path]:
    """The project's Python files: the package, the entry scripts, the tests, bench/, scripts/."""
    return sorted([*ROOT.glob("*.py"), *(p for d in ("blendrl", "tests", "bench", "scripts")
                                         for p in (ROOT / d).rglob("*.py"))])


def _launch_module(name: str) -> Path | None:
    if not name.startswith("blendrl.launch."):
        return None
    path = LAUNCH / (name.split(".", 2)[2].replace(".", "/") + ".py")
    return path if path.is_file() else None


def test_launcher_names_are_imported_from_the_module_that_defines_them():
    """``from blendrl.launch.M import N`` and ``M.N`` (``M`` imported as a module) name only what
    ``M`` defines, so that the public names counted above are all of a module's API."""
    defined: dict[Path, set[str]] = {}

    def defines(module: Path, name: str) -> bool:
        if module not in defined:
            defined[module] = set(_module_names(module))
        return name in defined[module]

    wrong = []
    for path in _importers():
        try:
            tree = ast.parse(path.read_text())
        except (SyntaxError, UnicodeDecodeError):
            continue
        aliases: dict[str, Path] = {}
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.module and not node.level:
                for a in node.names:
                    sub = _launch_module(f"{node.module}.{a.name}")
                    if node.module == "blendrl.launch" and sub is not None:
                        aliases[a.asname or a.name] = sub
                    elif (module := _launch_module(node.module)) and not defines(module, a.name):
                        wrong.append(f"{path.relative_to(ROOT)}: {node.module} does not define "
                                     f"{a.name}")
            elif isinstance(node, ast.Import):
                for a in node.names:
                    if a.asname and (module := _launch_module(a.name)):
                        aliases[a.asname] = module
        for node in ast.walk(tree):
            if not (isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name)):
                continue
            module = aliases.get(node.value.id)
            if module is not None and not defines(module, node.attr):
                wrong.append(f"{path.relative_to(ROOT)}:{node.lineno}: "
                             f"{module.stem}.{node.attr} is not defined there")
    assert wrong == []


# --------------------------------------------------------------------------- the knob table

def test_every_knob_that_reaches_the_configuration_names_a_field_of_it():
    """A knob with a training-script flag, a pass-through knob and a recorded one are read from
    :class:`LaunchConfig` (``config=``): docs/extending.md, "A knob", step 3."""
    assert config_problems() == []


def config_problems() -> list[str]:
    fields = {f.name for f in dataclasses.fields(LaunchConfig)}
    problems = []
    for k in knobs.KNOBS:
        needs = k.flag is not None or k.recorded or k.section == PASS
        if needs and k.config is None:
            problems.append(f"{k.env_var} has no config=")
        elif k.config is not None and k.config not in fields:
            problems.append(f"{k.env_var}: LaunchConfig has no field {k.config}")
    return problems


TOY = Knob("TOY_KNOB", INT, 3, "a toy knob of the tests", EXPERIMENT, config="toy",
           flag="toy_flag", scripts=(ONLINE,), recorded=True, minimum=1)


@pytest.fixture
def toy_table(monkeypatch):
    """The knob table with :data:`TOY` added as docs/extending.md says (step 1): a row beside the
    rows of its section, and the values' record made again from the table (what importing the
    launcher does with the table of the source)."""
    rows = list(knobs.KNOBS)
    last = max(i for i, k in enumerate(rows) if k.section == TOY.section)
    table = tuple(rows[:last + 1] + [TOY] + rows[last + 1:])
    monkeypatch.setattr(knobs, "KNOBS", table)
    monkeypatch.setattr(knobs, "KNOB_BY_VAR", {k.env_var: k for k in table})
    monkeypatch.setattr(knob_values, "KnobValues", knob_values.knob_values_class())
    return table


def _fresh_run_full_cycle(monkeypatch) -> types.ModuleType:
    """``run_full_cycle.py`` imported again (its ``Args`` made from the table as it is now)."""
    spec = importlib.util.spec_from_file_location("toy_run_full_cycle", ROOT / "run_full_cycle.py")
    module = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, spec.name, module)  # tyro reads the fields' docstrings
    spec.loader.exec_module(module)
    return module


def test_a_toy_knob_added_as_the_checklist_says_reaches_every_derived_piece(toy_table, tmp_path,
                                                                             monkeypatch):
    # step 2: the knob block of run_full_cycle.sh, in its section, and exported
    block = knobs.sh_block()
    assert block.count(f"# {'-' * 64} {EXPERIMENT}") == 1
    experiment = block.split(f" {EXPERIMENT}\n", 1)[1].split("\n\n", 1)[0]
    assert ': "${TOY_KNOB=3}"' in experiment and "# a toy knob of the tests" in experiment
    assert " TOY_KNOB" in block.split("export", 1)[1]
    # the flag of run_full_cycle.py, its default and --help, typed through to the launcher
    rfc = _fresh_run_full_cycle(monkeypatch)
    args_cls, parse = rfc.Args, rfc.parse_cli
    assert args_cls().toy_knob == 3
    args = parse(args_cls, args=["--toy_knob", "5"])
    assert args.toy_knob == 5 and LaunchRequest.of(args).knobs.toy_knob == 5
    help_text = io.StringIO()
    with contextlib.redirect_stdout(help_text), pytest.raises(SystemExit):
        parse(args_cls, args=["--help"])
    assert "TOY_KNOB: a toy knob of the tests" in " ".join(help_text.getvalue().split())
    # its variable, parsed (and refused set empty or not a number)
    assert knobs_from_env({"TOY_KNOB": " 7 "}) == {"toy_knob": 7}
    for text, problem in (("", "TOY_KNOB is set but empty"), ("x", "TOY_KNOB: expected a whole")):
        with pytest.raises(ConfigError, match=problem):
            knobs_from_env({"TOY_KNOB": text})
    # its range check, in build_config too
    assert range_problems(knob_values.KnobValues(toy_knob=0)) == [
        "TOY_KNOB must be a positive whole number, got 0"]
    request = LaunchRequest.of(dataclasses.replace(args, toy_knob=0, work_dir=str(tmp_path)))
    with pytest.raises(ConfigError, match="TOY_KNOB must be a positive whole number"):
        build_config(request, project_root=ROOT, cwd=tmp_path, env_names=ENV_NAMES, python="py")
    # the training scripts' flag, managed, and recorded for --resume -- once the configuration
    # holds its value (step 3: without a LaunchConfig field, the table's check names it)
    assert config_problems() == ["TOY_KNOB: LaunchConfig has no field toy"]
    cfg = build_config(LaunchRequest.of(args), project_root=ROOT, cwd=tmp_path,
                       env_names=ENV_NAMES, python="py")
    with_toy = types.SimpleNamespace(**dataclasses.asdict(cfg) | {"slurm": cfg.slurm}, toy=5)
    assert "toy_flag" in flags.managed_flags(ONLINE)
    assert "toy_flag" not in flags.managed_flags("offline")
    words = flags.script_flags(ONLINE, with_toy, seed=0)
    assert words[words.index("--toy_flag") + 1] == "5"
    assert recorded_knobs(with_toy)["TOY_KNOB"] == 5


def test_the_toy_knob_leaves_the_real_table_as_it_was():
    assert "TOY_KNOB" not in knobs.KNOB_BY_VAR
    assert not hasattr(knob_values.KnobValues(), "toy_knob")
