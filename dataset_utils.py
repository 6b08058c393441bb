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
    ``python dataset_utils.py inspect DIR``, ``python dataset_utils.py verify DIR`` and
    ``python dataset_utils.py export-minari DIR --dataset-id NAMESPACE/NAME-vN`` (docs/MINARI.md).
    Exit status: 0 fine; 1 the dataset is broken (the message names the file and the problem);
    2 bad argument (``DIR`` missing or not a dataset; for ``export-minari`` also a bad or existing
    Minari id, an unfinished dataset without ``--partial-dataset``, minari not installed).
"""

from __future__ import annotations

import json
import sys
import time
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


@dataclass
class ExportMinariArgs:
    """Write a dataset as a Minari dataset into Minari's dataset folder (MINARI_DATASETS_PATH, else
    ~/.minari/datasets): the episodes of each environment copy with raw rewards and the agent's
    observations; logic states, lost lives, the learner signal, the original order, marks and
    the manifest's essentials in infos and metadata (docs/MINARI.md)."""

    directory: tyro.conf.Positional[Path]
    """the dataset folder (holds manifest.json)"""
    dataset_id: str
    """the Minari id to write: NAMESPACE/NAME-vN (the namespace optional)"""
    overwrite: bool = False
    """replace a Minari dataset of that id (deleted before the export; without it an existing id is refused)"""
    partial_dataset: bool = False
    """export a dataset its online run did not finish (writer_finished false in its manifest): what it holds, recorded as such in the Minari metadata. Without it such a dataset is refused"""


def _every(seconds: float):
    """A progress line on stderr, at most once per ``seconds``."""
    last = [time.monotonic()]

    def say(text: str) -> None:
        if time.monotonic() - last[0] >= seconds:
            last[0] = time.monotonic()
            print(text, file=sys.stderr, flush=True)
    return say


def _export_minari(args: ExportMinariArgs) -> int:
    """The ``export-minari`` subcommand (the folder checked to be a dataset)."""
    from blendrl.exits import UsageError

    try:
        from blendrl.interop.minari_export import export_minari

        s = export_minari(args.directory, args.dataset_id, overwrite=args.overwrite,
                          partial=args.partial_dataset, say=_every(10.0))
    except ImportError as e:
        print(f"error: export-minari needs the minari package ({e})", file=sys.stderr)
        return 2
    except UsageError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except DatasetError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    print(f"OK: {s['steps']} transitions in {s['episodes']} episode(s) ({s['cut_episodes']} cut) "
          f"-> Minari dataset {s['dataset_id']} at {s['path']}")
    return 0


def main(argv: list[str] | None = None) -> int:
    """The CLI; returns the exit status (0 fine, 1 broken dataset, 2 bad argument)."""
    args = one_line_errors(tyro.extras.subcommand_cli_from_dict,
                           {"inspect": InspectArgs, "verify": VerifyArgs,
                            "export-minari": ExportMinariArgs}, args=argv,
                           description="Inspect, verify or export an offline dataset.")
    d = Path(args.directory)
    if not d.is_dir():
        print(f"error: {d} is not a folder", file=sys.stderr)
        return 2
    if not (d / MANIFEST_NAME).is_file():
        print(f"error: {d} is not a dataset (no {MANIFEST_NAME})", file=sys.stderr)
        return 2
    if isinstance(args, ExportMinariArgs):
        return _export_minari(args)
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
