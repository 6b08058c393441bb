"""A project dataset -> a Minari dataset (``python dataset_utils.py export-minari``; docs/MINARI.md).

The dataset is read with the project's :class:`~blendrl.datasets.DatasetReader` (every chunk
CRC-checked first) in windows of whole environment steps, each window with one step more to see
whether a copy's next state is the state it goes on from. Each of the ``num_envs`` copies is cut
into episodes at its terminations and truncations, and where its run ended mid-episode or its
next state is not the state it goes on from (a *cut*: exported as a truncation, ``infos["cut"]``
True). Every window hands Minari, in one ``storage.update_episodes`` call, the pieces it holds of
each copy's episode: a new episode is created with its first piece (ids in the order of the
episodes' first transitions), a longer one grows piece by piece under its id. Memory therefore
stays that of one window (about ``window_bytes``) whatever the dataset's size or episode lengths.
"""

from __future__ import annotations

import contextlib
import dataclasses
import io
import os
import warnings
from pathlib import Path
from typing import Any, Callable

import numpy as np

from blendrl.exits import UsageError
from blendrl.interop.minari_common import (EXPORT_FORMAT, METADATA_KEY, check_dataset_id,
                                           minari_exists, minari_spaces)

WINDOW_BYTES = 32 << 20
"""About how many bytes of states (both states of each transition) one window reads."""


def export_minari(directory: str | os.PathLike, dataset_id: str, *, overwrite: bool = False,
                  partial: bool = False, window_bytes: int = WINDOW_BYTES,
                  say: Callable[[str], None] | None = None) -> dict:
    """Write the dataset in ``directory`` as the Minari dataset ``dataset_id`` into Minari's
    dataset folder (``MINARI_DATASETS_PATH``); returns a summary (episodes, steps, cuts, path).

    Before any work: a bad id, an existing id without ``overwrite``, an empty dataset or one its
    online run did not finish (without ``partial``) is a UsageError; a broken manifest or chunk
    is a DatasetError (naming the file)."""
    from blendrl.datasets import DatasetReader

    manifest = _check(Path(directory), dataset_id, overwrite, partial)
    reader = DatasetReader(directory, manifest=manifest, verify=True)
    if overwrite and minari_exists(dataset_id):
        import minari

        with contextlib.redirect_stdout(io.StringIO()):  # it prints "Dataset ... deleted!"
            minari.delete_dataset(dataset_id)
    dataset = _create(dataset_id, reader)
    info = export_metadata(reader, Path(directory))
    dataset.storage.update_metadata({METADATA_KEY: info})  # "complete": False until the end
    pieces = EpisodePieces(dataset.storage, reader)
    n = reader.num_envs
    per_row = 2 * (int(np.prod(reader.neural_shape)) * reader.neural_dtype.itemsize
                   + int(np.prod(reader.logic_shape)) * 4)
    rows = max(n, window_bytes // per_row // n * n)
    for start in range(0, len(reader), rows):
        pieces.add_window(start, min(start + rows, len(reader)))
        if say is not None:
            say(f"{min(start + rows, len(reader))}/{len(reader)} transitions exported")
    info.update(complete=True, episodes=pieces.episodes, cut_episodes=pieces.cuts)
    dataset.storage.update_metadata({METADATA_KEY: info})
    return {"dataset_id": dataset_id, "path": str(dataset.storage.data_path.parent),
            "episodes": pieces.episodes, "steps": len(reader), "cut_episodes": pieces.cuts}


def _check(directory: Path, dataset_id: str, overwrite: bool, partial: bool) -> dict:
    """The source's manifest, after the checks that need no reading of chunks."""
    from blendrl.datasets import read_manifest, writer_finished

    check_dataset_id(dataset_id)
    if minari_exists(dataset_id) and not overwrite:
        raise UsageError(f"Minari dataset {dataset_id!r} exists already; pass --overwrite to "
                         "replace it")
    manifest = read_manifest(directory)
    if manifest["count"] == 0:
        raise UsageError(f"dataset {directory} is empty (0 transitions): nothing to export")
    if not writer_finished(manifest) and not partial:
        raise UsageError(f"dataset {directory} was not finished by its online run (writer_finished "
                         "false); pass --partial-dataset to export what it holds (recorded in the "
                         "Minari metadata)")
    return manifest


def _create(dataset_id: str, reader: Any) -> Any:
    """An empty Minari dataset with the source's spaces (raw arrays: no JPEG), its env spec where
    the environment is a gymnasium classic-control one (Atari frames are this project's own
    preprocessing: no gymnasium spec describes them)."""
    import minari

    from blendrl.envs import ENV_NAMES, get_spec

    env = reader.env
    obs_space, act_space = minari_spaces(env, reader.neural_shape, reader.neural_dtype, reader.n_actions)
    gym_env = get_spec(env).gym_id if env in ENV_NAMES and not get_spec(env).is_image else None
    meta = reader.metadata
    with warnings.catch_warnings():  # author, permalink, eval env: not known here
        warnings.simplefilter("ignore")
        return minari.create_dataset_from_buffers(
            dataset_id, [], env=gym_env, observation_space=obs_space, action_space=act_space,
            algorithm_name=str(meta.get("method") or "unknown"), data_format="hdf5",
            description=(f"{env} transitions of run {meta.get('run_id', '?')} "
                         "(blendrl dataset, exported by dataset_utils.py export-minari)"),
            jpeg_encoding=False)


def export_metadata(reader: Any, directory: Path) -> dict:
    """``metadata["blendrl"]`` of an export: what rebuilds the source exactly (env, copies, count,
    marks, chunk sizes, shapes) and the source manifest's essentials."""
    m = reader.manifest
    keep = ("format_version", "env", "num_envs", "n_actions", "logic_shape", "neural_shape",
            "neural_dtype", "neural_encoding", "has_life_lost", "chunk_rows", "count", "marks",
            "metadata", "writer_finished", "created_at", "updated_at")
    return {"format": EXPORT_FORMAT, "complete": False, "source_path": str(directory.resolve()),
            "source_manifest": {k: m[k] for k in keep if k in m},
            "chunks": [int(e["count"]) for e in m["chunks"]],
            "signal": dataclasses.asdict(learner_signal(m))}


def learner_signal(manifest: dict) -> Any:
    """The learner signal the dataset's online run used (its metadata, else the environment's
    default; raw reward without lives for an environment the registry does not know)."""
    from blendrl.algos.signal import LearnerSignal, resolve_signal
    from blendrl.envs import ENV_NAMES, get_spec

    meta, env = manifest.get("metadata", {}), manifest["env"]
    if env not in ENV_NAMES:
        return LearnerSignal(meta.get("reward_transform") or "none", bool(meta.get("life_loss_terminal")))
    spec = get_spec(env)
    return resolve_signal(meta.get("reward_transform"), meta.get("life_loss_terminal"), env=env,
                          has_lives=spec.has_lives, is_atari=spec.is_image)


class EpisodePieces:
    """The episodes of each copy, handed to Minari window by window (module docstring)."""

    def __init__(self, storage: Any, reader: Any):
        self.storage, self.reader = storage, reader
        self.signal = learner_signal(reader.manifest)
        self.open_id = [-1] * reader.num_envs  # each copy's unfinished episode (-1: none)
        self.steps: dict[int, int] = {}  # steps of each unfinished episode so far
        self.episodes = self.cuts = 0

    def add_window(self, start: int, stop: int) -> None:
        """Export the transitions ``[start, stop)`` (whole steps): one ``update_episodes`` call
        with the pieces of the open episodes first, then the new episodes by their start."""
        from minari.data_collector import EpisodeBuffer

        n = self.reader.num_envs
        b = self.reader.get(np.arange(start, min(stop + n, len(self.reader))))
        rows = stop - start
        ended = b.terminated[:rows] | b.truncated[:rows]
        cut = ~ended & ~_goes_on(b, rows, n)
        end = ended | cut
        pieces = []  # (rows of the piece, copy, id of the episode it grows or -1 for a new one)
        for i in range(n):
            mine = np.arange(i, rows, n)
            for k, piece in enumerate(np.split(mine, np.flatnonzero(end[mine]) + 1)):
                if piece.size:
                    pieces.append((piece, i, self.open_id[i] if k == 0 else -1))
        pieces.sort(key=lambda p: (p[2] < 0, int(p[0][0])))
        buffers, grown = [], []
        for piece, i, ep_id in pieces:
            if ep_id >= 0:
                grown.append(ep_id)
            else:
                ep_id, self.episodes = self.episodes, self.episodes + 1
            self.steps[ep_id] = self.steps.get(ep_id, 0) + piece.size
            self.open_id[i] = -1 if end[piece[-1]] else ep_id
            arrays = piece_arrays(b, start, piece, i, ep_id not in grown, cut, self.signal,
                                  self.reader.has_life_lost)
            buffers.append(EpisodeBuffer(id=ep_id, **arrays))
        self.storage.update_episodes(buffers)
        if grown:  # minari records the last piece's length as the episode's total_steps
            self.storage.update_episode_metadata([{"total_steps": self.steps[e]} for e in grown], grown)
        self.steps = {e: k for e, k in self.steps.items() if e in self.open_id}
        self.cuts += int(cut.sum())


def piece_arrays(b: Any, start: int, piece: np.ndarray, i: int, fresh: bool, cut: np.ndarray,
                 signal: Any, life: bool) -> dict:
    """The EpisodeBuffer fields of the transitions ``piece`` (rows of the window's batch ``b``,
    which starts at transition ``start``) of copy ``i``: observations are the next states, led by
    the first state where the piece begins an episode (``fresh``). Infos follow the observations
    (gymnasium's convention: ``infos[k + 1]`` comes with transition ``k``; a fresh episode's
    ``infos[0]`` holds the first state's logic state and placeholders)."""
    reward, term = b.reward[piece], b.terminated[piece]
    life_lost = b.life_lost[piece] if life else None
    infos = {"logic_state": b.next_logic_state[piece],
             "transition_index": (start + piece).astype(np.int64),
             "env_index": np.full(piece.size, i, np.int64),
             "cut": cut[piece],
             "learner_reward": signal.reward_np(reward),
             "learner_no_bootstrap": signal.no_bootstrap_np(term, life_lost)}
    if life:
        infos["life_lost"] = life_lost
    obs = b.next_neural_state[piece]
    if fresh:
        obs = np.concatenate([b.neural_state[piece[:1]], obs])
        first = {"logic_state": b.logic_state[piece[:1]], "transition_index": np.array([-1]),
                 "env_index": np.array([i])}
        infos = {k: np.concatenate([first.get(k, np.zeros(1, v.dtype)).astype(v.dtype), v])
                 for k, v in infos.items()}
    return {"observations": obs, "actions": b.action[piece], "rewards": reward,
            "terminations": term, "truncations": b.truncated[piece] | cut[piece], "infos": infos}


def _goes_on(b: Any, rows: int, n: int) -> np.ndarray:
    """For each of the first ``rows`` transitions of batch ``b``: whether its next state is bit
    for bit the state of the same copy's next transition (False where ``b`` has none)."""
    out = np.zeros(rows, bool)
    k = min(rows, len(b.reward) - n)
    if k > 0:
        out[:k] = (_same(b.next_logic_state[:k], b.logic_state[n:n + k])
                   & _same(b.next_neural_state[:k], b.neural_state[n:n + k]))
    return out


def _same(a: np.ndarray, c: np.ndarray) -> np.ndarray:
    """Row-wise bit equality of two arrays of the same shape and dtype."""
    a, c = np.ascontiguousarray(a), np.ascontiguousarray(c)
    return (a.reshape(len(a), -1).view(np.uint8) == c.reshape(len(c), -1).view(np.uint8)).all(1)
