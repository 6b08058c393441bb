"""Flag ranges (blendrl/validation.py): every numeric field of the four training scripts' Args
declares a range, ``--help`` shows it after the field's docstring, and values outside it, NaN and
infinity are refused before any work (exit 2, one line naming the flag, the value and the range);
so are an unknown ``--rules`` (listing the env's rule sets) and a negative ``--seed``."""

from __future__ import annotations

import ast
import dataclasses
import importlib.util
import inspect
import math
import os
import subprocess
import sys
import textwrap
import typing
from dataclasses import replace
from pathlib import Path
from typing import Literal, Optional

import numpy as np
import pytest
import tyro

from blendrl.offline import BlendRLOfflineArgs, OfflineArgs
from blendrl.online import BlendRLOnlineArgs, OnlineArgs
from blendrl.exits import UsageError
from blendrl.validation import (Range, check_ranges, check_rule_set, field_ranges, is_numeric,
                                numeric_fields)

ROOT = Path(__file__).resolve().parents[1]
SCRIPTS = ("train_neuralppo.py", "train_blenderl.py", "train_iql.py", "train_blendrl_iql.py")


def script_args(script: str) -> type:
    """The Args class the script hands to ``cli`` (``blendrl.cli_parse``: tyro.cli with one-line
    errors; read from its source, then imported)."""
    path = ROOT / script
    calls = [node.args[0].id for node in ast.walk(ast.parse(path.read_text()))
             if isinstance(node, ast.Call) and ast.unparse(node.func) == "cli"]
    assert len(calls) == 1, f"{script}: expected one cli(Args) call, found {calls}"
    spec = importlib.util.spec_from_file_location(f"_script_{path.stem}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)  # not __main__: defines, runs nothing
    return getattr(module, calls[0])


def field_docstrings(cls: type) -> dict[str, str]:
    """Each field's docstring (the string literal under it), from the classes that declare them."""
    docs: dict[str, str] = {}
    for klass in reversed(cls.__mro__):
        if not dataclasses.is_dataclass(klass):
            continue
        body = ast.parse(textwrap.dedent(inspect.getsource(klass))).body[0].body
        for node, nxt in zip(body, body[1:]):
            if (isinstance(node, ast.AnnAssign) and isinstance(nxt, ast.Expr)
                    and isinstance(nxt.value, ast.Constant) and isinstance(nxt.value.value, str)):
                docs[node.target.id] = " ".join(nxt.value.value.split())
    return docs


def run_script(script: str, *args: str, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(ROOT / script), *args], cwd=ROOT, capture_output=True,
                          text=True, timeout=300, env={**os.environ, **env})


# --------------------------------------------------------------------------- Range itself

@pytest.mark.parametrize("text,inside,outside", [
    ("[0, 1]", [0, 0.5, 1], [-1e-12, 1.0000001, math.nan, math.inf, -math.inf]),
    ("(0, 1)", [1e-300, 0.5, 0.999], [0, 1, math.nan]),
    ("(0, 1]", [1e-9, 1], [0, 1.5]),
    ("(0, inf)", [1e-300, 1e300], [0, -1, math.inf, math.nan]),
    ("[0, inf)", [0, 15.0], [-1e-9, math.inf]),
    ("[1, inf)", [1, 2**40], [0, -1]),
    ("[0, 4294967295]", [0, 4294967295], [-1, 4294967296]),
])
def test_range_membership(text, inside, outside):
    r = Range.parse(text)
    assert str(r) == text
    assert all(v in r for v in inside), [v for v in inside if v not in r]
    assert not any(v in r for v in outside), [v for v in outside if v in r]


@pytest.mark.parametrize("text", ["[0, inf]", "[-inf, 0)", "[1, 0]", "(0, 0]", "[0, 0)", "0, 1",
                                  "[0 1]", "[a, 1]", "[nan, 1]", "{0, 1}"])
def test_bad_range_declarations_are_refused(text):
    with pytest.raises(ValueError):
        Range.parse(text)


def test_range_parse_fields():
    assert Range.parse("(0, 1]") == Range(0, 1, lo_open=True, hi_open=False)
    assert Range.parse("[1, inf)") == Range(1, math.inf, lo_open=False, hi_open=True)
    assert Range.parse("[2, 2]").__contains__(2) and 2.5 not in Range.parse("[2, 2]")


def test_numeric_classification():
    assert is_numeric(int) and is_numeric(float) and is_numeric(int | None)
    assert is_numeric(Optional[float])
    assert not is_numeric(bool) and not is_numeric(str) and not is_numeric(Path)
    assert not is_numeric(str | None) and not is_numeric(Literal["a", "b"])

    @dataclasses.dataclass
    class Demo:
        a: int = 1
        b: float | None = None
        c: bool = True
        d: str = "x"

    assert numeric_fields(Demo) == ["a", "b"]
    assert field_ranges(Demo) == {}


# --------------------------------------------------------------------------- every field covered

@pytest.mark.parametrize("script", SCRIPTS)
def test_every_numeric_field_of_every_script_has_a_range(script):
    cls = script_args(script)
    numeric, ranges = numeric_fields(cls), field_ranges(cls)
    assert len(numeric) >= 10  # the walk sees the real fields (seed, gamma, learning_rate, ...)
    assert {"seed", "learning_rate", "gamma", "eval_episodes", "threads"} <= set(numeric)
    missing = [name for name in numeric if name not in ranges]
    assert not missing, f"{cls.__name__} ({script}): numeric fields without a declared range: {missing}"
    assert set(ranges) <= set(numeric), "a range declared on a field that is not a number"


def test_the_four_scripts_use_the_four_args_classes():
    assert [script_args(s).__name__ for s in SCRIPTS] == [
        "OnlineArgs", "BlendRLOnlineArgs", "OfflineArgs", "BlendRLOfflineArgs"]


@pytest.mark.parametrize("script", SCRIPTS)
def test_defaults_are_in_range(script):
    check_ranges(script_args(script)())


@pytest.mark.parametrize("script", SCRIPTS)
def test_help_shows_each_fields_docstring_and_range(script):
    cls = script_args(script)
    r = run_script(script, "--help", COLUMNS="250")
    assert r.returncode == 0, r.stderr
    text = " ".join(r.stdout.replace("│", " ").split())
    docs, ranges = field_docstrings(cls), field_ranges(cls)
    for f in dataclasses.fields(cls):
        assert docs.get(f.name) and docs[f.name] in text, f"--help lacks the docstring of {f.name}"
        if f.name in ranges:
            hint = f"{docs[f.name]} (default: {f.default}; range {ranges[f.name]})"
            assert hint in text, f"--help of {script} lacks {hint!r}"


def test_optional_fields_accept_none_from_the_command_line():
    args = tyro.cli(OnlineArgs, args=["--target_kl", "None", "--threads", "None", "--clip_coef", "None"])
    assert args.target_kl is None and args.threads is None
    check_ranges(args)
    check_ranges(tyro.cli(OnlineArgs, args=["--target_kl", "0.015", "--threads", "1"]))


# --------------------------------------------------------------------------- bad values

ISSUE_BAD_ONLINE = [("learning_rate", -1.0, "(0, inf)"), ("gamma", 2.0, "[0, 1]"),
                    ("gae_lambda", 1.5, "[0, 1]"), ("clip_coef", -0.2, "(0, inf)"),
                    ("vf_coef", -1.0, "[0, inf)"), ("max_grad_norm", -1.0, "(0, inf)"),
                    ("target_kl", -1.0, "(0, inf)")]
ISSUE_BAD_BLEND = [("logic_lr", -1.0, "(0, inf)"), ("blender_lr", -1.0, "(0, inf)")]
ALL_ARGS = (OnlineArgs, BlendRLOnlineArgs, OfflineArgs, BlendRLOfflineArgs)


def refused(args, name: str) -> str:
    with pytest.raises(UsageError) as e:
        check_ranges(args)
    message = str(e.value)
    assert message.startswith(f"--{name} must be in ") and "\n" not in message
    return message


@pytest.mark.parametrize("cls,name,value,rng",
                         [(c, *bad) for c in (OnlineArgs, BlendRLOnlineArgs) for bad in ISSUE_BAD_ONLINE]
                         + [(c, *bad) for c in (BlendRLOnlineArgs, BlendRLOfflineArgs) for bad in ISSUE_BAD_BLEND]
                         + [(c, "seed", -1, "[0, 4294967295]") for c in ALL_ARGS])
def test_the_issues_bad_values_are_refused(cls, name, value, rng):
    assert refused(replace(cls(), **{name: value}), name) == f"--{name} must be in {rng}, got {value!r}"


@pytest.mark.parametrize("cls,name,value", [
    (OfflineArgs, "expectile", 0.0), (OfflineArgs, "expectile", 1.0), (OfflineArgs, "polyak", 0.0),
    (OfflineArgs, "polyak", 1.5), (OfflineArgs, "beta", -0.1), (OfflineArgs, "max_weight", 0.0),
    (OfflineArgs, "gamma", -0.01), (OfflineArgs, "batch_size", 0), (OfflineArgs, "threads", 0),
    (OfflineArgs, "checkpoint_seconds", 0.0), (OnlineArgs, "ent_coef", -0.01),
    (OnlineArgs, "num_envs", 0), (OnlineArgs, "total_timesteps", -5), (OnlineArgs, "threads", 0),
    (OnlineArgs, "progress_seconds", -1.0), (OnlineArgs, "seed", 2**32),
    (BlendRLOnlineArgs, "blend_ent_coef", -1.0),
])
def test_other_out_of_range_values_are_refused(cls, name, value):
    refused(replace(cls(), **{name: value}), name)


@pytest.mark.parametrize("cls,changes", [
    (OnlineArgs, {"gamma": 0.0}), (OnlineArgs, {"gamma": 1.0}), (OnlineArgs, {"gae_lambda": 1.0}),
    (OnlineArgs, {"ent_coef": 0.0, "vf_coef": 0.0, "progress_seconds": 0.0}),
    (OnlineArgs, {"seed": 2**32 - 1, "threads": 1, "target_kl": 0.01, "clip_coef": 0.1}),
    (OfflineArgs, {"expectile": 0.5, "polyak": 1.0, "beta": 0.0, "gamma": 1.0}),
    (BlendRLOfflineArgs, {"logic_lr": 1e-9, "blender_lr": 10.0}),
])
def test_values_at_and_inside_the_ends_pass(cls, changes):
    check_ranges(replace(cls(), **changes))


def _float_fields(cls) -> list[str]:
    hints = typing.get_type_hints(cls)  # Annotated stripped
    return [n for n in numeric_fields(cls) if float in (hints[n], *typing.get_args(hints[n]))]


@pytest.mark.parametrize("cls", ALL_ARGS)
@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf])
def test_nan_and_infinity_are_refused_for_every_float_field(cls, value):
    names = _float_fields(cls)
    assert {"learning_rate", "gamma"} <= set(names)
    for name in names:
        assert refused(replace(cls(), **{name: value}), name).endswith(f"got {value!r}")


def test_the_first_bad_field_is_named():
    message = refused(replace(OnlineArgs(), seed=-1, gamma=2.0), "seed")
    assert "gamma" not in message


# --------------------------------------------------------------------------- rule sets

def test_unknown_rule_set_lists_the_envs_rule_sets():
    with pytest.raises(UsageError) as e:
        check_rule_set("mountaincar", "nonexistent")
    assert str(e.value).startswith("--rules nonexistent (env mountaincar): ")
    assert "available: default, no_left" in str(e.value) and "\n" not in str(e.value)
    check_rule_set("mountaincar", "no_left")
    check_rule_set("cartpole", "default")


def test_broken_rule_set_folder_is_a_usage_error(tmp_path):
    (tmp_path / "preds.txt").write_text("left:0\n")
    with pytest.raises(UsageError) as e:
        check_rule_set("cartpole", str(tmp_path))
    assert "--rules" in str(e.value) and "neural_preds.txt" in str(e.value)


# --------------------------------------------------------------------------- real processes

def one_line_error(r: subprocess.CompletedProcess) -> str:
    lines = r.stderr.strip().splitlines()
    assert r.returncode == 2 and len(lines) == 1, (r.returncode, r.stderr)
    assert lines[0].startswith("error: ")
    return lines[0]


def cartpole_dataset(path: Path) -> Path:
    from dataset_utils import DatasetWriter
    rng = np.random.default_rng(0)
    with DatasetWriter(path, env="cartpole", num_envs=1, logic_shape=(2, 2), neural_shape=(4,),
                       neural_dtype=np.float32, n_actions=2, chunk_size=16,
                       metadata={"method": "ppo", "run_id": "src", "exp_id": "e", "seed": 0}) as w:
        for t in range(32):
            s, s2 = rng.normal(size=(2, 4)).astype(np.float32)
            w.add(s.reshape(1, 2, 2), s[None], np.array([t % 2]), np.array([1.0]),
                  s2.reshape(1, 2, 2), s2[None], np.array([False]), np.array([False]))
        w.mark(32)
        w.finish()
    return path


@pytest.mark.parametrize("script,flags,expected", [
    ("train_neuralppo.py", ["--gamma", "2"], "error: --gamma must be in [0, 1], got 2.0"),
    ("train_neuralppo.py", ["--learning_rate", "nan"], "error: --learning_rate must be in (0, inf), got nan"),
    ("train_blenderl.py", ["--logic_lr", "-1"], "error: --logic_lr must be in (0, inf), got -1.0"),
    ("train_neuralppo.py", ["--seed", "-1"], "error: --seed must be in [0, 4294967295], got -1"),
    ("train_blenderl.py", ["--seed", "-1"], "error: --seed must be in [0, 4294967295], got -1"),
    ("train_iql.py", ["--seed", "-1"], "error: --seed must be in [0, 4294967295], got -1"),
    ("train_blendrl_iql.py", ["--seed", "-1"], "error: --seed must be in [0, 4294967295], got -1"),
])
def test_scripts_refuse_bad_values_before_any_work(tmp_path, script, flags, expected):
    data = cartpole_dataset(tmp_path / "ds") if "iql" in script else None
    where = ["--dataset", str(data)] if data else ["--dataset_dir", str(tmp_path / "data")]
    r = run_script(script, *flags, *where, "--runs_dir", str(tmp_path / "runs"), "--run_id", "x")
    assert one_line_error(r) == expected
    assert not (tmp_path / "runs").exists() and not (tmp_path / "data").exists()


@pytest.mark.parametrize("script,env,available", [
    ("train_blenderl.py", "mountaincar", "default, no_left"),
    ("train_blendrl_iql.py", "cartpole", "default"),
])
def test_scripts_refuse_an_unknown_rule_set_listing_the_envs(tmp_path, script, env, available):
    if "iql" in script:
        where = ["--dataset", str(cartpole_dataset(tmp_path / "ds"))]
    else:
        where = ["--env", env, "--save_dataset", "--dataset_dir", str(tmp_path / "data")]
    r = run_script(script, "--rules", "nonexistent", *where, "--runs_dir", str(tmp_path / "runs"),
                   "--run_id", "x")
    line = one_line_error(r)
    assert line.startswith(f"error: --rules nonexistent (env {env}): ")
    assert "no rule set named 'nonexistent'" in line and f"available: {available} " in line
    assert not (tmp_path / "runs").exists() and not (tmp_path / "data").exists()
