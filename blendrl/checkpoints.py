"""Checkpoints (written atomically, loaded without running code from the file) and what
``--resume`` may change: the Args as plain data, the :data:`RESUME_FREE` marker of the fields a
resumed run may change, and the fixed fields that changed."""

from __future__ import annotations

import io
import json
import typing
from dataclasses import asdict, fields, is_dataclass
from pathlib import Path
from typing import Any

import torch

from blendrl.file_io import _json_default, atomic_write_bytes
from blendrl.exits import RunError

CHECKPOINT_FORMAT_VERSION = 1


def save_checkpoint(path: Path, payload: dict) -> None:
    """Atomic, self-describing checkpoint (``format_version`` added)."""
    buf = io.BytesIO()
    torch.save({"format_version": CHECKPOINT_FORMAT_VERSION, **payload}, buf)
    atomic_write_bytes(path, buf.getvalue())


def load_checkpoint(path: Path, map_location: str | torch.device = "cpu") -> dict:
    """Load a checkpoint written by :func:`save_checkpoint` with ``weights_only=True``
    (tensors and plain containers only: loading never runs code from the file)."""
    try:
        ckpt = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as e:  # noqa: BLE001
        raise RunError(f"cannot read checkpoint {path}: {e}") from e
    if ckpt.get("format_version") != CHECKPOINT_FORMAT_VERSION:
        raise RunError(f"{path}: checkpoint format {ckpt.get('format_version')!r} is not "
                       f"{CHECKPOINT_FORMAT_VERSION}")
    return ckpt


# --------------------------------------------------------------------------- what --resume fixes

def args_to_dict(args: Any) -> dict:
    """A tyro/dataclass ``Args`` as a JSON-friendly dict."""
    d = asdict(args) if is_dataclass(args) else dict(vars(args))
    return json.loads(json.dumps(d, default=_json_default))


class _ResumeFree:
    """Annotation metadata of an Args field that ``--resume`` may change (where and how a run
    runs, not what it computes): ``threads: Annotated[int | None, RESUME_FREE] = None``."""

    def __repr__(self) -> str:
        return "RESUME_FREE"


RESUME_FREE = _ResumeFree()


def resume_fixed_fields(cls: type) -> tuple[str, ...]:
    """The fields of the Args dataclass ``cls`` that ``--resume`` refuses to change: every field
    not marked :data:`RESUME_FREE`, so that a new flag is fixed unless it says otherwise."""
    hints = typing.get_type_hints(cls, include_extras=True)
    return tuple(f.name for f in fields(cls)
                 if not any(m is RESUME_FREE for m in getattr(hints[f.name], "__metadata__", ())))


def resume_changes(cls: type, before: dict[str, Any], now: dict[str, Any]) -> list[str]:
    """``--flag old -> new`` for each fixed field of ``cls`` whose value differs from the
    checkpoint's args (a field the checkpoint lacks counts as unchanged: older code had none)."""
    return [f"--{k} {before.get(k)!r} -> {now[k]!r}" for k in resume_fixed_fields(cls)
            if k in now and k in before and before[k] != now[k]]
