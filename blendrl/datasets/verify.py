"""What ``dataset_utils.py inspect`` and ``verify`` report."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from blendrl.datasets.chunks import chunk_files_ok, index_chunk, open_chunk
from blendrl.datasets.layout import DATA_FILE_RE, TMP_RE, DatasetError, Layout
from blendrl.datasets.manifest import file_entries, files_of, has_life_lost, read_manifest


def summarize(directory: str | os.PathLike) -> dict[str, Any]:
    """What ``inspect`` prints: the manifest's description plus bytes per transition."""
    d = Path(directory)
    m = read_manifest(d)
    chunk_bytes = sum(f["bytes"] for e in m["chunks"] for f in file_entries(e))
    return {
        "directory": str(d),
        "format_version": m["format_version"],
        **{k: m[k] for k in Layout.from_manifest(m, d).manifest_fields()},
        "has_life_lost": has_life_lost(m),
        "count": m["count"],
        "chunks": len(m["chunks"]),
        "chunk_rows": m.get("chunk_rows"),
        "bytes": chunk_bytes,
        "bytes_per_transition": chunk_bytes / m["count"] if m["count"] else None,
        "marks": m["marks"],
        "metadata": m.get("metadata", {}),
        "created_at": m.get("created_at"),
        "updated_at": m.get("updated_at"),
    }


def check_files(directory: str | os.PathLike, manifest: dict[str, Any]) -> None:
    """Every file the manifest lists (chunk pickles and sidecar pools) exists with its recorded
    size: cheap (no content read), a DatasetError naming the first file that is not."""
    for e in manifest["chunks"]:
        chunk_files_ok(Path(directory), e)


def verify(directory: str | os.PathLike) -> tuple[list[str], list[str]]:
    """Check a dataset completely: ``(problems, notes)``; it is good when ``problems`` is empty.

    Every chunk the manifest lists is read (sizes and CRC-32 of its pickle and its pools, safe
    unpickling, every array's dtype and shape, index consistency). Notes report leftovers of an
    interrupted writer (temp files, chunk files the manifest does not list), which readers ignore.
    """
    d = Path(directory)
    m = read_manifest(d)  # raises: a dataset without a readable manifest has nothing to verify
    lay = Layout.from_manifest(m, d)
    problems: list[str] = []
    for e in m["chunks"]:
        try:
            index_chunk(open_chunk(d, e, lay, has_life_lost(m), check_crc=True))
        except DatasetError as err:
            problems.append(str(err))
    listed = files_of(m["chunks"])
    notes = [f"{p}: leftover of an interrupted writer, ignored" for p in sorted(d.iterdir())
             if TMP_RE.match(p.name) or (DATA_FILE_RE.match(p.name) and p.name not in listed)]
    return problems, notes
