"""The package's size limits (issue 30), read from every module's AST, and the checklist "A method"
of docs/extending.md tried on a copy of the project.

**Function length.** No function or method (``def`` / ``async def`` at any depth, nested ones
included) spans more than :data:`MAX_FUNCTION_LINES` lines, counted from its ``def`` line to its
last line (``end_lineno - lineno + 1``: signature, docstring, body, comments and blank lines inside
it; decorators not).

**Public names.** A module's *public names* are the names bound by the statements directly in its
body (not inside an ``if``, ``try`` or ``with``) that do not start with ``_``:

* a ``def``, ``async def`` or ``class`` statement binds its name;
* an assignment ``a = b = ...`` binds every name of its targets (each name of a tuple target
  ``a, b = ...``; never attributes or subscripts); an annotated assignment ``a: T = ...`` binds
  ``a`` when it has a value.

Imports are not counted (a module re-exporting a name does not define it), nor are names starting
with ``_`` (``__all__`` included), nor the names of :data:`DECLARATIVE_TABLES`. No module has more
than :data:`MAX_PUBLIC_NAMES` public names.

The limits hold for every module under ``blendrl/`` but those of :data:`NOT_CHECKED` and
:data:`KNOWN_EXCEPTIONS`.
"""

from __future__ import annotations

import ast
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "blendrl"

MAX_FUNCTION_LINES = 60
MAX_PUBLIC_NAMES = 15

DECLARATIVE_TABLES: dict[str, frozenset[str]] = {
    # the columns of an Atari object row, named in one statement
    # (VISIBLE, X, Y, W, H, VALUE = 0, 1, 2, 3, 4, 5)
    "blendrl/logic/geometry.py": frozenset({"VISIBLE", "X", "Y", "W", "H", "VALUE"}),
}
"""Module -> the names of its declarative tables, which are not counted as public names."""

NOT_CHECKED = ("blendrl/launch/",)
"""Folders whose modules have their own structure test."""

KNOWN_EXCEPTIONS: frozenset[str] = frozenset()
"""Modules not checked yet, each named."""


def _checked_modules() -> list[Path]:
    out = []
    for path in sorted(PACKAGE.rglob("*.py")):
        rel = path.relative_to(ROOT).as_posix()
        if rel.startswith(NOT_CHECKED) or rel in KNOWN_EXCEPTIONS:
            continue
        out.append(path)
    return out


def _tree(path: Path) -> ast.Module:
    return ast.parse(path.read_text(), str(path))


def long_functions(tree: ast.Module) -> list[tuple[str, int, int]]:
    """(name, first line, lines) of every function longer than :data:`MAX_FUNCTION_LINES`."""
    return [(node.name, node.lineno, node.end_lineno - node.lineno + 1) for node in ast.walk(tree)
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))
            and node.end_lineno - node.lineno + 1 > MAX_FUNCTION_LINES]


def _bound_names(target: ast.expr) -> list[str]:
    if isinstance(target, ast.Name):
        return [target.id]
    if isinstance(target, (ast.Tuple, ast.List)):
        return [name for element in target.elts for name in _bound_names(element)]
    if isinstance(target, ast.Starred):
        return _bound_names(target.value)
    return []  # an attribute or a subscript binds no name of the module


def public_names(tree: ast.Module, tables: frozenset[str] = frozenset()) -> list[str]:
    """The module's public names (module docstring), in order, less the names in ``tables``."""
    names: list[str] = []
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.append(node.name)
        elif isinstance(node, ast.Assign):
            names.extend(name for target in node.targets for name in _bound_names(target))
        elif isinstance(node, ast.AnnAssign) and node.value is not None:
            names.extend(_bound_names(node.target))
    return [n for n in names if not n.startswith("_") and n not in tables]


def test_the_definitions_count_what_the_docstring_says():
    tree = ast.parse(
        "import os\nfrom x import y as Public\n__all__ = ['a']\n_private = 1\n"
        "A = B = 1\nC, (D, *E) = 1, (2, 3)\nF: int = 1\nG: int\nobj.attr = 1\nH[0] = 1\n"
        "def f():\n    inner = 1\nasync def g(): pass\nclass K:\n    field = 1\n"
        "if True:\n    Hidden = 1\n")
    assert public_names(tree) == ["A", "B", "C", "D", "E", "F", "f", "g", "K"]
    assert public_names(tree, frozenset({"C", "D", "E"})) == ["A", "B", "F", "f", "g", "K"]
    def body(indent: int) -> str:  # MAX_FUNCTION_LINES - 1 lines
        return "\n".join(" " * indent + f"x{i} = {i}" for i in range(MAX_FUNCTION_LINES - 1))

    assert long_functions(ast.parse(f"def fits():\n{body(4)}\n")) == []
    too_long = ast.parse(f"class C:\n    def m(self):\n        def nested():\n{body(12)}\n"
                         "            pass\n        return 1\n")
    assert long_functions(too_long) == [("m", 2, MAX_FUNCTION_LINES + 3),
                                        ("nested", 3, MAX_FUNCTION_LINES + 1)]


def test_the_exceptions_are_modules_that_exist():
    for rel in [*KNOWN_EXCEPTIONS, *DECLARATIVE_TABLES, *NOT_CHECKED]:
        assert (ROOT / rel).exists(), f"{rel} is listed in tests/test_structure.py but is gone"
    for rel, tables in DECLARATIVE_TABLES.items():
        defined = public_names(_tree(ROOT / rel))
        assert tables <= set(defined), f"{rel} no longer defines {sorted(tables - set(defined))}"


def test_no_function_is_longer_than_the_limit():
    found = [f"{path.relative_to(ROOT)}:{line} {name} has {n} lines"
             for path in _checked_modules() for name, line, n in long_functions(_tree(path))]
    assert found == [], f"functions over {MAX_FUNCTION_LINES} lines (split them into named steps)"


def test_no_module_has_more_public_names_than_the_limit():
    found = []
    for path in _checked_modules():
        rel = path.relative_to(ROOT).as_posix()
        names = public_names(_tree(path), DECLARATIVE_TABLES.get(rel, frozenset()))
        if len(names) > MAX_PUBLIC_NAMES:
            found.append(f"{rel}: {len(names)} public names ({', '.join(names)})")
    assert found == [], (f"modules over {MAX_PUBLIC_NAMES} public names (make the names used only "
                         "inside private, or split the module by concept)")


# --------------------------------------------------------------------------- "A method"

_TOY_ONLINE = ('    Method("toy_ppo", "online", "train_toy_ppo.py", "Toy-PPO", False, "D", ("tab:cyan",), '
               '"-."),\n')
_TOY_OFFLINE = ('    Method("toy_iql", "offline", "train_toy_iql.py", "Toy-IQL", True, "v",\n'
                '           ("tab:brown", "tab:pink", "black")),\n')
_TOY_SCRIPTS = {
    "train_toy_ppo.py": ("blendrl.online", "OnlineArgs", "toy_ppo"),
    "train_toy_iql.py": ("blendrl.offline", "BlendRLOfflineArgs", "toy_iql"),
}


def _copy_project(dest: Path) -> Path:
    """The package, the entry scripts, the shell launcher and tests/test_methods.py in ``dest``."""
    shutil.copytree(PACKAGE, dest / "blendrl", ignore=shutil.ignore_patterns("__pycache__"))
    for path in [*ROOT.glob("*.py"), ROOT / "run_full_cycle.sh", ROOT / "pytest.ini"]:
        shutil.copy2(path, dest / path.name)
    (dest / "tests").mkdir()
    shutil.copy2(ROOT / "tests" / "test_methods.py", dest / "tests" / "test_methods.py")
    return dest


def _run(project: Path, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    env = dict(os.environ if env is None else env, PYTHONPATH=str(project))
    return subprocess.run([sys.executable, *args], cwd=project, env=env, capture_output=True,
                          text=True, timeout=300)


def _edit(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    assert text.count(old) == 1, f"{path.name}: {old!r}"
    path.write_text(text.replace(old, new))


@pytest.mark.slow
def test_the_method_checklist_adds_a_method(tmp_path):
    """docs/extending.md, "A method", followed step by step for a toy online method (PPO's loop,
    no BlendRL) and a toy offline BlendRL method in a copy of the project: each step a test names
    fails until it is done; then the launcher plans the new methods with their scripts, a toy run
    records its method, and the report labels and draws it from the table."""
    proj = _copy_project(tmp_path / "proj")
    methods = proj / "blendrl" / "methods.py"
    # step 1: the rows (the online one first: the offline rows still have two colours each)
    _edit(methods, '    Method("iql", ', _TOY_ONLINE + '    Method("iql", ')
    _edit(methods, '           ("tab:purple", "tab:red")),\n',
          '           ("tab:purple", "tab:red")),\n' + _TOY_OFFLINE)
    # step 2: the scripts
    for script, (module, args, method) in _TOY_SCRIPTS.items():
        (proj / script).write_text(f'"""The toy method {method}."""\n\nimport sys\n\n'
                                   f"from blendrl.cli_parse import cli\nfrom {module} import {args}, main\n\n"
                                   f'if __name__ == "__main__":\n    sys.exit(main(cli({args}), "{method}"))\n')
    styles = "tests/test_methods.py::test_every_series_of_the_table_has_its_own_style"
    forgot = _run(proj, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests/test_methods.py")
    assert forgot.returncode == 1 and f"FAILED {styles}" in forgot.stdout, forgot.stdout[-3000:]
    assert re.search(r"^1 failed, \d+ passed", forgot.stdout, re.MULTILINE), forgot.stdout[-3000:]
    assert "iql: 2 colours (an offline row has one per online method)" in forgot.stdout
    # step 1, an online method: one more colour on every offline row
    _edit(methods, '("tab:green", "tab:olive")', '("tab:green", "tab:olive", "navy")')
    _edit(methods, '("tab:purple", "tab:red")', '("tab:purple", "tab:red", "gold")')
    done = _run(proj, "-m", "pytest", "-v", "-p", "no:cacheprovider", "tests/test_methods.py")
    assert done.returncode == 0, done.stdout[-3000:]
    for method in ("toy_ppo", "toy_iql"):
        assert f"test_each_row_is_its_script[{method}] PASSED" in done.stdout
    # step 3: the knob block (the method lists are the defaults and docs of three knobs)
    old_block = _run(ROOT, "-m", "blendrl.launch.knobs").stdout
    new_block = _run(proj, "-m", "blendrl.launch.knobs").stdout
    shell = proj / "run_full_cycle.sh"
    assert old_block and old_block in shell.read_text() and new_block not in shell.read_text()
    assert "ppo blendrl_ppo toy_ppo" in new_block and "iql blendrl_iql toy_iql" in new_block
    _edit(shell, old_block, new_block)

    # the launcher: the default cycle now runs the new methods, each with its script
    knobs = set(re.findall(r'^: "\$\{(\w+)=', new_block, re.MULTILINE))
    env = {k: v for k, v in os.environ.items() if k not in knobs}
    env.update(EXPERIMENT_ID="toyexp", ENVIRONMENT="cartpole", SEEDS="0", LOCAL="1")
    plan = _run(proj, "run_full_cycle.py", "--dry_run", "--work_dir", str(tmp_path / "work"), env=env)
    assert plan.returncode == 0, plan.stderr
    for run_id in ("toyexp_toy_ppo_cartpole_s0", "toyexp_iql_on_toy_ppo_cartpole_s0",
                   "toyexp_toy_iql_on_ppo_cartpole_s0", "toyexp_toy_iql_on_toy_ppo_cartpole_s0"):
        assert run_id in plan.stdout, plan.stdout
    # the loop: a short run of the new online method records it
    runs = tmp_path / "runs"
    run = _run(proj, "train_toy_ppo.py", "--env", "cartpole", "--total_timesteps", "256",
               "--num_envs", "2", "--num_steps", "64", "--intervals", "1", "--eval_episodes", "1",
               "--run_id", "toy1", "--runs_dir", str(runs), "--exp_id", "toyexp")
    assert run.returncode == 0, run.stderr
    meta = (runs / "toy1" / "run.json").read_text()
    assert '"method": "toy_ppo"' in meta and '"kind": "online"' in meta
    # the plots and the report: its label from the table
    report = _run(proj, "plot_results.py", "toyexp", "--runs-dir", str(runs), "--output-dir",
                  str(tmp_path / "plots"), "--bootstrap-reps", "100")
    assert report.returncode == 0, report.stderr
    assert "| Toy-PPO (online) |" in (tmp_path / "plots" / "toyexp" / "report.md").read_text()
