"""Every job's arguments checked by its training script's own Args before anything starts.

A training script (``train_*.py``) parses its command line with ``cli(SomeArgs)``
(:mod:`blendrl.cli_parse`, tyro) and hands the result to its module's ``main``, which checks it
(:func:`blendrl.validation.check_ranges` and the module's own checks) before any work. A plan
whose jobs would be refused there is refused by the launcher instead, before anything starts:

* :func:`script_entry` reads, with :mod:`ast` and without running it, which Args class a script
  parses, from which module, and for which method (``main(cli(OnlineArgs), "ppo")``);
* :func:`check_jobs` runs ``python -m blendrl.launch.script_args`` once for all jobs (with the
  jobs' interpreter), which imports those classes (and torch with them: the launcher's own
  process stays torch-free), parses each job's full argument list as its script would (tyro,
  one-line errors, pass-through arguments included) and runs the module's checks
  (:data:`CHECKS`): ``blendrl.online.resolve_args`` or ``blendrl.offline.check_args`` (with
  the BlendRL rule set, which an offline script checks once it knows its dataset's environment).
  An online job's verdict also carries its rollout (``num_envs`` x ``num_steps`` as the script
  resolves them), against which the launcher checks ONLINE_STEPS and INTERVALS_COUNT.

A job whose script names no Args class this way (a stand-in of the tests) is not checked; the
caller is told which.
"""

from __future__ import annotations

import ast
import contextlib
import dataclasses
import importlib
import io
import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

PROBE_STEPS = 2 ** 62
"""``--total_timesteps`` of the probe that resolves an online job's rollout: more than any rollout,
so that only the other checks can refuse it."""


class CheckError(RuntimeError):
    """The checking process itself failed (it could not import the scripts' modules, ...)."""


@dataclass(frozen=True)
class ScriptEntry:
    """What a training script parses and for which method."""

    module: str
    """the module its Args class comes from, e.g. ``blendrl.online``"""
    args_class: str
    """e.g. ``BlendRLOnlineArgs``"""
    method: str | None
    """the method it passes to ``main`` (None if it passes none)"""


@dataclass(frozen=True)
class Verdict:
    """What a job's script says of its arguments."""

    job: str
    error: str | None = None
    """the script's refusal, one line (None: accepted)"""
    rollout: tuple[int, int] | None = None
    """an online job: ``(num_envs, num_steps)`` as the script resolves them"""


# --------------------------------------------------------------------------- the launcher's side

def _imports(tree: ast.AST) -> dict[str, str]:
    """Name -> module of every ``from MODULE import NAME`` of ``tree``."""
    return {alias.asname or alias.name: node.module for node in ast.walk(tree)
            if isinstance(node, ast.ImportFrom) and node.module for alias in node.names}


def _cli_call(node: ast.AST) -> str | None:
    """``X`` if ``node`` is the call ``cli(X)``."""
    if (isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "cli"
            and node.args and isinstance(node.args[0], ast.Name)):
        return node.args[0].id
    return None


def script_entry(path: Path) -> ScriptEntry | None:
    """The Args class ``path`` parses its command line with (``main(cli(X), "method")``) and where
    it comes from; None if the script has no such call or cannot be read."""
    try:
        tree = ast.parse(Path(path).read_text())
    except (OSError, SyntaxError, ValueError):
        return None
    imports = _imports(tree)
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call):
            continue
        for i, arg in enumerate(node.args):
            name = _cli_call(arg)
            if name and name in imports:
                rest = [a.value for a in node.args[i + 1:]
                        if isinstance(a, ast.Constant) and isinstance(a.value, str)]
                return ScriptEntry(imports[name], name, rest[0] if rest else None)
    return None


def requests_of(jobs: list[Any]) -> tuple[list[dict], list[Any]]:
    """``(requests for the checking process, jobs whose script cannot be checked)`` of the
    training jobs ``jobs`` (:class:`~blendrl.launch.plan.Job`)."""
    requests, unchecked = [], []
    entries: dict[str, ScriptEntry | None] = {}
    for job in jobs:
        script = job.command[1]
        if script not in entries:
            entries[script] = script_entry(Path(script))
        entry = entries[script]
        if entry is None:
            unchecked.append(job)
            continue
        requests.append({"job": job.name, "module": entry.module, "args_class": entry.args_class,
                         "method": entry.method or job.method, "prog": Path(script).name,
                         "argv": list(job.command[2:])})
    return requests, unchecked


def check_jobs(requests: list[dict], python: str, package_root: Path,
               cwd: Path | None = None) -> list[Verdict]:
    """The verdict of each request (one process for all, in the jobs' folder ``cwd`` where it
    exists already, so that a relative path such as ``--rules my_rules`` means what it will mean
    to the job); :class:`CheckError` if the checking process fails."""
    if not requests:
        return []
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(package_root), env.get("PYTHONPATH")]))
    try:
        res = subprocess.run([python, "-m", "blendrl.launch.script_args"],
                             input=json.dumps(requests), capture_output=True, text=True, env=env,
                             cwd=str(cwd if cwd is not None and cwd.is_dir() else package_root))
    except OSError as e:
        raise CheckError(f"cannot run {python}: {e}") from e
    try:
        answers = json.loads(res.stdout) if res.returncode == 0 else None
    except json.JSONDecodeError:
        answers = None
    if answers is None:
        tail = " ".join((res.stderr or res.stdout).strip().splitlines()[-3:])
        raise CheckError(f"checking the jobs' arguments failed (exit {res.returncode}): {tail}")
    return [Verdict(a["job"], a.get("error"), tuple(a["rollout"]) if a.get("rollout") else None)
            for a in answers]


# --------------------------------------------------------------------------- the checking process

class _Refused(Exception):
    """The script refuses the arguments (the message is its one line)."""


def _parse(cls: type, argv: list[str], prog: str) -> Any:
    """``argv`` parsed as the script parses it; :class:`_Refused` with tyro's one-line error."""
    import tyro

    from blendrl.cli_parse import one_line_errors

    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        try:
            return one_line_errors(tyro.cli, cls, args=argv, prog=prog)
        except SystemExit:
            lines = [ln for ln in err.getvalue().splitlines() if ln.startswith("error: ")]
            said = lines[-1][len("error: "):] if lines else err.getvalue().strip()
            raise _Refused(said) from None


def _check_online(args: Any, method: str) -> dict:
    """``blendrl.online.resolve_args``, first on a probe with a schedule nothing can refuse (the
    rollout it resolves), then on the job's own arguments."""
    from blendrl.online import resolve_args

    probe = dataclasses.replace(args, total_timesteps=PROBE_STEPS, intervals=1)
    probe = resolve_args(probe, method)
    verdict: dict = {"rollout": [probe.num_envs, probe.num_steps]}
    try:
        resolve_args(args, method)
    except Exception as e:  # noqa: BLE001 -- reported with the rollout
        verdict["error"] = str(e)
    return verdict


def _check_offline(args: Any, method: str) -> dict:
    """``blendrl.offline.check_args`` (the checks that need no dataset) and, the environment
    being given (the launcher passes ``--env``), the BlendRL rule set the run will load."""
    from blendrl.agents.factory import blend_fields
    from blendrl.offline import check_args
    from blendrl.validation import check_rule_set

    blend = blend_fields(method, args)
    check_args(args, blend)
    if blend is not None and args.env is not None:
        check_rule_set(args.env, blend.rules)
    return {}


def _check_ranges(args: Any, method: str) -> dict:
    """Any other Args: the ranges of its fields."""
    from blendrl.validation import check_ranges

    check_ranges(args)
    return {}


CHECKS: dict[str, Callable[[Any, str], dict]] = {"blendrl.online": _check_online,
                                                 "blendrl.offline": _check_offline}
"""The module of an Args class -> the checks its scripts run before any work."""


def verdict(request: dict) -> dict:
    """The verdict of one request (see :func:`requests_of`) as JSON."""
    out: dict = {"job": request["job"]}
    try:
        cls = getattr(importlib.import_module(request["module"]), request["args_class"])
        args = _parse(cls, request["argv"], request["prog"])
        out.update(CHECKS.get(request["module"], _check_ranges)(args, request["method"]))
    except _Refused as e:
        out["error"] = str(e)
    except Exception as e:  # noqa: BLE001 -- UsageError and whatever else a check raises
        from blendrl.exits import UsageError

        out["error"] = str(e) if isinstance(e, UsageError) else f"{type(e).__name__}: {e}"
    return out


def main() -> int:
    """Read the requests (JSON) on stdin, write the verdicts (JSON) on stdout."""
    requests = json.load(sys.stdin)
    real_stdout, sys.stdout = sys.stdout, sys.stderr  # what the modules print stays off the JSON
    try:
        answers = [verdict(r) for r in requests]
    finally:
        sys.stdout = real_stdout
    json.dump(answers, sys.stdout)
    return 0


if __name__ == "__main__":
    sys.exit(main())
