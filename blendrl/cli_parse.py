"""Parse a command line with tyro, its parse errors as one line like the project's own.

tyro reports a bad command line (an invalid choice, a value that is not a number, an unknown or
missing flag) in a multi-line box on stderr and exits 2. Every other bad input of the project's
tools is one line, ``error: ...``, and exit 2 (``blendrl.validation``, ``UsageError``), so that a
log or a SLURM ``.err`` file says what was wrong in one grep-able line. :func:`cli` wraps
``tyro.cli`` and :func:`one_line_errors` any tyro entry point (e.g. ``subcommand_cli_from_dict``):
on a parse error the box's message becomes ``error: <message> (see <prog> --help)`` and the exit
status stays 2; ``--help`` and everything a successful parse writes are passed on unchanged.
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


def box_message(text: str) -> str:
    """The message of a tyro error box as one line: the box's text lines up to its first rule
    (what follows is the help pointer or a list of similar flags), joined; the box's title where
    it has no text; ``text`` itself, whitespace collapsed, when it holds no box."""
    title, parts = "", []
    for raw in _ANSI.sub("", text).splitlines():
        line = raw.strip()
        if line.startswith("╭"):
            title = line.strip("╭╮─ ")
        elif line[:1] in _SIDES:
            inner = line.strip(_SIDES).strip()
            if inner.startswith("─"):
                break
            if inner:
                parts.append(inner)
    message = " ".join(" ".join(parts).split()) or title
    return message or " ".join(text.split())


def one_line_errors(parse: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """``parse(*args, **kwargs)`` (a tyro entry point) with its error box turned into one line
    on stderr; exits 2 on a parse error as tyro does."""
    real_stderr, captured = sys.stderr, io.StringIO()
    sys.stderr = captured
    failed = False
    try:
        return parse(*args, **kwargs)
    except SystemExit as e:
        if e.code in (0, None):
            raise
        failed = True
        prog = os.path.basename(sys.argv[0]) if sys.argv and sys.argv[0] else "the script"
        print(f"error: {box_message(captured.getvalue())} (see {prog} --help)",
              file=real_stderr, flush=True)
        raise SystemExit(e.code) from None
    finally:
        sys.stderr = real_stderr
        if not failed and captured.getvalue():
            real_stderr.write(captured.getvalue())  # tyro's warnings on a successful parse


def cli(cls: type[T], **kwargs: Any) -> T:
    """``tyro.cli(cls, **kwargs)``, its parse errors as one line (see the module docstring)."""
    return one_line_errors(tyro.cli, cls, **kwargs)
