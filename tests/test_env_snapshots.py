"""Environment snapshots (blendrl.envs.snapshot): a vector env restored from a snapshot, after a
round trip through a ``weights_only`` checkpoint, continues bit for bit as the original does --
through resets (the no-op generator), sticky actions (ALE's generator) and worker processes --
and a snapshot that does not fit, or names a class it may not, is refused."""

from __future__ import annotations

import dataclasses
import io

import numpy as np
import pytest
import torch

from blendrl.envs import CLASSIC_ENVS, get_spec, make_vec_env
from blendrl.envs import snapshot
from blendrl.envs.atari import (OCAtariEnv, _ocatari_enum_class, _ocatari_object_class,
                                make_atari_vec)


def through_a_checkpoint(state: dict) -> dict:
    buf = io.BytesIO()
    torch.save(state, buf)
    buf.seek(0)
    return torch.load(buf, weights_only=True)


def play(env, actions: np.ndarray) -> list:
    return [env.step(a) for a in actions]


def assert_same(batches_a: list, batches_b: list) -> None:
    assert len(batches_a) == len(batches_b)
    for t, (a, b) in enumerate(zip(batches_a, batches_b)):
        for field in a._fields:
            assert np.array_equal(getattr(a, field), getattr(b, field), equal_nan=True), (t, field)


def check_continuation(make, n_actions: int, num_envs: int, before: int, after: int) -> list:
    """Play ``before`` steps (the last 5 all one action), snapshot, play ``after``; a fresh env
    (other seed, its last steps another action: the action ALE repeats on a sticky frame
    differs) given the snapshot plays the same ``after`` steps identically. The original's
    batches."""
    actions = np.random.default_rng(0).integers(0, n_actions, (before + after, num_envs))
    actions[before - 5:before] = 1
    a, b = make(), make()
    try:
        a.reset(seed=11)
        play(a, actions[:before])
        snap = through_a_checkpoint(a.get_state())
        original = play(a, actions[before:])
        b.reset(seed=999)
        play(b, np.full((7, num_envs), n_actions - 1))
        b.set_state(snap)
        assert_same(original, play(b, actions[before:]))
        # without the snapshot the same actions give another continuation (the check can fail)
        b.reset(seed=11)
        assert any(not np.array_equal(x.obs_neural, y.obs_neural)
                   for x, y in zip(original, play(b, actions[before:])))
        return original
    finally:
        a.close()
        b.close()


@pytest.mark.parametrize("name", CLASSIC_ENVS)
def test_classic_snapshot_continues_exactly(name):
    spec = get_spec(name)
    original = check_continuation(lambda: make_vec_env(name, 3), spec.n_actions, 3, 150, 400)
    assert sum(int(x.done.sum()) for x in original) >= 3  # resets after the restore are covered


@pytest.mark.parametrize("name,vectorization,before", [
    ("kangaroo", "async", 90), ("seaquest", "sync", 100), ("donkeykong", "sync", 90)])
def test_atari_snapshot_continues_exactly(name, vectorization, before):
    # short episodes, so that the continuation resets several times (no-op starts drawn from the
    # restored generator); sticky actions (p = 0.25) draw from ALE's restored generator and repeat
    # the snapshot's action in effect (Seaquest at 100 steps: wrong from the first step when the
    # restored copy repeated its own last action)
    spec = dataclasses.replace(get_spec(name), max_episode_steps=60)
    original = check_continuation(lambda: make_atari_vec(spec, 4, vectorization=vectorization),
                                  spec.n_actions, 4, before, 160)
    assert sum(int(x.done.sum()) for x in original) >= 8


def test_a_sticky_frame_after_a_restore_repeats_the_action_the_original_repeats():
    """Where the next ALE frame is sticky (read from the snapshot's generator), the restored copy
    repeats what the original repeats: one frame of a new action gives the original's RAM, every
    time; restoring with the action asked for last in effect instead (what ALE's own state would
    leave) visibly does not, in many of these cases: the check can fail."""
    from blendrl.envs.atari import _MT_MAX, _StickyActions

    spec = get_spec("kangaroo")
    a, b = OCAtariEnv(spec), OCAtariEnv(spec)
    a.reset(seed=5)
    b.reset(seed=6)
    rng = np.random.default_rng(2)
    considered = wrong_differs = 0
    for _ in range(700):
        _, _, terminated, truncated, _ = a.step(rng.integers(spec.n_actions))
        if terminated or truncated:
            a.reset()
        snap = through_a_checkpoint({"s": a.env_state})["s"]
        mt = np.random.MT19937(0)
        mt.state = _StickyActions._generator_state(snap["ale"])
        new = int(a._action_set[rng.integers(spec.n_actions)])
        if mt.random_raw(2)[0] / _MT_MAX >= 0.25 or new == snap["sticky_action"]:
            continue  # the next frame takes the new action, or repeats that very action
        considered += 1
        a._ale.act(new)
        truth = a._ale.getRAM().copy()
        for in_effect in (snap["sticky_action"], new):
            b.env_state = {**snap, "sticky_action": in_effect}
            b._ale.act(new)
            if in_effect == snap["sticky_action"]:
                assert np.array_equal(b._ale.getRAM(), truth)
            else:
                wrong_differs += not np.array_equal(b._ale.getRAM(), truth)
        a.env_state = snap  # back to the snapshot, the probe frame undone
    assert considered >= 100 and wrong_differs >= 30, (considered, wrong_differs)
    a.close()
    b.close()


def test_the_action_in_effect_is_restored_however_sticky_the_game():
    """At p = 0.95 a restore must act the action in effect until a frame takes it -- over 64
    frames sticky throughout with probability 0.04 -- however long that is (the generator says)."""
    spec = get_spec("kangaroo")
    a, b = (OCAtariEnv(spec, repeat_action_probability=0.95) for _ in range(2))
    a.reset(seed=1)
    b.reset(seed=2)
    rng = np.random.default_rng(0)
    for point in range(12):
        for _ in range(9):
            a.step(rng.integers(spec.n_actions))
        snap = a.env_state
        b.step(spec.n_actions - 1 - snap["sticky_action"] % spec.n_actions)
        b.env_state = snap
        actions = rng.integers(0, spec.n_actions, 20)
        for t, action in enumerate(actions):
            out_a, out_b = a.step(action), b.step(action)
            assert np.array_equal(out_a[0]["neural"], out_b[0]["neural"]), (point, t)
            assert np.array_equal(a._ale.getRAM(), b._ale.getRAM()), (point, t)
    a.close()
    b.close()


def test_a_snapshot_that_does_not_fit_is_refused():
    env = make_vec_env("cartpole", 2)
    env.reset(seed=0)
    snap = env.get_state()
    with pytest.raises(snapshot.SnapshotError, match="2 cartpole copies cannot be restored into 3"):
        bigger = make_vec_env("cartpole", 3)
        bigger.reset(seed=0)
        bigger.set_state(snap)
    with pytest.raises(snapshot.SnapshotError, match="cannot be restored into 2 mountaincar"):
        other = make_vec_env("mountaincar", 2)
        other.reset(seed=0)
        other.set_state(snap)
    with pytest.raises(snapshot.SnapshotError, match="version 99 is not 2"):
        env.set_state({**snap, "version": 99})


def test_only_ocatari_object_classes_and_enums_are_made_from_a_snapshot():
    import ocatari.ram.kangaroo  # noqa: F401 -- imported, as an env that made the snapshot has
    from ocatari.ram.kangaroo import Player
    from ocatari.ram.game_objects import Orientation

    assert _ocatari_object_class("ocatari.ram.kangaroo", "Player") is Player
    assert _ocatari_enum_class(Orientation.__module__, "Orientation") is Orientation
    for module, name in [("builtins", "eval"), ("os", "system"), ("ocatari.core", "OCAtari"),
                         ("ocatari.ram.kangaroo", "np"), ("ocatari.ram.kangaroo", "Player.__init__"),
                         ("ocatari.ram.not_imported_or_absent", "Player"),
                         (Orientation.__module__, "Orientation")]:
        with pytest.raises(snapshot.SnapshotError, match="not an OCAtari object class"):
            _ocatari_object_class(module, name)
    with pytest.raises(snapshot.SnapshotError, match="not an OCAtari enum"):
        _ocatari_enum_class("ocatari.ram.kangaroo", "Player")  # a class, not an enum
    # through the snapshot's own decoding: an enum tag naming an object class, an object
    # naming an enum
    with pytest.raises(snapshot.SnapshotError, match="not an OCAtari enum"):
        snapshot.decode_value(("enum", "ocatari.ram.kangaroo", "Player", 5), _ocatari_enum_class)
    with pytest.raises(snapshot.SnapshotError, match="not an OCAtari object class"):
        snapshot.decode_object((Orientation.__module__, "Orientation", {}), _ocatari_object_class,
                               _ocatari_enum_class)


def test_a_malformed_atari_snapshot_is_refused_and_leaves_the_copy_as_it_was():
    spec = get_spec("kangaroo")
    env = OCAtariEnv(spec)
    env.reset(seed=0)
    good = env.env_state
    for _ in range(5):
        env.step(2)
    before = env.env_state
    broken = [{**good, "ale": good["ale"][:100]},
              {**good, "stack": good["stack"][:2]},
              {**good, "objects": [("ocatari.ram.kangaroo", "Player", {"_orientation": ("enum", "x")})]},
              {**good, "noop_rng": {"bit_generator": "MT19937", "state": {}}},
              {k: v for k, v in good.items() if k != "lives"},
              {**good, "sticky_action": 99}]  # ALE ends the process on acting an unknown action
    for state in broken:
        with pytest.raises(snapshot.SnapshotError):
            env.env_state = state
        after = env.env_state
        assert after["ale"] == before["ale"] and torch.equal(after["stack"], before["stack"])
    env.close()


def test_values_round_trip_and_unknown_types_are_named():
    class Colour:
        pass

    import enum

    class Side(enum.Enum):
        LEFT = 1

    value = (1, 2.5, None, True, "x", [np.float64(0.1), (3, Side.LEFT)], ("enum", 4))
    data = through_a_checkpoint({"v": snapshot.encode_value(value, "v")})["v"]
    back = snapshot.decode_value(data, lambda m, n: Side)
    with pytest.raises(snapshot.SnapshotError, match="not a snapshot value"):
        snapshot.decode_value(torch.zeros(1), lambda m, n: Side)
    assert back == (1, 2.5, None, True, "x", [0.1, (3, Side.LEFT)], ("enum", 4))
    assert type(back[5][0]) is float
    with pytest.raises(snapshot.SnapshotError, match=r"obj.colour: a Colour cannot be kept"):
        snapshot.encode_value(Colour(), "obj.colour")
    with pytest.raises(snapshot.SnapshotError, match=r"v\[1\]: a dict"):
        snapshot.encode_value([1, {}], "v")


def test_a_copy_that_cannot_be_snapshot_is_an_error_in_the_parent_and_the_workers_live_on():
    spec = dataclasses.replace(get_spec("kangaroo"), max_episode_steps=60)
    env = make_atari_vec(spec, 2, vectorization="async")
    try:
        with pytest.raises(snapshot.SnapshotError, match="kangaroo copy 0: call reset"):
            env.get_state()
        env.reset(seed=0)
        env.vec.call("__setattr__", "_steps", object())  # what no snapshot can hold
        with pytest.raises(snapshot.SnapshotError, match="kangaroo copy 0: .*object"):
            env.get_state()
        env.vec.call("__setattr__", "_steps", 0)
        env.vec.call("__setattr__", "_ale_state_bytes", None)  # any error, not only SnapshotError
        with pytest.raises(snapshot.SnapshotError, match="kangaroo copy 0: TypeError"):
            env.get_state()
        env.vec.call("__delattr__", "_ale_state_bytes")
        env.step(np.zeros(2, dtype=np.int64))  # the workers still step
        assert env.get_state()["num_envs"] == 2
    finally:
        env.close()


def test_the_online_checkpoint_is_still_written_without_a_snapshot_and_says_so(capsys):
    from blendrl.online import environment_snapshot

    class CannotSnapshot:
        def get_state(self):
            raise snapshot.SnapshotError("kangaroo copy 0: objects[3].x: a Colour cannot be kept")

    assert environment_snapshot(CannotSnapshot(), np.zeros(1), np.zeros(1), "r1") is None
    err = capsys.readouterr().err
    assert "[r1] warning: no environment snapshot in this checkpoint (kangaroo copy 0" in err
    assert "restarts the episodes" in err
