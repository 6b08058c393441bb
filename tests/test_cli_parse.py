"""tyro's parse errors as one line (``blendrl.cli_parse``): the box's message, exit 2, nothing
else on stderr; ``--help`` and good command lines unchanged."""

from __future__ import annotations

import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import pytest

from blendrl.cli_parse import box_message, cli, one_line_errors, split_box

ROOT = Path(__file__).resolve().parents[1]


@dataclass
class Toy:
    precision: Literal["fp32", "bf16"] = "fp32"
    """numeric precision"""
    seed: int = 1
    """the seed"""


def test_box_message_joins_the_wrapped_text_up_to_the_rule() -> None:
    box = ("╭─ Invalid choice ──────────────────────╮\n"
           "│ invalid choice 'fp16' for argument    │\n"
           "│ '--precision'. Expected one of        │\n"
           "│ ('fp32', 'bf16').                     │\n"
           "│ ───────────────────────────────────── │\n"
           "│ For full helptext, run x.py --help    │\n"
           "╰───────────────────────────────────────╯\n")
    assert box_message(box) == ("invalid choice 'fp16' for argument '--precision'. "
                                "Expected one of ('fp32', 'bf16').")
    assert box_message("\x1b[31m╭─ Title ─╮\x1b[0m\n╰─────────╯\n") == "Title"
    assert box_message("plain\n  text ") == "plain text"


def test_box_message_reads_the_ascii_box_and_keeps_the_suggested_flags():
    """tyro draws ASCII boxes where stdout is not UTF-8; a mistyped flag's box suggests flags."""
    ascii_box = (" Unrecognized options                  \n"
                 " ------------------------------------- \n"
                 "  Unrecognized options: --runs-dirr, x \n"
                 "  -------------------------------------\n"
                 "  Perhaps you meant:                   \n"
                 "      --runs-dir PATH                  \n"
                 "          parent folder of runs        \n"
                 "  -------------------------------------\n"
                 "  For full helptext, run x.py --help   \n")
    assert box_message(ascii_box) == ("Unrecognized options: --runs-dirr, x; "
                                      "perhaps you meant --runs-dir")
    utf8_box = "".join(f"│ {line.strip():40s} │\n" if line.strip() and not set(line.strip()) <= {"-"}
                       else "│ " + "─" * 40 + " │\n" for line in ascii_box.splitlines()[2:])
    assert box_message("╭─ Unrecognized options ─╮\n" + utf8_box + "╰──╯\n") == \
        "Unrecognized options: --runs-dirr, x; perhaps you meant --runs-dir"


def test_a_suggested_boolean_flag_keeps_both_spellings_without_the_comma():
    box = ("╭─ Unrecognized options ─╮\n│ Unrecognized options: --jsn │\n│ ───── │\n"
           "│ Perhaps you meant: │\n│     --json, --no-json │\n│         print JSON │\n╰──╯\n")
    assert box_message(box) == "Unrecognized options: --jsn; perhaps you meant --json, --no-json"


WARNING = "/x/y.py:3: UserWarning: something the user should see\n  warnings.warn(...)\n"


def test_text_before_the_box_is_kept_apart_from_its_message():
    utf8 = ("╭─ Invalid choice ─╮\n│ invalid choice 'fp16' for argument '--precision'. │\n"
            "│ ───── │\n│ For full helptext, run x.py --help │\n╰──╯\n")
    ascii_box = (" Unrecognized options \n ------------------- \n  Unrecognized options: --x \n"
                 "  -------------------\n  For full helptext, run x.py --help \n")
    for box, message in ((utf8, "invalid choice 'fp16' for argument '--precision'."),
                         (ascii_box, "Unrecognized options: --x")):
        before, rest = split_box(WARNING + box)
        assert (before, rest) == (WARNING, box)
        assert box_message(rest) == message
    assert split_box("no box here\n") == ("", "no box here\n")


def _parse_writing_a_warning_then_failing(second_raises: type[BaseException]):
    calls = []

    def parse(prog: str):
        calls.append(prog)
        if len(calls) > 1 and second_raises is not SystemExit:
            raise second_raises("the second parse broke")
        sys.stderr.write(WARNING)
        sys.stderr.write("╭─ Unrecognized options ─╮\n│ Unrecognized options: --bogus │\n╰──╯\n")
        raise SystemExit(2)
    return parse


@pytest.mark.parametrize("second_raises", [SystemExit, RuntimeError])
def test_a_warning_before_the_box_is_passed_on_and_the_error_is_one_line(second_raises, capsys):
    with pytest.raises(SystemExit) as e:
        one_line_errors(_parse_writing_a_warning_then_failing(second_raises), prog="x.py")
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert err == WARNING + "error: Unrecognized options: --bogus (see x.py --help)\n"


def test_the_help_pointer_names_the_subcommand_given(capsys):
    import tyro

    commands = {"inspect": Toy, "verify": Toy}
    with pytest.raises(SystemExit):
        one_line_errors(tyro.extras.subcommand_cli_from_dict, commands, args=["verify", "--seed", "x"],
                        prog="dataset_utils.py")
    assert capsys.readouterr().err.rstrip().endswith("(see dataset_utils.py verify --help)")
    with pytest.raises(SystemExit):
        one_line_errors(tyro.extras.subcommand_cli_from_dict, commands, args=["frobnicate"],
                        prog="dataset_utils.py")
    assert capsys.readouterr().err.rstrip().endswith("(see dataset_utils.py --help)")


def test_a_long_value_is_not_cut_where_the_terminal_would_wrap(monkeypatch, capsys):
    monkeypatch.setenv("COLUMNS", "40")
    value = "123456789012345678901234567890abcdefghijklmnopqrstuvwxyz"
    with pytest.raises(SystemExit):
        cli(Toy, args=["--seed", value])
    err = capsys.readouterr().err
    assert f"'{value}'" in err and len(err.splitlines()) == 1
    assert __import__("os").environ["COLUMNS"] == "40"  # put back


def test_the_help_pointer_names_prog_when_given(capsys):
    with pytest.raises(SystemExit):
        cli(Toy, args=["--bogus"], prog="kill_experiments.sh")
    assert capsys.readouterr().err.rstrip().endswith("(see kill_experiments.sh --help)")


@pytest.mark.parametrize("argv, words", [
    (["--precision", "fp16"], ["error:", "'fp16'", "--precision", "'bf16'"]),
    (["--seed", "abc"], ["error:", "--seed", "'abc'"]),
    (["--bogus", "1"], ["error:", "--bogus"]),
])
def test_a_bad_command_line_is_one_line_and_exit_2(argv, words, capsys) -> None:
    with pytest.raises(SystemExit) as e:
        cli(Toy, args=argv)
    assert e.value.code == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert len(err.splitlines()) == 1, err
    for w in words:
        assert w in err
    assert "╭" not in err and "│" not in err


def test_a_good_command_line_parses_and_writes_nothing(capsys) -> None:
    assert cli(Toy, args=["--precision", "bf16", "--seed", "7"]) == Toy("bf16", 7)
    assert capsys.readouterr() == ("", "")


def test_help_is_left_as_tyro_writes_it(capsys) -> None:
    with pytest.raises(SystemExit) as e:
        cli(Toy, args=["--help"])
    assert e.value.code == 0
    out, _ = capsys.readouterr()
    assert "--precision" in out and "numeric precision" in out and len(out.splitlines()) > 3


@pytest.mark.parametrize("script, argv, named", [
    ("train_iql.py", ["--precision", "fp16"], "'--precision'"),
    ("train_neuralppo.py", ["--seed", "abc"], "--seed: invalid literal for int() with base 10: 'abc'"),
    ("run_full_cycle.py", ["--online_steps", "x"], "--online-steps: invalid literal"),
])
def test_the_scripts_report_a_parse_error_in_one_line(script, argv, named, tmp_path) -> None:
    r = subprocess.run([sys.executable, str(ROOT / script), *argv], capture_output=True, text=True,
                       cwd=tmp_path, timeout=120)
    assert r.returncode == 2, r.stderr
    assert r.stdout == ""
    lines = r.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), r.stderr
    assert named in lines[0]
    assert f"{script} --help" in lines[0]
    assert list(tmp_path.iterdir()) == []  # before any work: nothing written
