"""The package's dependency rules, read from every module's imports (the AST, so imports inside
functions count too): the arrows go one way, so a module can be understood and changed without the
modules it must not know."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "blendrl"
ENTRY_SCRIPTS = {p.stem for p in ROOT.glob("*.py")}


def imports_of(path: Path) -> set[str]:
    """Every module ``path`` imports, absolute (relative imports resolved), at any depth."""
    tree = ast.parse(path.read_text(), str(path))
    package = ".".join(path.relative_to(ROOT).with_suffix("").parts[:-1])
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(parts + ([base] if base else []))
            found.add(base)
            found.update(f"{base}.{a.name}" for a in node.names)
    return found


def modules(under: str) -> list[Path]:
    return sorted((PACKAGE / under).rglob("*.py")) if under else sorted(PACKAGE.rglob("*.py"))


def violations(paths: list[Path], forbidden) -> list[str]:
    return [f"{p.relative_to(ROOT)} imports {name}" for p in paths for name in sorted(imports_of(p))
            if forbidden(name)]


def under(prefix: str):
    return lambda name: name == prefix or name.startswith(prefix + ".")


RULES = {
    "the logic package imports no environment (it defines the EnvSpec protocol it needs)":
        (modules("logic"), under("blendrl.envs")),
    "environments import no agent and no algorithm":
        (modules("envs"), lambda n: under("blendrl.agents")(n) or under("blendrl.algos")(n)),
    "plotting imports no model code (no torch, agents, algorithms, loops or checkpoints)":
        (modules("plotting"), lambda n: any(under(m)(n) for m in (
            "torch", "blendrl.agents", "blendrl.algos", "blendrl.online", "blendrl.offline",
            "blendrl.runs", "blendrl.run_dir", "blendrl.checkpoints", "blendrl.rng",
            "blendrl.machine", "blendrl.logic", "blendrl.envs"))),
    "nothing outside blendrl/launch/ imports the launcher":
        ([p for p in modules("") if "launch" not in p.relative_to(PACKAGE).parts],
         under("blendrl.launch")),
    "no package module imports an entry script":
        (modules(""), lambda n: n.split(".")[0] in ENTRY_SCRIPTS),
}


@pytest.mark.parametrize("rule", list(RULES))
def test_dependency_rule(rule):
    paths, forbidden = RULES[rule]
    assert paths, rule
    assert violations(paths, forbidden) == [], rule


def test_the_launcher_and_the_environment_registry_import_no_torch():
    """The launcher (which reads the environments' names and kinds from the registry) and the
    torch-free parts of a run import neither torch nor OCAtari, directly or through blendrl."""
    code = ("import sys, blendrl.launch.cli, blendrl.envs, blendrl.loop_state, blendrl.timing, "
            "blendrl.interrupt; blendrl.envs.CLASSIC_ENVS; "
            "print(sorted(m for m in ('torch', 'ocatari') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True,
                         check=True).stdout
    assert out.strip() == "[]"


def test_the_rules_see_imports_inside_functions_and_relative_ones(tmp_path):
    pkg = ROOT / "blendrl" / "logic"
    probe = pkg / "_probe_for_test.py"
    probe.write_text("def f():\n    from blendrl.envs import base\n    from ..launch import knobs\n")
    try:
        found = imports_of(probe)
    finally:
        probe.unlink()
    assert {"blendrl.envs", "blendrl.envs.base", "blendrl.launch", "blendrl.launch.knobs"} <= found
