"""``manifest.json``: reading it with every check, and the questions asked of it."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from blendrl.datasets.layout import (CHUNK_RE, FORMAT_VERSION, MANIFEST_NAME, READABLE_VERSIONS,
                                     SIDECARS, DatasetError, Layout, sidecar_name)


def check_version(version: Any, where: Path | str) -> None:
    """A DatasetError unless this code reads ``version``; a newer one is named as such."""
    if isinstance(version, int) and not isinstance(version, bool) and version > FORMAT_VERSION:
        raise DatasetError(f"{where}: format version {version} is newer than this reader (knows "
                           f"{FORMAT_VERSION}); update the code to read it")
    if version not in READABLE_VERSIONS or isinstance(version, bool):
        raise DatasetError(f"{where}: unknown format_version {version!r} (this reader knows "
                           f"{', '.join(map(str, READABLE_VERSIONS))})")


def _check_sidecars(e: dict[str, Any], path: Path) -> None:
    side = e["sidecars"]
    if not isinstance(side, dict) or sorted(side) != sorted(SIDECARS):
        raise DatasetError(f"{path}: chunk {e['file']}: sidecars must be {list(SIDECARS)}")
    for pool in SIDECARS:
        f = side[pool]
        if not isinstance(f, dict) or f.get("file") != sidecar_name(e["file"], pool):
            raise DatasetError(f"{path}: chunk {e['file']}: bad {pool} sidecar {f!r}")
        for key in ("bytes", "crc32"):
            if not isinstance(f.get(key), int) or isinstance(f.get(key), bool) or f[key] < 0:
                raise DatasetError(f"{path}: sidecar {f['file']}: bad {key} {f.get(key)!r}")


def read_manifest(directory: Path) -> dict[str, Any]:
    """Read and check ``manifest.json`` (version, layout, chunk list contiguity, sidecars, marks)."""
    path = directory / MANIFEST_NAME
    if not path.is_file():
        raise DatasetError(f"{directory}: not a dataset (no {MANIFEST_NAME})")
    try:
        m = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise DatasetError(f"{path}: unreadable manifest ({e})") from e
    if not isinstance(m, dict):
        raise DatasetError(f"{path}: a manifest is a JSON object")
    check_version(m.get("format_version"), path)
    lay = Layout.from_manifest(m, path)
    if m["format_version"] >= 2 and not isinstance(m.get("has_life_lost"), bool):
        raise DatasetError(f"{path}: has_life_lost must be true or false, got {m.get('has_life_lost')!r}")
    try:
        pos = 0
        for e in m["chunks"]:
            if not CHUNK_RE.match(str(e["file"])):
                raise DatasetError(f"{path}: bad chunk file name {e['file']!r}")
            for key in ("start", "count", "bytes", "crc32", "n_keys", "n_next"):
                if not isinstance(e[key], int) or isinstance(e[key], bool) or e[key] < 0:
                    raise DatasetError(f"{path}: chunk {e['file']}: bad {key} {e[key]!r}")
            if "sidecars" in e:
                if m["format_version"] < 2:
                    raise DatasetError(f"{path}: chunk {e['file']}: sidecar pools in a format-1 manifest")
                _check_sidecars(e, path)
            if e["start"] != pos or e["count"] == 0 or e["count"] % lay.num_envs:
                raise DatasetError(f"{path}: chunk {e['file']} covers [{e['start']}, "
                                   f"{e['start'] + e['count']}), expected a whole number of steps from {pos}")
            pos += e["count"]
        if m["count"] != pos:
            raise DatasetError(f"{path}: count {m['count']} but the chunks hold {pos} transitions")
        marks = m["marks"]
        if any(not isinstance(x, int) for x in marks) or marks != sorted(set(marks)) or \
                (marks and (marks[0] < 0 or marks[-1] > pos)):
            raise DatasetError(f"{path}: marks must be sorted distinct counts in [0, {pos}]")
        if not isinstance(m.get("writer_finished", True), bool):
            raise DatasetError(f"{path}: writer_finished must be true or false")
        if not isinstance(m.get("writer_stopped", ""), str):
            raise DatasetError(f"{path}: writer_stopped must be a string")
        if not isinstance(m.get("metadata", {}), dict):
            raise DatasetError(f"{path}: metadata must be an object")
    except (KeyError, TypeError) as e:
        raise DatasetError(f"{path}: malformed manifest ({e!r})") from e
    return m


def has_life_lost(manifest: dict[str, Any]) -> bool:
    """Whether a dataset records ``life_lost`` (never in format 1)."""
    return manifest["format_version"] >= 2 and bool(manifest.get("has_life_lost", False))


def writer_finished(manifest: dict[str, Any]) -> bool:
    """Whether the online run that wrote the dataset finished it (``DatasetWriter.finish``).
    A manifest without the field was written before it existed and counts as finished."""
    return bool(manifest.get("writer_finished", True))


def writer_stopped(manifest: dict[str, Any]) -> str | None:
    """Why the online run writing the dataset failed (``DatasetWriter.stop``), while no writer
    has reopened it; None otherwise."""
    return None if writer_finished(manifest) else manifest.get("writer_stopped")


def files_of(entries: list[dict[str, Any]]) -> set[str]:
    """Every file the given chunk entries are made of (pickles and sidecar pools)."""
    files = set()
    for e in entries:
        files.add(e["file"])
        files.update(side["file"] for side in e.get("sidecars", {}).values())
    return files


def file_entries(e: dict[str, Any]) -> list[dict[str, Any]]:
    """A chunk entry's files as ``{"file", "bytes", "crc32"}``: its pickle, then its sidecars."""
    return [e, *(e["sidecars"][pool] for pool in SIDECARS if "sidecars" in e)]


def chunks_below(manifest: dict[str, Any], limit: int) -> list[dict[str, Any]]:
    """The chunk entries that hold any of the first ``limit`` transitions."""
    return [e for e in manifest["chunks"] if e["start"] < limit]


def pool_bytes(manifest: dict[str, Any], limit: int) -> int:
    """Bytes of the state pools (logic and neural) of the chunks that hold the first ``limit``
    transitions: what a reader maps, or a device pool holds."""
    lay = Layout.from_manifest(manifest, MANIFEST_NAME)
    return sum(lay.pools_of(e).nbytes() for e in chunks_below(manifest, limit))
