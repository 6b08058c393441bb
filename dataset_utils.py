"""Offline datasets: the entry point over :mod:`blendrl.datasets` (the names the scripts import)
and a small CLI.

An online run hands every environment step of its ``num_envs`` parallel copies to a
:class:`DatasetWriter`; an offline run reads a prefix of it with a :class:`DatasetReader`, in
place (memory-mapped pools), growing it interval by interval (``DatasetReader.extend``).
Transitions are kept step-major, exactly as the online agent experienced them: the transition of
environment ``i`` at step ``t`` has index ``t * num_envs + i``. The files, their versions and
their guarantees (atomic, crash-safe, exactly resumable, code-free loading) are described in
``docs/FORMATS.md``.

CLI
    ``python dataset_utils.py inspect DIR`` and ``python dataset_utils.py verify DIR``.
    Exit status: 0 fine; 1 the dataset is broken (the message names the file and the problem);
    2 bad argument (``DIR`` missing or not a dataset).
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from pathlib import Path

import tyro

from blendrl.cli_parse import one_line_errors
from blendrl.datasets import (FORMAT_VERSION, LOCK_NAME, MANIFEST_NAME, Batch, DatasetError,
                              DatasetReader, DatasetWriter, has_life_lost, read_manifest,
                              safe_load_pickle, summarize, verify)

__all__ = ["FORMAT_VERSION", "LOCK_NAME", "MANIFEST_NAME", "Batch", "DatasetError", "DatasetReader",
           "DatasetWriter", "has_life_lost", "main", "safe_load_pickle", "summarize", "verify"]


@dataclass
class InspectArgs:
    """Print what a dataset holds: env, count, shapes, dtypes, chunks, marks, bytes per transition."""

    directory: tyro.conf.Positional[Path]
    """the dataset folder (holds manifest.json)"""
    json: bool = False
    """print the summary as one JSON object"""


@dataclass
class VerifyArgs:
    """Read every chunk of a dataset and check it against the manifest (sizes, CRC-32, contents,
    finite floats); exit 1 if anything is wrong."""

    directory: tyro.conf.Positional[Path]
    """the dataset folder (holds manifest.json)"""
    values: bool = True
    """also check that every float (rewards, float states) is finite, as an offline run does before training (--no-values: the files only)"""


def main(argv: list[str] | None = None) -> int:
    """The CLI; returns the exit status (0 fine, 1 broken dataset, 2 bad argument)."""
    args = one_line_errors(tyro.extras.subcommand_cli_from_dict,
                           {"inspect": InspectArgs, "verify": VerifyArgs}, args=argv,
                           description="Inspect or verify an offline dataset.")
    d = Path(args.directory)
    if not d.is_dir():
        print(f"error: {d} is not a folder", file=sys.stderr)
        return 2
    if not (d / MANIFEST_NAME).is_file():
        print(f"error: {d} is not a dataset (no {MANIFEST_NAME})", file=sys.stderr)
        return 2
    try:
        if isinstance(args, InspectArgs):
            s = summarize(d)
            if args.json:
                print(json.dumps(s, indent=1))
            else:
                for k, v in s.items():
                    print(f"{k:21s} {v}")
            return 0
        problems, notes = verify(d, values=args.values)
    except DatasetError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    for note in notes:
        print(f"note: {note}")
    if problems:
        for p in problems:
            print(f"error: {p}", file=sys.stderr)
        print(f"FAILED: {len(problems)} problem(s) in {d}", file=sys.stderr)
        return 1
    m = read_manifest(d)
    print(f"OK: {m['count']} transitions in {len(m['chunks'])} chunk(s), {len(m['marks'])} mark(s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
