"""What ``dataset_utils.py inspect`` and ``verify`` report."""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Callable

from blendrl.datasets.chunks import Chunk, check_values, chunk_files_ok, index_chunk, open_chunk
from blendrl.datasets.layout import DATA_FILE_RE, TMP_RE, DatasetError, Layout
from blendrl.datasets.manifest import (file_entries, files_of, has_life_lost, read_manifest,
                                       writer_finished)


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
        "writer_finished": writer_finished(m),
        "metadata": m.get("metadata", {}),
        "created_at": m.get("created_at"),
        "updated_at": m.get("updated_at"),
    }


def verify_chunk(directory: Path, entry: dict[str, Any], layout: Layout, life_lost: bool,
                 values: bool = True) -> Chunk:
    """Open one chunk the manifest lists and check all of it: the sizes and CRC-32 of its pickle
    and pools, safe unpickling, every array's dtype and shape, its index, and (``values``) that
    every float (rewards, float pools) is finite, which training needs. Returns the opened chunk;
    a DatasetError names the file."""
    chunk = open_chunk(directory, entry, layout, life_lost, check_crc=True)
    index_chunk(chunk)
    if values:
        check_values(directory, chunk)
    return chunk


def verify_chunks(directory: str | os.PathLike, manifest: dict[str, Any],
                  entries: list[dict[str, Any]] | None = None,
                  progress: Callable[[int, int, int], None] | None = None, workers: int = 1) -> int:
    """:func:`verify_chunk` each of ``entries`` (default: every chunk of ``manifest``); the first
    fault in chunk order is raised (a DatasetError naming the file and the problem).
    ``progress(done, total, bytes)`` is called after each chunk, in order. ``workers`` threads
    check chunks side by side (CRC-32 and the value checks release the GIL). Returns the bytes
    read."""
    d = Path(directory)
    lay = Layout.from_manifest(manifest, d)
    life = has_life_lost(manifest)
    entries = manifest["chunks"] if entries is None else entries

    def check(e: dict[str, Any]) -> int:
        verify_chunk(d, e, lay, life)  # the opened chunk (its maps) is dropped at once
        return sum(f["bytes"] for f in file_entries(e))

    nbytes = 0
    with ThreadPoolExecutor(max(1, workers)) as pool:
        for i, size in enumerate(pool.map(check, entries)):
            nbytes += size
            if progress is not None:
                progress(i + 1, len(entries), nbytes)
    return nbytes


def check_files(directory: str | os.PathLike, manifest: dict[str, Any]) -> None:
    """Every file the manifest lists (chunk pickles and sidecar pools) exists with its recorded
    size: cheap (no content read), a DatasetError naming the first file that is not."""
    for e in manifest["chunks"]:
        chunk_files_ok(Path(directory), e)


def verify(directory: str | os.PathLike, values: bool = True) -> tuple[list[str], list[str]]:
    """Check a dataset completely: ``(problems, notes)``; it is good when ``problems`` is empty.

    Every chunk the manifest lists is read (:func:`verify_chunk`: sizes and CRC-32 of its pickle and
    its pools, safe unpickling, every array's dtype and shape, index consistency and, with
    ``values``, finite floats: a NaN or an infinity is stored exactly as it was given, but no
    offline run trains on it). Notes report leftovers of an
    interrupted writer (temp files, chunk files the manifest does not list), which readers ignore.
    """
    d = Path(directory)
    m = read_manifest(d)  # raises: a dataset without a readable manifest has nothing to verify
    lay = Layout.from_manifest(m, d)
    problems: list[str] = []
    for e in m["chunks"]:
        try:
            verify_chunk(d, e, lay, has_life_lost(m), values)
        except DatasetError as err:
            problems.append(str(err))
    listed = files_of(m["chunks"])
    notes = [f"{p}: leftover of an interrupted writer, ignored" for p in sorted(d.iterdir())
             if TMP_RE.match(p.name) or (DATA_FILE_RE.match(p.name) and p.name not in listed)]
    return problems, notes
