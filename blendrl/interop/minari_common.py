"""What the Minari export and import share (docs/MINARI.md): the observation and action spaces of
an environment, the dataset-metadata key of this project's exports, and opening a Minari dataset
by id with one-line errors. ``minari`` is imported inside the functions."""

from __future__ import annotations

from typing import Any

import numpy as np

from blendrl.exits import UsageError

METADATA_KEY = "blendrl"
"""The Minari dataset-metadata key under which an export of this project records what Minari has
no field for (env, copies, marks, chunks, the source manifest's essentials)."""
EXPORT_FORMAT = 1
"""Version of what an export puts in infos and metadata (``metadata["blendrl"]["format"]``)."""


def minari_spaces(env: str, neural_shape: tuple, neural_dtype: Any, n_actions: int) -> tuple[Any, Any]:
    """(observation space, action space) of an environment's neural states and actions.

    A classic-control environment of the registry: its gymnasium observation space (bounds
    included, as a ``minari.DataCollector`` on it records); frames: ``Box(0, 255)`` of the stack's
    shape, uint8; anything else: an unbounded ``Box`` of the shape and dtype. Actions:
    ``Discrete(n_actions)``."""
    import gymnasium as gym

    from blendrl.envs import ENV_NAMES, get_spec

    dtype = np.dtype(neural_dtype)
    if env in ENV_NAMES and not get_spec(env).is_image:
        space = gym.make(get_spec(env).gym_id).observation_space
    elif len(neural_shape) == 3 and dtype == np.uint8:
        space = gym.spaces.Box(0, 255, tuple(neural_shape), np.uint8)
    else:
        space = gym.spaces.Box(-np.inf, np.inf, tuple(neural_shape), dtype)
    return space, gym.spaces.Discrete(int(n_actions))


def check_dataset_id(dataset_id: str) -> None:
    """A UsageError unless ``dataset_id`` is a Minari id ``(NAMESPACE/)NAME-vN``."""
    from minari.dataset.minari_dataset import parse_dataset_id

    try:
        parse_dataset_id(dataset_id)
    except (ValueError, TypeError) as e:  # TypeError: minari's int() of a missing version
        raise UsageError(f"bad Minari dataset id {dataset_id!r}: expected NAMESPACE/NAME-vN (N a "
                         "number; the namespace optional, of 2 characters or more)") from e


def minari_exists(dataset_id: str) -> bool:
    """Whether Minari's dataset folder (``MINARI_DATASETS_PATH``, else ``~/.minari/datasets``)
    holds something under ``dataset_id``."""
    from minari.storage import get_dataset_path

    return get_dataset_path(dataset_id).exists()


def open_minari(dataset_id: str) -> Any:
    """``minari.load_dataset(dataset_id)`` (local only, never downloaded); an unknown or
    unreadable id is a UsageError naming Minari's dataset folder."""
    import minari
    from minari.storage import get_dataset_path

    check_dataset_id(dataset_id)
    if not minari_exists(dataset_id):
        raise UsageError(f"no Minari dataset {dataset_id!r} in {get_dataset_path()} "
                         "(MINARI_DATASETS_PATH); `minari list local` lists them")
    try:
        return minari.load_dataset(dataset_id)
    except Exception as e:  # noqa: BLE001 -- whatever minari or h5py raise for a bad folder
        raise UsageError(f"cannot open Minari dataset {dataset_id!r}: {type(e).__name__}: {e}") from e
