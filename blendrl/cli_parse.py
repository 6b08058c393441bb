"""Parse a command line with tyro, its parse errors as one line like the project's own.

tyro reports a bad command line (an invalid choice, a value that is not a number, an unknown or
missing flag) in a multi-line box on stderr and exits 2. Every other bad input of the project's
tools is one line, ``error: ...``, and exit 2 (``blendrl.validation``, ``UsageError``), so that a
log or a SLURM ``.err`` file says what was wrong in one grep-able line. :func:`cli` wraps
``tyro.cli`` and :func:`one_line_errors` any tyro entry point (e.g. ``subcommand_cli_from_dict``):
on a parse error the box's message becomes ``error: <message> (see <prog> --help)`` and the exit
status stays 2 (what was written before the box, e.g. a warning, is passed on above it);
``--help`` and everything a successful parse writes are passed on unchanged.
"""

from __future__ import annotations

import io
import os
import re
import sys
from typing import Any, Callable, TypeVar

import tyro

T = TypeVar("T")

_ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")
_SIDES = "│┃|"
_WIDE = "10000"  # columns for the re-parse that reads the message: tyro wraps at the terminal's


def _is_rule(line: str) -> bool:
    return len(line) >= 3 and set(line) <= set("─-━")


def split_box(text: str) -> tuple[str, str]:
    """``(before, box)``: what was written before tyro's error box (e.g. a Python warning,
    passed on unchanged) and the box itself. The UTF-8 box starts at its ``╭`` line; the ASCII
    box at its title, the line above its first rule. Text with no box is all ``box``."""
    lines = text.splitlines(keepends=True)
    plain = [_ANSI.sub("", line).strip() for line in lines]
    start = next((i for i, line in enumerate(plain) if line.startswith("╭")), None)
    if start is None:
        rule = next((i for i, line in enumerate(plain) if _is_rule(line.strip(_SIDES).strip())), None)
        start = rule - 1 if rule else 0
    return "".join(lines[:start]), "".join(lines[start:])


def box_message(text: str) -> str:
    """The message of a tyro error box (its UTF-8 or its ASCII form) as one line: the box's
    first section (the text before its first rule) joined, the flags of a "Perhaps you meant"
    section after it, every section but the help pointer when tyro says the program itself is
    wrong ("Invalid input to tyro.cli()"); the title where the box has no text; ``text`` itself,
    whitespace collapsed, when it holds no box."""
    title, sections, current, boxed = "", [], [], False
    for raw in _ANSI.sub("", text).splitlines():
        line = raw.strip()
        if line.startswith("╭"):
            title, boxed = line.strip("╭╮─ "), True
            continue
        if line.startswith("╰"):
            continue
        line = line.strip(_SIDES).strip()
        if _is_rule(line):
            boxed = True
            sections.append(current)
            current = []
        elif line:
            current.append(line)
    sections.append(current)
    if not boxed:
        return " ".join(text.split())
    if not title and sections and len(sections[0]) == 1 and len(sections) > 1:
        title = sections.pop(0)[0]  # the ASCII form: the title, then a rule
    sections = [s for s in sections if s and not s[0].startswith("For full helptext")]
    if not sections:
        return title
    if title.startswith("Invalid input to tyro"):
        return " ".join(" ".join(" ".join(s) for s in sections).split())
    message = " ".join(" ".join(sections[0]).split())
    for s in sections[1:]:
        if s[0].startswith("Perhaps you meant"):
            flags = [flag for line in s[1:] for flag in _flags(line)]
            if flags:
                message += f"; perhaps you meant {', '.join(dict.fromkeys(flags))}"
    return message


def _flags(line: str) -> list[str]:
    """The flags a suggestion line names: ``--runs-dir PATH`` -> ``--runs-dir``; a boolean's
    ``--json, --no-json`` -> both (without tyro's comma)."""
    flags = []
    for token in line.split():
        if not token.startswith("-"):
            break
        flags.append(token.rstrip(","))
    return flags


def _message(parse: Callable[..., Any], args: tuple, kwargs: dict, first: str) -> str:
    """The parse error's message, from a second parse at a width tyro does not wrap at (a long
    value is otherwise cut mid-word); the first parse's text if the second does not fail."""
    saved = os.environ.get("COLUMNS")
    real_stderr, captured = sys.stderr, io.StringIO()
    os.environ["COLUMNS"], sys.stderr = _WIDE, captured
    try:
        parse(*args, **kwargs)
    except SystemExit as e:
        if e.code not in (0, None):
            first = split_box(captured.getvalue())[1]
    except Exception:  # noqa: BLE001 -- the second parse is only for a wider text: keep the first
        pass
    finally:
        sys.stderr = real_stderr
        if saved is None:
            os.environ.pop("COLUMNS", None)
        else:
            os.environ["COLUMNS"] = saved
    return box_message(first)


def one_line_errors(parse: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """``parse(*args, **kwargs)`` (a tyro entry point) with its error box turned into one line
    on stderr; exits 2 on a parse error as tyro does. ``prog=`` (if given) names the command in
    the line's pointer to ``--help``, followed by the subcommand given, for
    ``subcommand_cli_from_dict``."""
    real_stderr, captured = sys.stderr, io.StringIO()
    sys.stderr = captured
    failed = False
    try:
        return parse(*args, **kwargs)
    except SystemExit as e:
        if e.code in (0, None):
            raise
        failed = True
        sys.stderr = real_stderr
        prog = kwargs.get("prog") or (os.path.basename(sys.argv[0]) if sys.argv and sys.argv[0]
                                      else "the script")
        if args and isinstance(args[0], dict):  # subcommand_cli_from_dict: name the one given
            argv = kwargs.get("args")
            argv = sys.argv[1:] if argv is None else argv
            given = next((a for a in argv if a in args[0]), None)
            if given is not None:
                prog = f"{prog} {given}"
        before, box = split_box(captured.getvalue())
        if before:
            real_stderr.write(before)  # e.g. a warning written before the box: nothing lost
        print(f"error: {_message(parse, args, kwargs, box)} (see {prog} --help)",
              file=real_stderr, flush=True)
        raise SystemExit(e.code) from None
    finally:
        sys.stderr = real_stderr
        if not failed and captured.getvalue():
            real_stderr.write(captured.getvalue())  # tyro's warnings on a successful parse


def cli(cls: type[T], **kwargs: Any) -> T:
    """``tyro.cli(cls, **kwargs)``, its parse errors as one line (see the module docstring)."""
    return one_line_errors(tyro.cli, cls, **kwargs)


def parse_bool(text: str) -> bool:
    """``1/0``, ``true/false``, ``yes/no``, ``on/off`` (any case): the launcher's boolean knobs and
    the scripts' optional boolean flags."""
    t = text.strip().lower()
    if t in ("1", "true", "yes", "on"):
        return True
    if t in ("0", "false", "no", "off"):
        return False
    raise ValueError(f"expected 1/0, true/false, yes/no or on/off, got {text!r}")
