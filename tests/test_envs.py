"""Tests of the five environments: states, seeding, time limits, final states, statistics.

Classic control is checked bit for bit against plain ``gym.make`` environments driven with the same
seeds and actions; the Atari neural state bit for bit against gymnasium's standard Atari
preprocessing (``AtariPreprocessing`` + ``FrameStackObservation``) on the same ALE v5 game, and the
Atari logic state against the game's RAM and against OCAtari's extraction after every frame.
"""

from __future__ import annotations

import dataclasses
import importlib
import sys
import textwrap

import gymnasium as gym
import numpy as np
import pytest

import blendrl.envs
from blendrl.envs import ATARI_ENVS, CLASSIC_ENVS, ENV_NAMES, discover, get_spec, make_vec_env
from blendrl.envs.atari import (ALE_FULL_ACTION_NAMES, FEATURES, MAX_EPISODE_STEPS, OCAtariEnv,
                                atari_spec, object_slots)
from blendrl.envs.base import StepBatch, VecEnv


@pytest.fixture
def ale_ids():
    """Registers the ``ALE/...`` ids with gymnasium (importing ale_py does it)."""
    import ale_py

    gym.register_envs(ale_py)


def random_actions(rng: np.random.Generator, env: VecEnv) -> np.ndarray:
    return rng.integers(0, env.spec.n_actions, size=env.num_envs)


def rollout(env: VecEnv, seed: int, steps: int, action_seed: int = 0):
    """Reset with ``seed``, take ``steps`` random actions; the reset states, actions and batches."""
    rng = np.random.default_rng(action_seed)
    logic, neural = env.reset(seed=seed)
    actions, batches = [], []
    for _ in range(steps):
        a = random_actions(rng, env)
        actions.append(a)
        batches.append(env.step(a))
    return (logic, neural), actions, batches


def assert_batch_shapes(env: VecEnv, b: StepBatch) -> None:
    spec, n = env.spec, env.num_envs
    for arr in (b.obs_logic, b.next_logic):
        assert arr.shape == (n, *spec.logic_shape) and arr.dtype == np.float32
    for arr in (b.obs_neural, b.next_neural):
        assert arr.shape == (n, *spec.neural_shape) and arr.dtype == spec.neural_dtype
    assert b.reward.shape == (n,) and b.reward.dtype == np.float64
    assert b.terminated.dtype == bool and b.truncated.dtype == bool
    assert b.episode_return.shape == (n,) and b.episode_length.dtype == np.int64


# ---------------------------------------------------------------------------------------------
# registry and specs
# ---------------------------------------------------------------------------------------------

def test_registry_lists_the_five_envs_and_rejects_unknown_names():
    assert ENV_NAMES == ("cartpole", "mountaincar", "donkeykong", "kangaroo", "seaquest")
    assert CLASSIC_ENVS == ("cartpole", "mountaincar")
    assert ATARI_ENVS == ("donkeykong", "kangaroo", "seaquest")
    with pytest.raises(ValueError, match="unknown environment 'pong'"):
        make_vec_env("pong", 1)


def _toy_env(folder, name: str, neural_shape: tuple, make_vec: bool = True,
             spec_name: str = "") -> None:
    """``{folder}/{name}/__init__.py``: an environment package as docs/extending.md describes it."""
    (folder / name).mkdir(parents=True)
    (folder / name / "__init__.py").write_text(textwrap.dedent(f"""
        import numpy as np

        from blendrl.envs.base import EnvSpec, VecEnv

        SPEC = EnvSpec(name={spec_name or name!r}, gym_id="Toy-v0", objects=("agent",),
                       object_types=("agent",), features=("x",), neural_shape={neural_shape!r},
                       neural_dtype=np.dtype(np.uint8), action_names=("stay", "go"),
                       max_episode_steps=10)
        """) + ("\ndef make_vec(num_envs: int) -> VecEnv:\n    raise NotImplementedError\n"
                if make_vec else ""))


@pytest.fixture
def envs_folder(tmp_path, monkeypatch):
    """A second folder of ``blendrl.envs`` (as if its packages were under blendrl/envs/); the
    packages imported from it are forgotten afterwards."""
    before = set(sys.modules)
    monkeypatch.setattr(blendrl.envs, "__path__", [*blendrl.envs.__path__, str(tmp_path)])
    importlib.invalidate_caches()
    yield tmp_path
    for name in set(sys.modules) - before:
        if name.startswith("blendrl.envs."):
            del sys.modules[name]


def test_an_environment_is_its_package_and_nothing_else(envs_folder):
    """docs/extending.md's checklist, tried: a package with SPEC and make_vec is an environment,
    classic (vector state) or image state after its SPEC; a sub-package without SPEC and a plain
    module are not environments."""
    _toy_env(envs_folder, "toyline", (3,))
    _toy_env(envs_folder, "toyscreen", (2, 8, 8))
    (envs_folder / "toyhelpers").mkdir()
    (envs_folder / "toyhelpers" / "__init__.py").write_text("X = 1\n")
    (envs_folder / "toymodule.py").write_text("SPEC = None\n")
    found = discover(blendrl.envs)
    assert tuple(found) == ("cartpole", "mountaincar", "toyline",
                            "donkeykong", "kangaroo", "seaquest", "toyscreen")
    assert [n for n, m in found.items() if not m.SPEC.is_image] == [*CLASSIC_ENVS, "toyline"]
    assert [n for n, m in found.items() if m.SPEC.is_image] == [*ATARI_ENVS, "toyscreen"]
    assert tuple(discover(blendrl.envs)) == tuple(found)  # the same order every time


@pytest.mark.parametrize("kind", ["no make_vec", "another name"])
def test_a_half_made_environment_package_is_an_error(envs_folder, kind):
    if kind == "no make_vec":
        _toy_env(envs_folder, "toybroken", (3,), make_vec=False)
        match = "blendrl.envs.toybroken defines SPEC but no make_vec"
    else:
        _toy_env(envs_folder, "toybroken", (3,), spec_name="toy")
        match = "blendrl.envs.toybroken.SPEC must be an EnvSpec named 'toybroken'"
    with pytest.raises(ValueError, match=match):
        discover(blendrl.envs)


def test_object_slots_names_and_types():
    names, types = object_slots([("player", 1), ("shark", 3), ("oxygenbar", 1)])
    assert names == ("player", "shark1", "shark2", "shark3", "oxygenbar")
    assert types == ("player", "shark", "shark", "shark", "oxygenbar")
    with pytest.raises(ValueError, match="at least one slot"):
        object_slots([("player", 0)])
    with pytest.raises(ValueError, match="listed twice"):
        object_slots([("shark", 2), ("shark", 1)])


@pytest.mark.parametrize("name,n_objects", [("seaquest", 42), ("kangaroo", 40), ("donkeykong", 18)])
def test_atari_specs(name, n_objects, ale_ids):
    spec = get_spec(name)
    assert spec.logic_shape == (n_objects, 6) and spec.features == FEATURES
    assert spec.neural_shape == (4, 84, 84) and spec.neural_dtype == np.uint8
    assert spec.max_episode_steps == 27_000 == MAX_EPISODE_STEPS
    assert spec.objects[0] == "player" and spec.slots_of_type("player") == [0]
    assert len(set(spec.objects)) == n_objects
    # The action names are ALE's minimal action set of the game, in ALE's order.
    env = gym.make(spec.gym_id)
    try:
        assert spec.action_names == tuple(m.lower() for m in env.unwrapped.get_action_meanings())
    finally:
        env.close()


def test_seaquest_slot_layout_is_stable():
    """The logic rules address these slots by name: a change here must be deliberate."""
    spec = get_spec("seaquest")
    assert spec.objects[:3] == ("player", "shark1", "shark2")
    assert spec.slots_of_type("diver") == [25, 26, 27, 28]
    assert spec.objects[35] == "oxygenbar" and spec.object_types[36:] == ("collecteddiver",) * 6


# ---------------------------------------------------------------------------------------------
# classic control
# ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("name", CLASSIC_ENVS)
def test_classic_states_are_bit_exact_to_gymnasium(name):
    """Every state (including final states across auto-resets) equals a plain gym.make env's."""
    n, seed, steps = 3, 11, 250
    env = make_vec_env(name, n)
    spec = env.spec
    refs = [gym.make(spec.gym_id) for _ in range(n)]
    try:
        (logic, neural), actions, batches = rollout(env, seed, steps)
        ref_obs = [r.reset(seed=seed + i)[0] for i, r in enumerate(refs)]
        assert neural.dtype == np.float32 and logic.shape == (n, *spec.logic_shape)
        assert np.array_equal(neural, np.stack(ref_obs))
        assert np.array_equal(logic, np.stack(ref_obs).reshape(n, *spec.logic_shape))
        ends = 0
        for a, b in zip(actions, batches):
            assert_batch_shapes(env, b)
            for i, r in enumerate(refs):
                obs, rew, term, trunc, _ = r.step(int(a[i]))
                assert np.array_equal(b.next_neural[i], obs)
                assert np.array_equal(b.next_logic[i], obs.reshape(spec.logic_shape))
                assert (b.reward[i], b.terminated[i], b.truncated[i]) == (rew, term, trunc)
                if term or trunc:
                    ends += 1
                    obs = r.reset()[0]  # the vector env resets without a seed, too
                assert np.array_equal(b.obs_neural[i], obs)
                assert np.array_equal(b.obs_logic[i], obs.reshape(spec.logic_shape))
        if name == "cartpole":
            assert ends >= 3  # random CartPole episodes are short: auto-resets were exercised
    finally:
        env.close()
        for r in refs:
            r.close()


@pytest.mark.parametrize("name", CLASSIC_ENVS)
def test_classic_same_seed_same_trajectory(name):
    runs = []
    for seed in (3, 3, 4):
        env = make_vec_env(name, 2)
        (logic, _), _, batches = rollout(env, seed, 60)
        runs.append(np.concatenate([logic[None]] + [b.next_logic[None] for b in batches]))
        env.close()
    assert np.array_equal(runs[0], runs[1])
    assert not np.array_equal(runs[0], runs[2])
    # Copy i is seeded with seed + i: copy 1 of seed 3 starts where copy 0 of seed 4 starts.
    assert np.array_equal(runs[0][0, 1], runs[2][0, 0])


def _balance(logic: np.ndarray) -> np.ndarray:
    """A linear controller that keeps CartPole up for 500 steps (push towards the falling side)."""
    x, x_dot = logic[:, 0, 0], logic[:, 0, 1]
    theta, theta_dot = logic[:, 1, 0], logic[:, 1, 1]
    return (theta + 0.5 * theta_dot + 0.01 * x + 0.1 * x_dot > 0).astype(np.int64)


def test_cartpole_truncates_at_500_steps():
    env = make_vec_env("cartpole", 2)
    logic, _ = env.reset(seed=0)
    for t in range(1, 501):
        b = env.step(_balance(logic))
        logic = b.obs_logic
        if t < 500:
            assert not b.done.any(), f"episode ended early at step {t}"
    assert b.truncated.all() and not b.terminated.any()
    assert np.array_equal(b.episode_length, [500, 500])
    assert np.array_equal(b.episode_return, [500.0, 500.0])
    # The final state is the 500th state, the state to act on a fresh reset state.
    assert not np.array_equal(b.next_logic, b.obs_logic)
    assert np.all(np.abs(b.obs_logic) <= 0.05)
    env.close()


def test_mountaincar_truncates_at_200_steps_with_noop():
    env = make_vec_env("mountaincar", 3)
    env.reset(seed=5)
    noop = env.spec.action_names.index("noop")
    for t in range(1, 201):
        b = env.step(np.full(3, noop))
        if t < 200:
            assert not b.done.any() and np.isnan(b.episode_return).all()
            assert np.array_equal(b.episode_length, [0, 0, 0])
    assert b.truncated.all() and not b.terminated.any()
    assert np.array_equal(b.episode_return, [-200.0] * 3)
    assert np.array_equal(b.episode_length, [200] * 3)
    # A reset MountainCar starts at rest in [-0.6, -0.4]; the final state is somewhere else.
    assert np.all(b.obs_logic[:, 0, 1] == 0.0)
    assert np.all((b.obs_logic[:, 0, 0] >= -0.6) & (b.obs_logic[:, 0, 0] <= -0.4))
    assert not np.array_equal(b.next_logic, b.obs_logic)
    env.close()


def test_cartpole_terminal_state_is_the_final_state_not_a_reset_state():
    env = make_vec_env("cartpole", 2)
    logic, _ = env.reset(seed=1)
    right = np.ones(2, dtype=np.int64)  # always push right: the pole falls left within ~10 steps
    steps, prev = 0, logic
    while True:
        b = env.step(right)
        steps += 1
        assert steps < 100
        if b.done[0]:
            break
        if not b.done.any():
            assert np.array_equal(b.next_logic, b.obs_logic)  # no episode ended: same state
        prev = b.obs_logic
    assert b.terminated[0] and not b.truncated[0]
    final = b.next_logic[0]
    x, theta = final[0, 0], final[1, 0]
    assert abs(theta) > 12 * 2 * np.pi / 360 or abs(x) > 2.4  # the terminal condition holds
    # One Euler step from the previous state: position moves by tau * previous velocity.
    assert final[0, 0] == pytest.approx(prev[0, 0, 0] + 0.02 * prev[0, 0, 1], abs=1e-6)
    reset = b.obs_logic[0]
    assert np.all(np.abs(reset) <= 0.05) and not np.array_equal(reset, final)
    assert b.episode_return[0] == steps and b.episode_length[0] == steps
    if not b.done[1]:
        assert np.isnan(b.episode_return[1]) and b.episode_length[1] == 0
    env.close()


# ---------------------------------------------------------------------------------------------
# Atari
# ---------------------------------------------------------------------------------------------

def _check_atari_rollout(env: VecEnv, reset: tuple, batches: list[StepBatch]) -> None:
    """Shapes, visibility encoding, the player, frames and stack shifting of an Atari rollout."""
    logic0, neural0 = reset
    spec, n = env.spec, env.num_envs
    assert logic0.shape == (n, *spec.logic_shape) and logic0.dtype == np.float32
    assert neural0.shape == (n, 4, 84, 84) and neural0.dtype == np.uint8
    assert np.all(logic0[:, 0, 0] == 1.0), "the player is present at reset"
    for i in range(n):  # a reset stack holds four copies of the reset frame
        assert all(np.array_equal(neural0[i, 0], neural0[i, k]) for k in range(4))
    prev_neural = neural0
    visible = []
    for b in batches:
        assert_batch_shapes(env, b)
        for states in (b.obs_logic, b.next_logic):
            vis = states[..., 0]
            assert np.isin(vis, (0.0, 1.0)).all()
            assert np.all(states[vis == 0.0] == 0.0), "an absent object is all zeros"
        # Frame k of the successor is frame k+1 of the state acted on, the newest frame is new.
        assert np.array_equal(b.next_neural[:, :3], prev_neural[:, 1:])
        for i in np.flatnonzero(b.done):
            assert all(np.array_equal(b.obs_neural[i, 0], b.obs_neural[i, k]) for k in range(4))
        visible.append(b.next_logic[:, 0, 0])
        prev_neural = b.obs_neural
    visible = np.concatenate(visible)
    assert visible.mean() > 0.5, f"player visible in only {visible.mean():.0%} of the states"
    last = batches[-1].obs_neural
    assert last.std() > 5.0 and not np.array_equal(last[:, -1], neural0[:, -1]), "frames are trivial"


@pytest.mark.parametrize("name", ATARI_ENVS)
def test_atari_rollout_states(name):
    env = make_vec_env(name, 2, vectorization="sync")
    try:
        reset, _, batches = rollout(env, seed=0, steps=300)
        _check_atari_rollout(env, reset, batches)
    finally:
        env.close()


@pytest.mark.parametrize("name", ATARI_ENVS)
def test_atari_neural_state_is_bit_exact_to_gymnasium_preprocessing(name, ale_ids):
    """Same seed, same actions: frames, rewards and flags equal gymnasium's standard pipeline
    (without the start protocol, which gymnasium's pipeline does not have; tested below)."""
    from gymnasium.wrappers import AtariPreprocessing, FrameStackObservation

    spec = get_spec(name)
    ref = FrameStackObservation(
        AtariPreprocessing(gym.make(spec.gym_id, frameskip=1, repeat_action_probability=0.25),
                           noop_max=0, frame_skip=4, screen_size=84),
        4, padding_type="reset")
    env = OCAtariEnv(spec, noop_max=0, fire_reset=False)
    try:
        expected, _ = ref.reset(seed=21)
        obs, _ = env.reset(seed=21)
        assert np.array_equal(obs["neural"], expected)
        rng = np.random.default_rng(2)
        for t in range(200):
            a = int(rng.integers(0, spec.n_actions))
            expected, r_ref, term_ref, trunc_ref, _ = ref.step(a)
            obs, r, term, trunc, _ = env.step(a)
            assert (r, term, trunc) == (r_ref, term_ref, trunc_ref), f"step {t}"
            if term:
                break  # gymnasium's pipeline keeps stale frames on an early game over
            assert np.array_equal(obs["neural"], expected), f"step {t}"
    finally:
        env.close()
        ref.close()


@pytest.mark.parametrize("name", ATARI_ENVS)
def test_atari_objects_once_per_step_equal_objects_after_every_frame(name):
    """The fast path (game module once per agent step, RAM as Python ints) equals OCAtari's own
    ``detect_objects`` (numpy RAM) after every frame, over 300 random steps."""
    spec = get_spec(name)
    once, every = OCAtariEnv(spec), OCAtariEnv(spec, detect_every_frame=True)
    try:
        a_obs, _ = once.reset(seed=4)
        b_obs, _ = every.reset(seed=4)
        rng = np.random.default_rng(4)
        for t in range(300):
            a = int(rng.integers(0, spec.n_actions))
            a_obs, _, a_term, a_trunc, _ = once.step(a)
            b_obs, _, _, _, _ = every.step(a)
            assert np.array_equal(a_obs["logic"], b_obs["logic"]), f"step {t}"
            if a_term or a_trunc:
                a_obs, _ = once.reset()
                b_obs, _ = every.reset()
        assert once.dropped_objects == 0
    finally:
        once.close()
        every.close()


def test_seaquest_logic_state_matches_ram():
    """Player position and oxygen level against the RAM addresses of Seaquest (70, 97, 102)."""
    spec = get_spec("seaquest")
    env = OCAtariEnv(spec, noop_max=0, fire_reset=False)  # the game's own start
    player, oxygen = 0, spec.objects.index("oxygenbar")
    try:
        obs, _ = env.reset(seed=0)
        assert obs["logic"][player].tolist() == [1.0, 76.0, 46.0, 16.0, 11.0, 0.0]
        assert obs["logic"][oxygen].tolist() == [0.0] * 6  # the tank is empty at the start
        down = spec.action_names.index("down")
        for _ in range(60):
            obs, *_ = env.step(down)
        ram = env._ale.getRAM()
        assert 0 < ram[102] <= 64
        assert obs["logic"][player, 1:3].tolist() == [ram[70], ram[97] + 33]
        assert obs["logic"][player, 2] > 46  # the submarine dived
        assert obs["logic"][oxygen].tolist() == [1.0, 49.0, 170.0, min(ram[102], 63), 5.0, ram[102]]
    finally:
        env.close()


def test_atari_async_equals_sync_and_copy_i_gets_seed_plus_i():
    """Two copies in subprocesses; copy 1 (seed 8) follows the same path as a lone copy seeded 8."""
    env_async = make_vec_env("seaquest", 2, vectorization="async")
    env_sync = make_vec_env("seaquest", 2, vectorization="sync")
    env_one = make_vec_env("seaquest", 1, vectorization="sync")
    try:
        runs = []
        for env in (env_async, env_sync):
            (logic, neural), actions, batches = rollout(env, seed=7, steps=40)
            runs.append((logic, neural, batches))
        (la, na, ba), (ls, ns, bs) = runs
        assert np.array_equal(la, ls) and np.array_equal(na, ns)
        for x, y in zip(ba, bs):
            assert np.array_equal(x.next_logic, y.next_logic)
            assert np.array_equal(x.next_neural, y.next_neural)
            assert np.array_equal(x.reward, y.reward)
        logic, neural = env_one.reset(seed=8)
        assert np.array_equal(logic[0], la[1]) and np.array_equal(neural[0], na[1])
        for a, x in zip(actions, ba):
            b = env_one.step(a[1:])
            assert np.array_equal(b.next_neural[0], x.next_neural[1])
            assert np.array_equal(b.next_logic[0], x.next_logic[1])
        # A different seed gives a different trajectory (sticky actions draw differently).
        _, _, other = rollout(env_sync, seed=9, steps=40)
        assert any(not np.array_equal(x.next_neural, y.next_neural) for x, y in zip(bs, other))
    finally:
        env_async.close()
        env_sync.close()
        env_one.close()


def test_atari_truncation_keeps_the_final_state_through_subprocesses():
    """A short time limit: truncated (not terminated) with the true final Dict state, async."""
    from blendrl.envs.atari import make_atari_vec

    spec = dataclasses.replace(get_spec("seaquest"), max_episode_steps=60)
    env = make_atari_vec(spec, 2, vectorization="async")
    try:
        _, neural = env.reset(seed=3)
        down = np.full(2, spec.action_names.index("down"))
        for t in range(1, 61):
            b = env.step(down)
            # The successor continues the stack of the state acted on, final state included.
            assert np.array_equal(b.next_neural[:, :3], neural[:, 1:])
            if t < 60:
                assert not b.done.any()
                assert np.array_equal(b.next_neural, b.obs_neural)
            neural = b.obs_neural
        assert b.truncated.all() and not b.terminated.any()
        assert np.array_equal(b.episode_length, [60, 60])
        assert np.array_equal(b.episode_return, [0.0, 0.0])
        # The final submarine has dived; the reset submarine is back at the surface (76, 46).
        assert np.all(b.next_logic[:, 0, 2] > 46)
        assert np.all(b.obs_logic[:, 0, :3] == [1.0, 76.0, 46.0])
        for i in range(2):
            assert all(np.array_equal(b.obs_neural[i, 0], b.obs_neural[i, k]) for k in range(4))
            assert not np.array_equal(b.next_neural[i], b.obs_neural[i])
    finally:
        env.close()


def test_atari_game_over_gives_the_terminal_state():
    """Donkey Kong played randomly until a game over: terminated, true final state, statistics.

    (Not Seaquest: its game-over screen shows the submarine back at the start, an object state
    equal to a reset state, so it could not tell a final state from a reset state.)
    """
    env = make_vec_env("donkeykong", 1, vectorization="sync")
    try:
        _, neural = env.reset(seed=5)
        rng = np.random.default_rng(0)
        total, steps = 0.0, 0
        while True:
            b = env.step(random_actions(rng, env))
            total += b.reward[0]
            steps += 1
            assert steps < 3000, "no game over"
            assert np.array_equal(b.next_neural[0, :3], neural[0, 1:])
            if b.done[0]:
                break
            neural = b.obs_neural
        assert b.terminated[0] and not b.truncated[0]
        assert b.episode_length[0] == steps and b.episode_return[0] == total
        assert not np.array_equal(b.next_neural[0], b.obs_neural[0])
        assert not np.array_equal(b.next_logic[0], b.obs_logic[0])
        # Mario back at the start (x 45 on the bottom floor; the FIRE press of the start protocol
        # makes him jump, so y and h are those of a jump).
        assert b.obs_logic[0, 0, :2].tolist() == [1.0, 45.0] and b.obs_logic[0, 0, 2] >= 165
        assert b.next_logic[0, 0, 1:3].tolist() != [45.0, 176.0]
    finally:
        env.close()


def test_atari_bad_arguments_are_rejected():
    with pytest.raises(ValueError, match="vectorization"):
        make_vec_env("kangaroo", 1, vectorization="threads")
    with pytest.raises(ValueError, match="num_envs"):
        make_vec_env("kangaroo", 0)
    with pytest.raises(ValueError, match="repeat_action_probability"):
        OCAtariEnv(get_spec("kangaroo"), repeat_action_probability=1.5)
    env = OCAtariEnv(get_spec("kangaroo"))
    with pytest.raises(RuntimeError, match="reset"):
        env.step(0)
    # A slot type that is not an OCAtari category of the game is an error naming it.
    bad = OCAtariEnv(atari_spec("kangaroo", "ALE/Kangaroo-v5", [("player", 1), ("dragon", 2)]))
    with pytest.raises(ValueError, match="'dragon' is not an OCAtari category"):
        bad.reset(seed=0)
    # Fewer slots than OCAtari can report would drop objects silently: refused.
    few = OCAtariEnv(atari_spec("kangaroo", "ALE/Kangaroo-v5", [("player", 1), ("platform", 2)]))
    with pytest.raises(ValueError, match="2 slots for 'platform'"):
        few.reset(seed=0)
    wrong = dataclasses.replace(get_spec("kangaroo"), action_names=ALE_FULL_ACTION_NAMES[:6])
    with pytest.raises(ValueError, match="action names"):
        OCAtariEnv(wrong).reset(seed=0)


# ---------------------------------------------------------------------------------------------
# the start protocol and lives (issue 13)
# ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("name", ATARI_ENVS)
def test_atari_start_is_noop_steps_then_fire_and_up(name):
    """A reset with seed s plays k no-op agent steps (k drawn from the ALE env's generator seeded
    by s), then FIRE and UP: the state equals a plain start driven by those actions by hand."""
    spec = get_spec(name)
    env, plain = OCAtariEnv(spec), OCAtariEnv(spec, noop_max=0, fire_reset=False)
    try:
        obs, info = env.reset(seed=13)
        assert info == {"life_lost": False} and env._fire  # all three games have FIRE as action 1
        ref, _ = plain.reset(seed=13)
        k = int(plain._ale_rng.integers(1, 31))  # the draw env.reset made from the same generator
        for a in [0] * k + [spec.action_names.index("fire"), 2]:
            ref, *_ = plain.step(a)
        assert env._ale.getEpisodeFrameNumber() == plain._ale.getEpisodeFrameNumber() == 4 * (k + 2)
        assert np.array_equal(obs["logic"], ref["logic"])
        assert all(np.array_equal(obs["neural"][i], ref["neural"][-1]) for i in range(4))
        # Another seed draws another number of no-ops (the starts really differ).
        counts = set()
        for s in range(6):
            env.reset(seed=100 + s)
            counts.add(env._ale.getEpisodeFrameNumber())
        assert len(counts) >= 4
    finally:
        env.close()
        plain.close()


def test_atari_life_lost_flag_and_fire_after_a_lost_life():
    """Kangaroo played randomly to a game over: life_lost is exactly where ALE's lives dropped;
    a lost life that does not end the game is followed, inside the same transition, by FIRE and
    UP (12 frames instead of 4); the game is not reset there."""
    spec = get_spec("kangaroo")
    env = OCAtariEnv(spec)
    try:
        env.reset(seed=2)
        rng = np.random.default_rng(1)
        lives, frames, lost = env._ale.lives(), env._ale.getEpisodeFrameNumber(), 0
        assert lives == 3
        for _ in range(5000):
            _, _, term, trunc, info = env.step(int(rng.integers(0, spec.n_actions)))
            now_lives, now_frames = env._ale.lives(), env._ale.getEpisodeFrameNumber()
            assert info["life_lost"] == (now_lives < lives)
            if term:
                break
            assert now_frames - frames == (12 if info["life_lost"] else 4)
            lost += info["life_lost"]
            lives, frames = now_lives, now_frames
        assert term and lost == 2  # three lives: two lost in play, the last one ends the game
    finally:
        env.close()


def test_life_lost_reaches_the_step_batch_through_subprocesses_and_autoreset():
    """VecEnv.step's life_lost equals the per-env flags, also on the step that ends an episode
    (whose info gymnasium moves to final_info); classic control has none."""
    env = make_vec_env("kangaroo", 2, vectorization="async")
    single = [OCAtariEnv(get_spec("kangaroo")) for _ in range(2)]
    try:
        env.reset(seed=5)
        for i, e in enumerate(single):
            e.reset(seed=5 + i)
        rng = np.random.default_rng(3)
        flags, ends = 0, 0
        for _ in range(1200):
            a = rng.integers(0, 18, size=2)
            b = env.step(a)
            for i, e in enumerate(single):
                _, _, term, trunc, info = e.step(int(a[i]))
                assert b.life_lost[i] == info["life_lost"]
                if term or trunc:
                    e.reset()
            flags += int(b.life_lost.sum())
            ends += int((b.done & b.life_lost).sum())
        assert flags > 0 and ends > 0
    finally:
        env.close()
        for e in single:
            e.close()
    classic = make_vec_env("cartpole", 2)
    classic.reset(seed=0)
    b = classic.step(np.zeros(2, dtype=np.int64))
    assert b.life_lost.dtype == bool and not b.life_lost.any()
    classic.close()
    assert get_spec("kangaroo").has_lives and not get_spec("cartpole").has_lives
