"""Shared plumbing of the classic-control environments (gymnasium, vector observations).

The logic state of a classic-control environment is its observation vector reshaped into
``[n_objects, n_features]`` (bit-exact, float32); the neural state is the observation itself.
"""

from __future__ import annotations

import functools
import os

import gymnasium as gym
import numpy as np
import torch
from gymnasium.vector import AutoresetMode

from blendrl.envs import snapshot
from blendrl.envs.base import EnvSpec, FirstEpisodeFrames, VecEnv

_WRAPPER_FIELDS = ("_elapsed_steps", "_has_reset")
"""What the wrappers of ``gym.make`` carry from step to step (TimeLimit's counter, OrderEnforcing's
flag)."""
_ENV_FIELDS = ("state", "steps_beyond_terminated")
"""What a classic-control environment carries: its physics state (CartPole, MountainCar) and
CartPole's count of steps past termination."""


class Snapshots(gym.Wrapper):
    """Adds :attr:`env_state` (:mod:`blendrl.envs.snapshot`) to a ``gym.make`` classic-control
    environment; steps, resets and observations pass through untouched."""

    def _layers(self) -> list[gym.Env]:
        layers, env = [], self.env
        while isinstance(env, gym.Wrapper):
            layers.append(env)
            env = env.env
        return [*layers, env]

    @property
    def env_state(self) -> dict:
        return snapshot.or_error(self._snapshot)

    def _snapshot(self) -> dict:
        *wrappers, env = self._layers()
        if env._np_random is None:
            raise snapshot.SnapshotError("call reset() before taking a snapshot")
        fields = {}
        for name in _ENV_FIELDS:
            if name in vars(env):
                v = getattr(env, name)
                fields[name] = snapshot.array(v) if isinstance(v, np.ndarray) else snapshot.encode_value(v, name)
        return {"version": snapshot.SNAPSHOT_VERSION, "kind": "classic",
                "layers": [type(x).__name__ for x in (*wrappers, env)],
                "wrappers": [{n: getattr(w, n) for n in _WRAPPER_FIELDS if n in vars(w)} for w in wrappers],
                "fields": fields, "rng": snapshot.generator_state(env.np_random)}

    @env_state.setter
    def env_state(self, state: dict) -> None:
        *wrappers, env = self._layers()
        snapshot.check_version(state, type(env).__name__)
        layers = [type(x).__name__ for x in (*wrappers, env)]
        if state.get("kind") != "classic" or state.get("layers") != layers:
            raise snapshot.SnapshotError(f"a snapshot of {state.get('layers')} cannot be restored "
                                         f"into {layers}")
        try:  # everything decoded and checked before anything is changed
            saved_wrappers = [dict(w) for w in state["wrappers"]]
            if len(saved_wrappers) != len(wrappers) or any(
                    set(saved) - set(_WRAPPER_FIELDS) for saved in saved_wrappers):
                raise snapshot.SnapshotError(f"wrapper fields {saved_wrappers} do not fit {layers}")
            fields = {}
            for name, value in state["fields"].items():
                if name not in _ENV_FIELDS:
                    raise snapshot.SnapshotError(f"{name!r} is not a field a snapshot restores")
                fields[name] = (value.cpu().numpy().copy() if isinstance(value, torch.Tensor)
                                else snapshot.decode_value(value, _no_class))
            rng = state["rng"]
            type(env.np_random.bit_generator)().state = rng  # refused here, not half-way
        except snapshot.SnapshotError:
            raise
        except Exception as e:  # noqa: BLE001 -- a malformed snapshot, whatever broke
            raise snapshot.SnapshotError(f"not a snapshot of this env: {type(e).__name__}: {e}") from e
        snapshot.set_generator_state(env.np_random, rng)
        for w, saved in zip(wrappers, saved_wrappers):
            for name, value in saved.items():
                setattr(w, name, value)
        for name, value in fields.items():
            setattr(env, name, value)


def _no_class(module: str, name: str) -> type:
    raise snapshot.SnapshotError(f"a classic-control snapshot names a class ({module}.{name})")


def logic_from_observation(spec: EnvSpec, obs: np.ndarray) -> np.ndarray:
    """The logic state of classic-control observations (float32 ``[..., *neural_shape]``): the
    observation reshaped into ``[..., n_objects, n_features]`` (bit-exact; a view where it can
    be). The one definition the environment and a dataset imported from raw observations
    (:mod:`blendrl.interop.minari_import`) share."""
    obs = np.asarray(obs, dtype=np.float32)
    lead = obs.shape[:obs.ndim - len(spec.neural_shape)]
    return obs.reshape(*lead, *spec.logic_shape)


def make_classic_vec(spec: EnvSpec, num_envs: int, *, video: bool = False) -> VecEnv:
    """A synchronous vector env of ``spec.gym_id`` whose observation is reshaped into objects;
    with ``video``, copy 0 renders ``rgb_array`` (gymnasium's own drawing) and reports the
    frames of its first episode (:class:`~blendrl.envs.base.FirstEpisodeFrames`)."""
    if num_envs < 1:
        raise ValueError(f"num_envs must be positive, got {num_envs}")
    # what gym.make_vec(..., vectorization_mode="sync", wrappers=[Snapshots]) builds, copy by copy
    fns = [functools.partial(_classic_copy, spec, video and i == 0) for i in range(num_envs)]
    vec = gym.vector.SyncVectorEnv(fns, autoreset_mode=AutoresetMode.SAME_STEP)

    def split(obs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        neural = np.asarray(obs, dtype=np.float32)
        return logic_from_observation(spec, neural).copy(), neural

    def split_one(obs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        neural = np.asarray(obs, dtype=np.float32)
        return logic_from_observation(spec, neural), neural

    return VecEnv(spec, vec, split, split_one)


def _classic_copy(spec: EnvSpec, frames: bool) -> gym.Env:
    """One copy: ``gym.make`` with the spec's time limit, :class:`Snapshots`, and with ``frames``
    the ``rgb_array`` frames of its first episode in its info."""
    if frames:  # gymnasium draws with pygame, whose init would look for a sound card and a display
        for variable in ("SDL_AUDIODRIVER", "SDL_VIDEODRIVER"):
            os.environ.setdefault(variable, "dummy")
    env = Snapshots(gym.make(spec.gym_id, max_episode_steps=spec.max_episode_steps,
                             render_mode="rgb_array" if frames else None))
    return FirstEpisodeFrames(env) if frames else env
