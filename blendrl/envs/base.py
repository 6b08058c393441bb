"""The environment interface shared by every environment of the project.

Every environment gives, for a batch of ``num_envs`` parallel copies:

* a **logic state** ``float32 [num_envs, n_objects, n_features]`` (object-centric; the rows are
  the object slots named in :attr:`EnvSpec.objects`, the columns the features named in
  :attr:`EnvSpec.features`);
* a **neural state** ``[num_envs, *EnvSpec.neural_shape]`` of ``EnvSpec.neural_dtype``;
* ``terminated`` and ``truncated`` kept apart;
* the true final state of an episode that ended (``next_logic`` / ``next_neural`` of a
  :class:`StepBatch`), never the reset state of the following episode;
* raw environment rewards (no clipping, no shaping);
* ``life_lost``, where a game with lives lost one in the transition (from the step's
  ``info["life_lost"]``; False for environments without lives).

Auto-reset happens inside :meth:`VecEnv.step` in the same call (gymnasium's ``SAME_STEP`` mode):
``obs_*`` is what the agent acts on next (a reset state where an episode just ended) and
``next_*`` is the successor state of the transition that was just taken.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, NamedTuple

import gymnasium as gym
import numpy as np
from gymnasium.vector import AutoresetMode


@dataclass(frozen=True)
class EnvSpec:
    """Static description of an environment: shapes, names and limits."""

    name: str
    """Registry key, e.g. ``cartpole``."""
    gym_id: str
    """The underlying gymnasium / ALE id."""
    objects: tuple[str, ...]
    """Name of each object slot (row of the logic state), e.g. ``("cart", "pole")``."""
    object_types: tuple[str, ...]
    """Type of each object slot, used by the logic language (constants of that type)."""
    features: tuple[str, ...]
    """Name of each column of the logic state."""
    neural_shape: tuple[int, ...]
    """Shape of one neural state."""
    neural_dtype: np.dtype
    """dtype of the neural state (float32 vectors or uint8 frames)."""
    action_names: tuple[str, ...]
    """Logic-level name of each environment action; index ``i`` is environment action id ``i``."""
    max_episode_steps: int
    """Agent steps after which an episode is truncated."""
    presence_feature: str | None = None
    """The feature that is 1 where an object slot holds an object and 0 where it is empty (Atari:
    ``visible``); None where every slot always holds its object (classic control). The logic
    reasoner makes every valuation atom about an empty slot exactly 0 (false)."""
    has_lives: bool = False
    """The game has lives (Atari): :attr:`StepBatch.life_lost` can be True, and the learner may
    treat a lost life as the end of its bootstrap (``--life_loss_terminal``)."""
    can_render: bool = False
    """``make_vec(num_envs, video=True)`` gives the RGB frames of copy 0's first episode
    (:attr:`VecEnv.frame`), from which an evaluation video is made (``--eval_video``)."""

    @property
    def logic_shape(self) -> tuple[int, int]:
        return (len(self.objects), len(self.features))

    @property
    def n_actions(self) -> int:
        return len(self.action_names)

    @property
    def is_image(self) -> bool:
        return len(self.neural_shape) == 3

    def slots_of_type(self, object_type: str) -> list[int]:
        """Indices of the object slots whose type is ``object_type``."""
        return [i for i, t in enumerate(self.object_types) if t == object_type]

    def feature_index(self, feature: str) -> int:
        return self.features.index(feature)


class StepBatch(NamedTuple):
    """What one :meth:`VecEnv.step` returns for all parallel environments."""

    obs_logic: np.ndarray
    """[N, O, F] float32: the state to act on next (a reset state where an episode ended)."""
    obs_neural: np.ndarray
    """[N, ...]: the neural state to act on next."""
    reward: np.ndarray
    """[N] float64: the raw environment reward of the transition."""
    terminated: np.ndarray
    """[N] bool: the episode reached a terminal state (no bootstrap)."""
    truncated: np.ndarray
    """[N] bool: the episode was cut by a time limit (bootstrap from ``next_*``)."""
    next_logic: np.ndarray
    """[N, O, F] float32: the true successor state of the transition (the final state if done)."""
    next_neural: np.ndarray
    """[N, ...]: the true successor neural state."""
    episode_return: np.ndarray
    """[N] float64: the finished episode's undiscounted return where done, NaN elsewhere."""
    episode_length: np.ndarray
    """[N] int64: the finished episode's length in agent steps where done, 0 elsewhere."""
    life_lost: np.ndarray
    """[N] bool: a life was lost during the transition (games with lives; the game goes on unless
    ``terminated``). Always False where the environment has no lives."""

    @property
    def done(self) -> np.ndarray:
        return np.logical_or(self.terminated, self.truncated)


# A function turning a batch of raw vector-env observations into (logic, neural) states.
SplitFn = Callable[[Any], "tuple[np.ndarray, np.ndarray]"]


class VecEnv:
    """A gymnasium vector environment with logic and neural states and episode statistics.

    ``split`` turns a batched observation of the wrapped vector env into ``(logic, neural)``;
    ``split_one`` does the same for a single (unbatched) observation, used for final states.
    """

    def __init__(self, spec: EnvSpec, vec: gym.vector.VectorEnv, split: SplitFn, split_one: SplitFn):
        if vec.metadata.get("autoreset_mode") != AutoresetMode.SAME_STEP:
            raise ValueError("VecEnv needs a vector env in AutoresetMode.SAME_STEP")
        self.spec = spec
        self.vec = vec
        self.num_envs = vec.num_envs
        self._split = split
        self._split_one = split_one
        self._ep_return = np.zeros(self.num_envs, dtype=np.float64)
        self._ep_length = np.zeros(self.num_envs, dtype=np.int64)
        self.frame: np.ndarray | None = None
        """RGB ``uint8 [H, W, 3]`` of the state copy 0 is in, while it plays its first episode of
        an env made with ``video=True`` (:class:`FirstEpisodeFrames`); None otherwise."""

    def _take_frame(self, info: dict, reported: bool = True) -> None:
        """Keep copy 0's frame from ``info`` (``reported``: copy 0 is among the copies whose
        info this is; a reset of other copies leaves its frame as it was)."""
        if reported:
            has = "frame" in info and bool(np.asarray(info["_frame"])[0])
            self.frame = info["frame"][0].rgb if has else None

    def reset(self, seed: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Reset all copies; copy ``i`` is seeded with ``seed + i``."""
        obs, info = self.vec.reset(seed=seed)
        self._take_frame(info)
        self._ep_return[:] = 0.0
        self._ep_length[:] = 0
        return self._split(obs)

    def reset_copies(self, mask: np.ndarray, seeds: list[int | None]) -> tuple[np.ndarray, np.ndarray]:
        """Reset only the copies where ``mask`` is true, copy ``i`` with ``seeds[i]``; the others
        keep their state. Returns the states of all copies."""
        mask = np.asarray(mask, dtype=bool)
        obs, info = self.vec.reset(seed=list(seeds), options={"reset_mask": mask})
        self._take_frame(info, reported=bool(mask[0]))
        self._ep_return[mask] = 0.0
        self._ep_length[mask] = 0
        return self._split(obs)

    def step(self, actions: np.ndarray) -> StepBatch:
        obs, reward, terminated, truncated, info = self.vec.step(np.asarray(actions))
        self._take_frame(info)
        logic, neural = self._split(obs)
        reward = np.asarray(reward, dtype=np.float64)
        terminated = np.asarray(terminated, dtype=bool)
        truncated = np.asarray(truncated, dtype=bool)
        self._ep_return += reward
        self._ep_length += 1
        done = terminated | truncated
        life_lost = _life_lost(info, done, self.num_envs)
        ep_return = np.full(self.num_envs, np.nan)
        ep_length = np.zeros(self.num_envs, dtype=np.int64)
        if done.any():
            next_logic, next_neural = logic.copy(), neural.copy()
            final_obs = info["final_obs"]
            for i in np.flatnonzero(done):
                next_logic[i], next_neural[i] = self._split_one(_final_obs_of(final_obs, i))
            ep_return[done] = self._ep_return[done]
            ep_length[done] = self._ep_length[done]
            self._ep_return[done] = 0.0
            self._ep_length[done] = 0
        else:
            next_logic, next_neural = logic, neural
        return StepBatch(logic, neural, reward, terminated, truncated, next_logic, next_neural,
                         ep_return, ep_length, life_lost)

    def get_state(self) -> dict:
        """A snapshot of every copy and of the running episode statistics (plain data, see
        :mod:`blendrl.envs.snapshot`): :meth:`set_state` on a vector env of the same environment
        and size, after its :meth:`reset`, continues exactly where this one is."""
        from blendrl.envs import snapshot
        copies = list(self.vec.get_attr("env_state"))
        for i, copy in enumerate(copies):
            if "error" in copy:
                raise snapshot.SnapshotError(f"{self.spec.name} copy {i}: {copy['error']}")
        return {"version": snapshot.SNAPSHOT_VERSION, "env": self.spec.name, "num_envs": self.num_envs,
                "copies": copies,
                "episode_return": snapshot.array(self._ep_return),
                "episode_length": snapshot.array(self._ep_length)}

    def set_state(self, state: dict) -> None:
        """Restore a :meth:`get_state` snapshot (a SnapshotError if it is not one of this
        environment with this many copies). Copies are restored one by one: after an error the
        vector env is to be closed (a copy that refused ends its worker process)."""
        from blendrl.envs import snapshot
        snapshot.check_version(state, self.spec.name)
        if state.get("env") != self.spec.name or state.get("num_envs") != self.num_envs:
            raise snapshot.SnapshotError(
                f"a snapshot of {state.get('num_envs')} {state.get('env')} copies cannot be restored "
                f"into {self.num_envs} {self.spec.name} copies")
        ep_return = state["episode_return"].cpu().numpy()
        ep_length = state["episode_length"].cpu().numpy()
        if ep_return.shape != self._ep_return.shape or ep_length.shape != self._ep_length.shape:
            raise snapshot.SnapshotError("the snapshot's episode statistics are not one per copy")
        try:
            self.vec.set_attr("env_state", list(state["copies"]))
        except snapshot.SnapshotError:
            raise
        except Exception as e:  # noqa: BLE001 -- e.g. a worker's error, re-raised by gymnasium
            raise snapshot.SnapshotError(f"{type(e).__name__}: {e}") from e
        self._ep_return[:] = ep_return
        self._ep_length[:] = ep_length

    def close(self) -> None:
        self.vec.close()

    def __enter__(self) -> "VecEnv":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class FirstEpisodeFrames(gym.Wrapper):
    """Puts the RGB frame of every state of the wrapped env's first episode (from its first reset
    until that episode ends) into the info as ``info["frame"]``: the frames the agent acts on,
    one per agent step. The env must render ``rgb_array``; observations, rewards and the env's
    random streams are untouched (rendering draws no random number)."""

    def __init__(self, env: gym.Env):
        super().__init__(env)
        self._resets = 0
        self._recording = False

    def reset(self, **kwargs):
        obs, info = self.env.reset(**kwargs)
        self._resets += 1
        self._recording = self._resets == 1
        return obs, self._with_frame(info)

    def step(self, action):
        obs, reward, terminated, truncated, info = self.env.step(action)
        self._recording = self._recording and not (terminated or truncated)
        return obs, reward, terminated, truncated, self._with_frame(info)

    def _with_frame(self, info: dict) -> dict:
        return {**info, "frame": Frame(self.env.render())} if self._recording else info


class Frame:
    """An RGB frame ``rgb`` in an info dict, boxed: gymnasium's vector envs keep an object as it
    is, where an array would be copied into a zero-filled ``[num_envs, H, W, 3]`` batch at every
    step."""

    __slots__ = ("rgb",)

    def __init__(self, rgb: np.ndarray):
        self.rgb = rgb


def _life_lost(info: dict, done: np.ndarray, n: int) -> np.ndarray:
    """``info["life_lost"]`` of the transition; where an episode ended (SAME_STEP autoreset) the
    transition's own info is ``info["final_info"]``, the top level being the reset's."""
    out = np.zeros(n, dtype=bool)
    if "life_lost" in info:
        out[:] = np.asarray(info["life_lost"], dtype=bool) & np.asarray(info["_life_lost"], dtype=bool)
    if done.any():
        final = info.get("final_info", {})
        if "life_lost" in final:
            flags = np.asarray(final["life_lost"], dtype=bool) & np.asarray(final["_life_lost"], dtype=bool)
            out[done] = flags[done]
        else:
            out[done] = False
    return out


def _final_obs_of(final_obs: Any, i: int) -> Any:
    """Env ``i``'s final observation out of gymnasium's ``info['final_obs']`` (array or dict)."""
    if isinstance(final_obs, dict):
        return {k: v[i] for k, v in final_obs.items() if not k.startswith("_")}
    return final_obs[i]
