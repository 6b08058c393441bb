"""A Minari dataset -> a project dataset, which the offline scripts then train on as on any other
(``--minari_dataset ID``; docs/MINARI.md).

The Minari dataset is checked first (it exists; its environment is one of the registry's and is
``--env`` where given; its spaces are that environment's), then converted once, with the
project's :class:`~blendrl.datasets.DatasetWriter`, into ``{dataset_dir}/minari-{id}``: written in
a temporary folder and renamed, so the folder is either absent or complete, and reused while the
Minari dataset's files are unchanged (``metadata.minari_source`` of its manifest). Everything
else -- verification, marks or evenly spaced limits, the learner signal, training -- is the
offline run's usual path on that folder.

* This project's own export (``metadata["blendrl"]``): the original ``num_envs`` copies, order,
  chunk sizes, marks, logic states, lost lives and manifest metadata are restored exactly (a run on
  it gives the very results of a run on the source dataset); truncations the export made where a
  copy's run ended mid-episode (``infos["cut"]``) are undone.
* Any other (e.g. ``minari.DataCollector`` on gymnasium's CartPole-v1 or MountainCar-v0): one copy,
  its episodes in order, the logic state computed from each observation as the environment does
  (:func:`blendrl.envs.classic.logic_from_observation`); no marks (``--intervals``). Atari data is
  accepted only from this project's exports, which carry the logic states.
"""

from __future__ import annotations

import os
import re
import shutil
import sys
from collections import deque
from pathlib import Path
from typing import Any

import numpy as np

from blendrl.exits import DatasetFault, UsageError
from blendrl.interop.minari_common import METADATA_KEY, minari_spaces, open_minari


def cache_folder(dataset_dir: str | os.PathLike, dataset_id: str) -> Path:
    """The project dataset converted from Minari dataset ``dataset_id``."""
    return Path(dataset_dir) / ("minari-" + re.sub(r"[^A-Za-z0-9._-]", "_", dataset_id))


def import_minari(dataset_id: str, dataset_dir: str | os.PathLike, env: str | None) -> Path:
    """Check Minari dataset ``dataset_id`` (UsageError: unknown id, environment not the registry's
    or not ``env``, other spaces, an unfinished export) and convert it into its cache folder
    unless it is there from the same files; returns the folder."""
    ds = open_minari(dataset_id)
    ours = _our_export(ds)
    spec = env_of(ds, ours, dataset_id)
    if env is not None and env != spec.name:
        raise UsageError(f"--env {env} does not match Minari dataset {dataset_id!r}, which holds "
                         f"{spec.name!r} transitions")
    expected = minari_spaces(spec.name, spec.neural_shape, spec.neural_dtype, spec.n_actions)
    for what, got, want in zip(("observation", "action"), (ds.observation_space, ds.action_space),
                               expected):
        if got != want:
            raise UsageError(f"Minari dataset {dataset_id!r}: its {what} space {got} is not "
                             f"{spec.name}'s {want}")
    dest = cache_folder(dataset_dir, dataset_id)
    stamp = source_stamp(ds, dataset_id)
    if not _converted(dest, stamp):
        print(f"converting Minari dataset {dataset_id} ({ds.total_episodes} episodes, "
              f"{ds.total_steps} steps) into {dest}", file=sys.stderr, flush=True)
        _convert_atomically(ds, spec, ours, dest, stamp)
    return dest


def _our_export(ds: Any) -> dict | None:
    """``metadata["blendrl"]`` of this project's export (None for another dataset); an export
    that was interrupted is a UsageError."""
    ours = ds.storage.metadata.get(METADATA_KEY)
    if not isinstance(ours, dict):
        return None
    if not ours.get("complete"):
        raise UsageError(f"Minari dataset {ds.id!r} is an export that did not finish "
                         "(metadata blendrl.complete false); export it again with --overwrite")
    return ours


def env_of(ds: Any, ours: dict | None, dataset_id: str) -> Any:
    """The registry's EnvSpec of the dataset: an export's recorded env; else the classic-control
    environment whose gymnasium id is the dataset's env spec (UsageError otherwise)."""
    from blendrl.envs import CLASSIC_ENVS, ENV_NAMES, get_spec

    if ours is not None:
        name = ours["source_manifest"]["env"]
        if name not in ENV_NAMES:
            raise UsageError(f"Minari dataset {dataset_id!r} holds {name!r} transitions, not a known "
                             f"environment ({', '.join(ENV_NAMES)})")
        return get_spec(name)
    gym_id = ds.env_spec.id if ds.env_spec is not None else None
    for name in ENV_NAMES:
        if get_spec(name).gym_id == gym_id:
            if name not in CLASSIC_ENVS:
                raise UsageError(f"Minari dataset {dataset_id!r} holds {gym_id} observations: Atari "
                                 "data is imported only from this project's exports (they carry "
                                 "the logic states)")
            return get_spec(name)
    raise UsageError(f"Minari dataset {dataset_id!r} was recorded on {gym_id or 'no env spec'}, "
                     f"not an environment of this project (supported: "
                     f"{', '.join(get_spec(n).gym_id for n in CLASSIC_ENVS)}, or this project's exports)")


def source_stamp(ds: Any, dataset_id: str) -> dict:
    """What identifies the Minari dataset's files: id, sizes, each file's size and mtime."""
    files = sorted(p for p in Path(ds.storage.data_path).rglob("*") if p.is_file())
    return {"dataset_id": dataset_id, "total_episodes": int(ds.total_episodes),
            "total_steps": int(ds.total_steps),
            "files": [[p.name, p.stat().st_size, p.stat().st_mtime_ns] for p in files]}


def _converted(dest: Path, stamp: dict) -> bool:
    """Whether ``dest`` holds the conversion of the files ``stamp`` describes."""
    from blendrl.datasets import MANIFEST_NAME, DatasetError, read_manifest

    if not (dest / MANIFEST_NAME).is_file():
        return False
    try:
        return read_manifest(dest).get("metadata", {}).get("minari_source") == stamp
    except DatasetError:
        return False


def _convert_atomically(ds: Any, spec: Any, ours: dict | None, dest: Path, stamp: dict) -> None:
    """Convert into a temporary folder next to ``dest``, then rename it to ``dest`` (replacing a
    conversion of older files; another job that converted the same files first wins)."""
    from blendrl.datasets import DatasetError, DatasetWriter

    tmp = dest.parent / f".{dest.name}.tmp-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    dest.parent.mkdir(parents=True, exist_ok=True)
    try:
        convert(ds, spec, ours, tmp, stamp)
        if dest.exists() and not _converted(dest, stamp):
            DatasetWriter.remove(dest)
        try:
            os.rename(tmp, dest)
        except OSError:
            if not _converted(dest, stamp):
                raise
    except DatasetError as e:
        raise DatasetFault(f"Minari dataset {stamp['dataset_id']!r}: {e}") from e
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def convert(ds: Any, spec: Any, ours: dict | None, directory: Path, stamp: dict) -> None:
    """Write the Minari dataset's transitions as a project dataset in (new) ``directory``."""
    from blendrl.datasets import DatasetWriter

    src = ours["source_manifest"] if ours else {}
    metadata = {**src.get("metadata", {}), "minari_source": stamp}
    n = int(src.get("num_envs", 1))
    writer = DatasetWriter(directory, env=spec.name, num_envs=n, logic_shape=spec.logic_shape,
                           neural_shape=spec.neural_shape, neural_dtype=spec.neural_dtype,
                           n_actions=spec.n_actions, chunk_size=int(src.get("chunk_rows", 50_000)),
                           metadata=metadata)
    try:
        steps = StepAssembler(writer, n, np.cumsum(ours["chunks"]).tolist() if ours else [])
        for episode in ds.iterate_episodes():
            steps.add(episode_transitions(episode, spec, ours))
        steps.finish(int(src["count"]) if ours else ds.total_steps)
        for mark in src.get("marks", []):
            writer.mark(int(mark))
        if src.get("writer_finished", True):
            writer.finish()
    finally:
        writer.close()


def episode_transitions(ep: Any, spec: Any, ours: dict | None) -> dict:
    """One Minari episode as the writer's per-transition arrays (``index``: each transition's
    original position where the export recorded it; ``copy``: its environment copy)."""
    from blendrl.envs.classic import logic_from_observation

    obs, steps = np.asarray(ep.observations), len(ep.rewards)
    if obs.shape != (steps + 1, *spec.neural_shape) or obs.dtype != spec.neural_dtype:
        raise DatasetFault(f"Minari episode {ep.id}: observations {obs.dtype} {obs.shape}, expected "
                           f"{np.dtype(spec.neural_dtype)} {(steps + 1, *spec.neural_shape)}")
    infos = ep.infos or {}
    truncated = np.asarray(ep.truncations, bool)
    if ours:
        logic = np.asarray(infos["logic_state"], np.float32)
        truncated = truncated & ~np.asarray(infos["cut"][1:], bool)
    else:
        logic = logic_from_observation(spec, obs)
    out = {"logic": logic[:-1], "neural": obs[:-1], "action": np.asarray(ep.actions, np.int64),
           "reward": np.asarray(ep.rewards, np.float64), "next_logic": logic[1:],
           "next_neural": obs[1:], "terminated": np.asarray(ep.terminations, bool),
           "truncated": truncated,
           "index": np.asarray(infos["transition_index"][1:]) if ours else None,
           "copy": int(infos["env_index"][0]) if ours else 0}
    life = ours and ours["source_manifest"].get("has_life_lost")
    out["life_lost"] = np.asarray(infos["life_lost"][1:], bool) if life else None
    return out


FIELDS = ("logic", "neural", "action", "reward", "next_logic", "next_neural", "terminated",
          "truncated", "life_lost")
"""The per-transition arrays, in ``DatasetWriter.add``'s order."""


class StepAssembler:
    """Episodes of ``num_envs`` copies -> ``DatasetWriter.add`` one step of every copy at a time.

    Episodes arrive ordered by their first transition (as exported); each copy's are queued, and
    a step is written as soon as every copy has its transition of that step. Where episodes carry
    their original positions, each must be the step-major one (``t * num_envs + i``). The writer
    is flushed at ``boundaries`` (transition counts: the source's chunk ends)."""

    def __init__(self, writer: Any, num_envs: int, boundaries: list[int]):
        self.writer, self.n, self.boundaries = writer, num_envs, set(boundaries)
        self.queues: list[deque] = [deque() for _ in range(num_envs)]
        self.pos = [0] * num_envs  # rows of each queue's head already written

    def add(self, transitions: dict) -> None:
        """Queue one episode's transitions (:func:`episode_transitions`) and write what steps can be."""
        i = transitions["copy"]
        if not 0 <= i < self.n:
            raise DatasetFault(f"a Minari episode of environment copy {i}, beyond the {self.n} copies")
        if len(transitions["reward"]):
            self.queues[i].append(transitions)
        while all(self.queues):
            self._write(min(len(q[0]["reward"]) - p for q, p in zip(self.queues, self.pos)))

    def _write(self, k: int) -> None:
        """Write the next ``k`` steps (every copy's head holds them)."""
        heads = [q[0] for q in self.queues]
        for j in range(k):
            rows = [p + j for p in self.pos]
            t = self.writer.count // self.n
            for i, (h, r) in enumerate(zip(heads, rows)):
                if h["index"] is not None and int(h["index"][r]) != t * self.n + i:
                    raise DatasetFault(f"Minari export: transition {int(h['index'][r])} of copy {i} "
                                       f"where transition {t * self.n + i} belongs")
            self.writer.add(*(None if heads[0][f] is None else np.stack([h[f][r] for h, r in
                                                                          zip(heads, rows)])
                              for f in FIELDS))
            if self.writer.count in self.boundaries:
                self.writer.flush()
        for i, q in enumerate(self.queues):
            self.pos[i] += k
            if self.pos[i] == len(q[0]["reward"]):
                q.popleft()
                self.pos[i] = 0

    def finish(self, count: int) -> None:
        """Every queued transition written, ``count`` in all (a DatasetFault otherwise)."""
        left = sum(len(t["reward"]) for q in self.queues for t in q) - sum(self.pos)
        if left or self.writer.count != count:
            raise DatasetFault(f"Minari dataset: {self.writer.count} transitions make whole steps of "
                               f"{self.n} copies, {left} left over; {count} expected")
