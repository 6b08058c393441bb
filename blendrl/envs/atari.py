"""Shared plumbing of the Atari environments: ALE v5 through OCAtari (RAM mode), vectorised.

One agent step of an :class:`OCAtariEnv`:

* repeats the action for 4 ALE frames (``FRAME_SKIP``), summing the raw rewards and stopping early
  at game over or at ALE's frame limit; sticky actions with ``repeat_action_probability=0.25``
  (the ALE v5 default) are applied by ALE itself, frame by frame;
* **starts** as the standard Atari protocol has them (Mnih et al. 2015's random no-op starts;
  CleanRL's ``FireResetEnv``), for every method, in training and evaluation alike: after ALE's
  reset, a random number in ``[1, noop_max]`` (``NOOP_MAX = 30``) of no-op **agent steps** (4
  frames each, as the Nature DQN's "do nothing actions performed by the agent"; CleanRL's
  ``NoopResetEnv`` sits below its frame skip and plays single frames instead — with a policy that
  repeats one action, 1-30 single frames give only about 8 distinct games, 1-30 agent steps give
  30), drawn from the episode's seed (the generator of ALE's gymnasium env, which its
  ``reset(seed)`` seeds: a reset with seed ``s`` always plays the same number), then, in games whose action set has FIRE, the agent steps FIRE and action 2 (UP), as
  CleanRL's ``FireResetEnv`` does. The same two presses follow every **lost life** that does not
  end the game, inside the transition that lost it (their frames and rewards belong to it), so
  the game goes on without waiting for FIRE. Those presses are environment dynamics, not agent
  actions: they are not counted as agent steps;
* **lives**: ``info["life_lost"]`` is True where the number of lives (ALE's ``lives()``) dropped
  during the transition; the game is *not* reset there. What the learner makes of it
  (``--life_loss_terminal``) is :mod:`blendrl.algos.signal`'s business, not the environment's;
* **neural state**: the pixel-wise max of the grey screens of the last two frames (ALE's own
  ``getScreenGrayscale`` into a preallocated buffer), resized to 84x84 with ``cv2.INTER_AREA``,
  stacked with the three previous ones, newest last: ``uint8 [4, 84, 84]``. After a reset the
  stack holds four copies of the reset frame. When the game ends before the 4th frame, the newest
  frame of the stack is that last screen alone;
* **logic state**: OCAtari's RAM object extraction (the game module's ``_detect_objects_ram``)
  runs once per agent step, after the last frame, not after every frame as OCAtari's own ``step``
  does at frameskip 1: the game modules used here read positions straight from RAM, so the objects
  after the last frame are the same either way. It is given the RAM as a list of Python ints
  (numpy scalar arithmetic is 3-5x slower; these modules never combine two RAM bytes
  arithmetically, so the results are identical). ``tests/test_envs.py`` checks both choices
  against OCAtari's own ``detect_objects`` after every frame. That one (OCAtari's reset runs it
  too) is handed ALE's RAM widened to int64 (:func:`_widened_ram_detection`): ALE gives uint8, and
  under numpy 2's promotion rules (NEP 50) a uint8 byte plus a Python int stays uint8, so the game
  modules' arithmetic wraps or raises (Seaquest's ``(ram[30 + i] + 16 * j) % 256``:
  ``OverflowError: Python integer 256 out of bounds for uint8``); numpy 1 promoted such sums
  beyond uint8, and int64 bytes or Python ints compute those same values under either numpy
  (``tests/test_numpy2.py``). The objects are written into fixed
  slots per category (see :func:`object_slots`): float32 ``[n_slots, 6]`` with the features
  :data:`FEATURES` ``(visible, x, y, w, h, value)``. Within a category the present objects fill the slots in
  OCAtari's order (its lanes / indices), the remaining slots are all zeros (``visible = 0``).
  ``value`` is the value of OCAtari's value objects (e.g. Seaquest's oxygen bar level), else 0;
* full-game episodes across lives: ``terminated`` at game over, ``truncated`` (and not
  terminated) after ``max_episode_steps`` agent steps = 27,000 = ALE's 108,000 frames;
* the reward is the raw game score difference (no clipping): what is recorded stays raw.

With ``noop_max=0`` and ``fire_reset=False`` the frames, rewards and flags are bit-exact to
gymnasium's ``AtariPreprocessing(noop_max=0)`` + ``FrameStackObservation`` (tested); a start with
no-ops is the state that many no-op steps reach from the plain start (tested).

:func:`make_atari_vec` puts ``num_envs`` copies in subprocesses (gymnasium's ``AsyncVectorEnv``
with shared memory; ``"sync"`` for one process) in ``SAME_STEP`` autoreset mode, with the
observation a Dict ``{"logic", "neural"}``, wrapped in :class:`~blendrl.envs.base.VecEnv`.

OCAtari is slow to import (seconds), so it is imported only when an environment is made, never
when a ``SPEC`` is read (a game's ``SPEC`` is built by :mod:`blendrl.envs.atari_spec`, which
imports neither OCAtari nor torch).
"""

from __future__ import annotations

import enum
import functools
import signal
import importlib
import multiprocessing
import re
import sys
from typing import Any, Callable

import gymnasium as gym
import numpy as np
from gymnasium import spaces
from gymnasium.vector import AsyncVectorEnv, AutoresetMode, SyncVectorEnv

from blendrl.envs import snapshot
# the spec's shape (numpy only, so that a game's SPEC is read without gymnasium), also named here
from blendrl.envs.atari_spec import (ALE_FULL_ACTION_NAMES, FEATURES, FRAME_SIZE,  # noqa: F401
                                     FRAME_SKIP, MAX_EPISODE_STEPS, STACK, atari_spec, object_slots)
from blendrl.envs.base import EnvSpec, FirstEpisodeFrames, VecEnv

STICKY_ACTION_PROBABILITY = 0.25
"""ALE v5 default: at every frame ALE repeats the previous action with this probability."""

NOOP_MAX = 30
"""Random no-op starts: after a reset, 1..NOOP_MAX no-op agent steps drawn from the episode's seed."""

VECTORIZATIONS: tuple[str, ...] = ("async", "sync")

RENDER_FPS = 15
"""Frames per second of a video with one frame per agent step: 60 ALE frames / ``FRAME_SKIP``."""


def observation_space(spec: EnvSpec) -> spaces.Dict:
    """The Dict observation space ``{"logic", "neural"}`` of one copy of ``spec``."""
    return spaces.Dict({
        "logic": spaces.Box(-np.inf, np.inf, shape=spec.logic_shape, dtype=np.float32),
        "neural": spaces.Box(0, 255, shape=spec.neural_shape, dtype=np.uint8),
    })


def _ocatari_game_name(gym_id: str) -> str:
    """``"ALE/Seaquest-v5"`` -> ``"Seaquest"`` (OCAtari's name of the game's RAM module)."""
    return gym_id.split("/")[-1].split("-")[0]


class OCAtariEnv(gym.Env):
    """One Atari game: the preprocessing and the object-slot logic state of this module.

    The emulator is built on the first :meth:`reset` (so that gymnasium's vector envs can build a
    throw-away copy for the spaces cheaply). ``detect_every_frame=True`` runs OCAtari's object
    extraction after every ALE frame, as OCAtari's own ``step`` does at frameskip 1; it exists to
    check that extraction once per agent step gives the same objects. ``extract_objects=False``
    skips the extraction altogether (the logic state stays all zeros); it exists to measure what
    the extraction costs (``bench/bench_envs.py``). ``noop_max`` (0: none) and ``fire_reset``
    (None: when the game's action set has FIRE) are the start protocol of the module docstring;
    the defaults are the protocol every method trains and is evaluated with.
    """

    def __init__(self, spec: EnvSpec, *, hud: bool = False,
                 repeat_action_probability: float = STICKY_ACTION_PROBABILITY,
                 detect_every_frame: bool = False, extract_objects: bool = True,
                 noop_max: int = NOOP_MAX, fire_reset: bool | None = None,
                 render_mode: str | None = None):
        if render_mode not in (None, "rgb_array"):
            raise ValueError(f"render_mode must be None or 'rgb_array', got {render_mode!r}")
        if tuple(spec.features) != FEATURES:
            raise ValueError(f"{spec.name}: Atari specs need the features {FEATURES}, got {spec.features}")
        if not 0.0 <= repeat_action_probability <= 1.0:
            raise ValueError(f"repeat_action_probability must lie in [0, 1], got {repeat_action_probability}")
        if isinstance(noop_max, bool) or not isinstance(noop_max, (int, np.integer)) or noop_max < 0:
            raise ValueError(f"noop_max must be an int >= 0, got {noop_max!r}")
        self.game_spec = spec
        self.metadata = {"render_modes": ["rgb_array"], "render_fps": RENDER_FPS}
        self.render_mode = render_mode
        self.observation_space = observation_space(spec)
        self.action_space = spaces.Discrete(spec.n_actions)
        self._hud = hud
        self._sticky = float(repeat_action_probability)
        self._detect_every_frame = detect_every_frame and extract_objects
        self._extract_objects = extract_objects
        self._noop_max = int(noop_max)
        self._fire_reset_arg = fire_reset
        self._fire = False  # decided by _build from the action set when fire_reset is None
        self._lives = 0
        self._slots_of_type: dict[str, list[int]] = {}
        for slot, object_type in enumerate(spec.object_types):
            self._slots_of_type.setdefault(object_type, []).append(slot)
        self._type_index = {t: i for i, t in enumerate(self._slots_of_type)}
        # OCAtari object class -> (type index, slots, is a value object), or None to skip it.
        self._slots_of_class: dict[type, tuple[int, list[int], bool] | None] = {}
        self._oc: Any = None
        self._logic = np.zeros(spec.logic_shape, dtype=np.float32)
        self._stack = np.zeros(spec.neural_shape, dtype=np.uint8)
        self._screens = np.zeros(0, dtype=np.uint8)  # [2, H, W] and [H, W], sized by _build
        self._grey = np.zeros(0, dtype=np.uint8)
        self._steps = 0
        self._sticky_actions = _StickyActions(self._sticky)
        self.dropped_objects = 0
        """Objects OCAtari reported beyond a category's slots (stays 0 with the specs here)."""

    # -- construction ---------------------------------------------------------------------------
    def _build(self) -> None:
        from ocatari.core import OCAtari
        from ocatari.ram.extract_ram_info import get_max_objects
        from ocatari.ram.game_objects import NoObject, ValueObject

        spec = self.game_spec
        game = _ocatari_game_name(spec.gym_id)
        oc = OCAtari(spec.gym_id, mode="ram", hud=self._hud, obs_mode="ori", create_buffer_stacks=[],
                     render_mode=None, frameskip=1, repeat_action_probability=self._sticky,
                     full_action_space=False, obs_type="ram")
        inner = oc._env.unwrapped
        names = tuple(m.lower() for m in inner.get_action_meanings())
        if names != tuple(spec.action_names):
            oc.close()
            raise ValueError(f"{spec.name}: action names {spec.action_names} differ from ALE's "
                             f"minimal action set {names}")
        max_objects = {c.lower(): n for c, n in get_max_objects(game, self._hud).items()}
        for object_type, slots in self._slots_of_type.items():
            if object_type not in max_objects:
                oc.close()
                raise ValueError(f"{spec.name}: object type {object_type!r} is not an OCAtari "
                                 f"category of {game}; known: {sorted(max_objects)}")
            if len(slots) < max_objects[object_type]:
                oc.close()
                raise ValueError(f"{spec.name}: {len(slots)} slots for {object_type!r}, OCAtari "
                                 f"reports up to {max_objects[object_type]}")
        self._oc = oc
        self._ale = inner.ale
        self._action_set = list(inner._action_set)
        # The no-op count comes from ALE env's own generator, which its reset(seed) seeds (as
        # AtariPreprocessing draws it); unseeded resets continue its stream.
        self._inner = inner
        has_fire = len(names) >= 3 and names[1] == "fire"
        if self._fire_reset_arg and not has_fire:
            oc.close()
            raise ValueError(f"{spec.name}: fire_reset needs FIRE as action 1, the actions are {names}")
        self._fire = has_fire if self._fire_reset_arg is None else bool(self._fire_reset_arg)
        height, width = self._ale.getScreenDims()
        self._screens = np.zeros((2, height, width), dtype=np.uint8)
        self._grey = np.zeros((height, width), dtype=np.uint8)
        self._detect_ram = importlib.import_module(f"ocatari.ram.{game.lower()}")._detect_objects_ram
        oc.detect_objects = _widened_ram_detection(oc, self._ale)
        self._value_object = ValueObject
        self._slots_of_class[NoObject] = None

    @property
    def _ale_rng(self) -> np.random.Generator:
        return self._inner.np_random

    # -- gymnasium API --------------------------------------------------------------------------
    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        if self._oc is None:
            self._build()
        ale = self._ale
        while True:
            # OCAtari's reset resets (and, given a seed, reseeds) ALE, re-creates and detects objects.
            self._oc.reset(seed=seed)
            self._sticky_actions.sync(self._ale_state_bytes(), self._action_set[0])  # ALE's reset: NOOP
            seed = None  # a start that ended the game (never seen) retries from the stream
            over, t = False, -1
            if self._noop_max > 0:  # no-op agent steps (Nature DQN's "do nothing" actions)
                noop = self._action_set[0]
                for _ in range(int(self._ale_rng.integers(1, self._noop_max + 1))):
                    _, over, _, t = self._repeat(noop)
                    if over:
                        break
            if not over and self._fire:
                _, over, _, t = self._fire_presses()
            if not over:
                break
        pooled = t == FRAME_SKIP - 1  # after an agent step: the max of its last two frames
        self._steps = 0
        self._lives = ale.lives()
        if pooled:
            np.maximum(self._screens[0], self._screens[1], out=self._grey)
        else:
            ale.getScreenGrayscale(self._grey)
        self._stack[:] = self._resize(self._grey)
        if self._extract_objects:
            if self._noop_max > 0 or self._fire:
                self._detect_ram(self._oc.objects, ale.getRAM().tolist(), self._hud)
            self._fill_logic()
        return self._observation(), {"life_lost": False}

    def _repeat(self, ale_action) -> tuple[float, bool, bool, int]:
        """Act ``FRAME_SKIP`` frames (fewer if the game ends); (reward, terminated, truncated,
        index of the last frame). The last two screens are in ``self._screens``."""
        ale = self._ale
        reward = 0.0
        terminated = truncated = False
        t = 0
        frames = self._sticky_actions.frames
        for t in range(FRAME_SKIP):
            reward += ale.act(ale_action)
            frames.append(ale_action)
            if self._detect_every_frame:
                self._oc.detect_objects()
            if t == FRAME_SKIP - 2:
                ale.getScreenGrayscale(self._screens[0])
            elif t == FRAME_SKIP - 1:
                ale.getScreenGrayscale(self._screens[1])
            terminated = ale.game_over(with_truncation=False)
            truncated = ale.game_truncated()
            if terminated or truncated:
                break
        return reward, terminated, truncated, t

    def _fire_presses(self) -> tuple[float, bool, bool, int]:
        """FIRE, then action 2, one agent step each (CleanRL's ``FireResetEnv``)."""
        reward, terminated, truncated, t = self._repeat(self._action_set[1])
        if not (terminated or truncated):
            r, terminated, truncated, t = self._repeat(self._action_set[2])
            reward += r
        return reward, terminated, truncated, t

    def step(self, action):
        if self._oc is None:
            raise RuntimeError("call reset() before step()")
        ale = self._ale
        reward, terminated, truncated, t = self._repeat(self._action_set[int(action)])
        lives = ale.lives()
        life_lost = lives < self._lives
        self._lives = lives
        if life_lost and self._fire and not (terminated or truncated):
            r, terminated, truncated, t = self._fire_presses()
            reward += r
        if t == FRAME_SKIP - 1:
            np.maximum(self._screens[0], self._screens[1], out=self._grey)
        else:  # the game ended early: the last screen alone
            ale.getScreenGrayscale(self._grey)
        self._stack[:-1] = self._stack[1:]
        self._stack[-1] = self._resize(self._grey)
        if self._extract_objects:
            if not self._detect_every_frame:
                self._detect_ram(self._oc.objects, ale.getRAM().tolist(), self._hud)
            self._fill_logic()
        self._steps += 1
        truncated = (truncated or self._steps >= self.game_spec.max_episode_steps) and not terminated
        return self._observation(), reward, terminated, truncated, {"life_lost": life_lost}

    def render(self) -> np.ndarray | None:
        """``rgb_array``: the RGB screen ALE shows now, ``uint8 [210, 160, 3]`` (ALE's
        ``getScreenRGB``, the last frame of the agent step; reads no random number)."""
        if self.render_mode != "rgb_array" or self._oc is None:
            return None
        return self._ale.getScreenRGB()

    def close(self) -> None:
        if self._oc is not None:
            self._oc.close()
            self._oc = None

    # -- snapshots (blendrl.envs.snapshot) ------------------------------------------------------
    @property
    def env_state(self) -> dict:
        """The exact state of this copy: ALE's (with its random generator), the action ALE
        repeats on a sticky frame (:class:`_StickyActions`), the no-op generator, OCAtari's
        objects, the frame stack, the logic state and the step and life counters. Setting it
        restores such a state (after :meth:`reset`, which builds the emulator). What cannot be
        kept comes back as ``{"error": ...}``, not raised: raised in a worker process, it would
        end the worker."""
        return snapshot.or_error(self._snapshot)

    def _ale_state_bytes(self) -> bytes:
        (raw,) = self._ale.cloneState(include_rng=True).__getstate__()
        return bytes(raw)

    def _snapshot(self) -> dict:
        if self._oc is None:
            raise snapshot.SnapshotError("call reset() before taking a snapshot")
        ale_bytes = self._ale_state_bytes()
        return {"version": snapshot.SNAPSHOT_VERSION, "kind": "ocatari", "game": self.game_spec.name,
                "ale": ale_bytes, "sticky_action": int(self._sticky_actions.effective(ale_bytes)),
                "noop_rng": snapshot.generator_state(self._ale_rng),
                "objects": [snapshot.encode_object(o, f"objects[{i}]")
                            for i, o in enumerate(self._oc.objects)],
                "stack": snapshot.array(self._stack), "logic": snapshot.array(self._logic),
                **{name: snapshot.encode_value(v, name) for name, v in
                   (("steps", self._steps), ("lives", self._lives), ("dropped_objects", self.dropped_objects))}}

    @env_state.setter
    def env_state(self, state: dict) -> None:
        snapshot.check_version(state, self.game_spec.name)
        if state.get("kind") != "ocatari" or state.get("game") != self.game_spec.name:
            raise snapshot.SnapshotError(f"a snapshot of {state.get('kind')}/{state.get('game')} "
                                         f"cannot be restored into {self.game_spec.name}")
        if self._oc is None:
            raise snapshot.SnapshotError("call reset() before restoring a snapshot")
        try:  # everything decoded and checked before anything is changed
            import ale_py
            ale_state = ale_py.ALEState.__new__(ale_py.ALEState)
            ale_state.__setstate__((state["ale"],))
            sticky = ale_py.Action(int(state["sticky_action"]))
            if sticky not in self._action_set:  # ALE would end the process on acting it
                raise snapshot.SnapshotError(f"the sticky action {int(sticky)} is not one of the "
                                             f"game's actions {[int(a) for a in self._action_set]}")
            objects = [snapshot.decode_object(o, _ocatari_object_class, _ocatari_enum_class)
                       for o in state["objects"]]
            stack, logic = state["stack"].cpu().numpy(), state["logic"].cpu().numpy()
            for name, a, want in (("stack", stack, self._stack), ("logic", logic, self._logic)):
                if a.shape != want.shape or a.dtype != want.dtype:
                    raise snapshot.SnapshotError(f"{name} is {a.dtype}{list(a.shape)}, the env's "
                                                 f"{want.dtype}{list(want.shape)}")
            counters = [int(state[k]) for k in ("steps", "lives", "dropped_objects")]
            noop_rng = state["noop_rng"]
            type(self._ale_rng.bit_generator)().state = noop_rng  # refused here, not half-way
            generator = _StickyActions._generator_state(state["ale"])
        except snapshot.SnapshotError:
            raise
        except Exception as e:  # noqa: BLE001 -- a malformed snapshot, whatever broke
            raise snapshot.SnapshotError(f"not a snapshot of this env: {type(e).__name__}: {e}") from e
        ale = self._ale
        try:
            ale.restoreState(ale_state)
        except Exception as e:  # noqa: BLE001
            raise snapshot.SnapshotError(f"ALE refused the snapshot's state: {e}") from e
        self._sticky_actions.restore(ale, ale_state, sticky, generator)
        snapshot.set_generator_state(self._ale_rng, noop_rng)
        self._oc.objects = objects
        self._stack[:] = stack
        self._logic[:] = logic
        self._steps, self._lives, self.dropped_objects = counters

    # -- states ---------------------------------------------------------------------------------
    @staticmethod
    def _resize(grey: np.ndarray) -> np.ndarray:
        import cv2
        return cv2.resize(grey, (FRAME_SIZE, FRAME_SIZE), interpolation=cv2.INTER_AREA)

    def _fill_logic(self) -> None:
        """Write OCAtari's current objects into the fixed slots of the logic state."""
        logic = self._logic
        logic.fill(0.0)
        used = [0] * len(self._type_index)
        slots_of_class = self._slots_of_class
        for obj in self._oc.objects:
            cls = obj.__class__
            entry = slots_of_class[cls] if cls in slots_of_class else self._register_class(cls)
            if entry is None or not obj._visible:  # NoObject (absent) or a type not in the spec
                continue
            t, slots, is_value = entry
            k = used[t]
            if k >= len(slots):
                self.dropped_objects += 1
                continue
            used[t] = k + 1
            x, y = obj._xy
            w, h = obj.wh
            logic[slots[k]] = (1.0, x, y, w, h, (obj.value or 0) if is_value else 0)

    def _register_class(self, cls: type) -> tuple[int, list[int], bool] | None:
        """Slots of the objects of OCAtari class ``cls`` (type = lower-cased class name)."""
        object_type = cls.__name__.lower()
        slots = self._slots_of_type.get(object_type)
        entry = None if slots is None else (self._type_index[object_type], slots,
                                            issubclass(cls, self._value_object))
        self._slots_of_class[cls] = entry
        return entry

    def _observation(self) -> dict[str, np.ndarray]:
        return {"logic": self._logic.copy(), "neural": self._stack.copy()}

    @property
    def objects(self) -> list:
        """OCAtari's current object list (for inspection and tests)."""
        return list(self._oc.objects) if self._oc is not None else []


def _widened_ram_detection(oc, ale) -> Callable[[], None]:
    """OCAtari's own RAM-mode ``detect_objects`` (previous positions saved, then the game
    module), given ALE's RAM as int64 instead of uint8, so that its arithmetic cannot wrap under
    numpy 2 (module docstring)."""
    from ocatari.ram.extract_ram_info import detect_objects_ram

    def detect_objects() -> None:
        detect_objects_ram(oc.objects, ale.getRAM().astype(np.int64), oc.game_name, oc.hud)
    return detect_objects


def _ocatari_type(module: str, name: str, base: type, what: str) -> type:
    """The class a snapshot names, only if it is a subclass of ``base`` defined in one of the
    OCAtari RAM-mode modules already imported (nothing is imported or made from a name in a
    checkpoint otherwise)."""
    mod = sys.modules.get(module) if module.startswith("ocatari.ram.") else None
    cls = getattr(mod, name, None) if mod is not None and name.isidentifier() else None
    if isinstance(cls, type) and issubclass(cls, base):
        return cls
    raise snapshot.SnapshotError(f"a snapshot names {module}.{name}, not {what}")


def _ocatari_object_class(module: str, name: str) -> type:
    from ocatari.ram.game_objects import GameObject
    return _ocatari_type(module, name, GameObject, "an OCAtari object class")


def _ocatari_enum_class(module: str, name: str) -> type:
    return _ocatari_type(module, name, enum.Enum, "an OCAtari enum")


_MT_TEXT = re.compile(rb"(?:\d+ ){624}\d+")
"""A Mersenne Twister's state as ALE serialises it (``std::mt19937``'s text form: 624 words and
the position)."""
_MT_MAX = 4294967295.0


class _StickyActions:
    """Which action ALE repeats on its next sticky frame, which ALE's state does not keep.

    Every ALE frame, ALE draws two numbers from its environment generator (player A's, then
    player B's) and takes the new action for player A only where A's draw divided by the
    generator's maximum is at least ``repeat_action_probability``; otherwise it repeats the
    action in effect. ``cloneState(include_rng=True)`` keeps the generator (the last of the two
    Mersenne Twisters in the serialised state) but not that action, so a restored copy would
    repeat whatever its own last action was. This class records the action asked for at every
    frame since a known point (a reset, which leaves NOOP in effect, or a snapshot) and, at a
    snapshot, replays the generator from that point to find the action in effect, checking that
    the replayed generator ends exactly where ALE's is (a SnapshotError otherwise). A restore puts
    that action back in effect by acting it until a frame takes it (the generator says which)
    and then restoring the state again (ALE's restore leaves the action in effect alone). After
    a reset NOOP is in effect: ALE's ``softReset``, which its reset calls, sets it.
    """

    def __init__(self, probability: float):
        self.probability = float(np.float32(probability))  # as ALE holds it (a float)
        self.frames: list = []
        self._start: bytes | dict | None = None  # ALE's state bytes, parsed when first needed
        self._in_effect = None

    @staticmethod
    def _generator_state(ale_bytes: bytes) -> dict:
        found = _MT_TEXT.findall(ale_bytes)
        if not found:
            raise snapshot.SnapshotError("no random generator in ALE's serialised state")
        words = [int(w) for w in found[-1].split()]
        return {"bit_generator": "MT19937",
                "state": {"key": np.array(words[:624], dtype=np.uint32), "pos": words[624]}}

    def sync(self, start: bytes | dict, in_effect) -> None:
        """From here on ``in_effect`` is the action in effect and ``start``'s generator ALE's
        (``start``: ALE's serialised state, parsed only when a snapshot needs it -- every reset
        syncs -- or that generator state already parsed)."""
        self._start = start
        self._in_effect = in_effect
        self.frames.clear()

    def effective(self, ale_bytes: bytes):
        """The action in effect now (``ale_bytes``: ALE's state now); the known point moves here."""
        if self._start is None:
            raise snapshot.SnapshotError("call reset() before taking a snapshot")
        mt = np.random.MT19937(0)
        mt.state = self._start if isinstance(self._start, dict) else self._generator_state(self._start)
        draws = mt.random_raw(2 * len(self.frames))[0::2] if self.frames else np.zeros(0, np.uint64)
        now = self._generator_state(ale_bytes)
        if not (np.array_equal(mt.state["state"]["key"], now["state"]["key"])
                and mt.state["state"]["pos"] == now["state"]["pos"]):
            raise snapshot.SnapshotError("ALE's sticky-action generator is not where replaying "
                                         f"{len(self.frames)} frames puts it (another ALE version?)")
        taken = np.flatnonzero(draws / _MT_MAX >= self.probability)
        in_effect = self.frames[taken[-1]] if taken.size else self._in_effect
        self.sync(now, in_effect)
        return in_effect

    def frames_to_take(self, generator: dict, limit: int = 1_000_000) -> int:
        """How many frames acted from a state with ALE's ``generator`` (parsed) take the action
        asked for at least once: up to the first frame whose draw is not sticky (replayed)."""
        mt = np.random.MT19937(0)
        mt.state = generator
        done = 0
        while done < limit:
            n = min(4096, limit - done)
            taken = np.flatnonzero(mt.random_raw(2 * n)[0::2] / _MT_MAX >= self.probability)
            if taken.size:
                return done + int(taken[0]) + 1
            done += n
        raise snapshot.SnapshotError(f"no frame of the next {limit} takes a new action "
                                     f"(repeat_action_probability {self.probability})")

    def restore(self, ale, ale_state, in_effect, generator: dict) -> None:
        """Restore ``ale_state`` (whose parsed generator is ``generator``) into ``ale`` with
        ``in_effect`` the action ALE repeats: act it
        until a frame takes it (known from the generator), then restore the state again, which
        leaves the action in effect alone. ALE 0.11's restore does not refresh the RAM it hands
        out: ``getRAM()`` gives the state's RAM only after the next ``act`` (nothing reads it
        before)."""
        for _ in range(self.frames_to_take(generator)):
            ale.act(in_effect)
        ale.restoreState(ale_state)
        self.sync(generator, in_effect)


def _split(obs: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    return obs["logic"], obs["neural"]


def _in_worker(factory: Callable[[], gym.Env]) -> gym.Env:
    """Build the env inside an AsyncVectorEnv worker, which ignores SIGTERM/SIGUSR1/SIGINT:
    a signal to the job's process group is for the training process, which checkpoints and then
    closes its workers; a worker that died first would break that checkpoint. (AsyncVectorEnv
    also calls this once in the parent, to read the spaces: the parent keeps its handlers.)"""
    if multiprocessing.parent_process() is not None:
        for sig in (signal.SIGTERM, signal.SIGUSR1, signal.SIGINT):
            signal.signal(sig, signal.SIG_IGN)
    return factory()


def _with_frames(factory: Callable[[], gym.Env]) -> gym.Env:
    return FirstEpisodeFrames(factory())


def make_atari_vec(spec: EnvSpec, num_envs: int, *, hud: bool = False, vectorization: str = "async",
                   repeat_action_probability: float = STICKY_ACTION_PROBABILITY,
                   detect_every_frame: bool = False, extract_objects: bool = True,
                   noop_max: int = NOOP_MAX, fire_reset: bool | None = None,
                   video: bool = False) -> VecEnv:
    """``num_envs`` copies of an Atari game as a :class:`VecEnv` (call ``reset(seed)`` first).

    ``vectorization="async"`` runs each copy in its own subprocess (shared-memory observations);
    ``"sync"`` steps them in this process. ``hud`` is passed to OCAtari (HUD objects such as the
    score); ``repeat_action_probability`` is ALE's sticky-action probability;
    ``detect_every_frame`` and ``extract_objects`` are the checking / benchmarking switches of
    :class:`OCAtariEnv`; ``noop_max`` and ``fire_reset`` its start protocol. ``video``: copy 0
    reports the RGB frames of its first episode (:class:`~blendrl.envs.base.FirstEpisodeFrames`).
    """
    if isinstance(num_envs, bool) or not isinstance(num_envs, (int, np.integer)) or num_envs < 1:
        raise ValueError(f"num_envs must be a positive integer, got {num_envs!r}")
    if vectorization not in VECTORIZATIONS:
        raise ValueError(f"vectorization must be one of {VECTORIZATIONS}, got {vectorization!r}")
    factory = functools.partial(OCAtariEnv, spec, hud=hud,
                                repeat_action_probability=repeat_action_probability,
                                detect_every_frame=detect_every_frame,
                                extract_objects=extract_objects, noop_max=noop_max,
                                fire_reset=fire_reset)
    fns: list[Callable[[], gym.Env]] = [factory] * int(num_envs)
    if video:
        fns[0] = functools.partial(_with_frames, functools.partial(factory, render_mode="rgb_array"))
    if vectorization == "async":
        # Import OCAtari in this process first: forked workers then inherit it instead of each
        # paying the import (seconds).
        import ocatari.core  # noqa: F401
        worker_fns = [functools.partial(_in_worker, fn) for fn in fns]
        vec = AsyncVectorEnv(worker_fns, shared_memory=True, autoreset_mode=AutoresetMode.SAME_STEP)
    else:
        vec = SyncVectorEnv(fns, autoreset_mode=AutoresetMode.SAME_STEP)
    return VecEnv(spec, vec, _split, _split)
