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
from blendrl.envs.atari import _ocatari_class, make_atari_vec


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
    """Play ``before`` steps, snapshot, play ``after``; a fresh env (other seed, other steps)
    given the snapshot plays the same ``after`` steps identically. The original's batches."""
    actions = np.random.default_rng(0).integers(0, n_actions, (before + after, num_envs))
    a, b = make(), make()
    try:
        a.reset(seed=11)
        play(a, actions[:before])
        snap = through_a_checkpoint(a.get_state())
        original = play(a, actions[before:])
        b.reset(seed=999)
        play(b, actions[:7])
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


@pytest.mark.parametrize("name,vectorization", [("kangaroo", "async"), ("seaquest", "sync"),
                                                ("donkeykong", "sync")])
def test_atari_snapshot_continues_exactly(name, vectorization):
    # short episodes, so that the continuation resets several times (no-op starts drawn from the
    # restored generator); sticky actions (p = 0.25) draw from ALE's restored generator
    spec = dataclasses.replace(get_spec(name), max_episode_steps=60)
    original = check_continuation(lambda: make_atari_vec(spec, 2, vectorization=vectorization),
                                  spec.n_actions, 2, 90, 160)
    assert sum(int(x.done.sum()) for x in original) >= 4


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
    with pytest.raises(snapshot.SnapshotError, match="version 99 is not 1"):
        env.set_state({**snap, "version": 99})


def test_only_ocatari_object_classes_are_made_from_a_snapshot():
    from ocatari.ram.kangaroo import Player
    assert _ocatari_class("ocatari.ram.kangaroo", "Player") is Player
    for module, name in [("builtins", "eval"), ("os", "system"), ("ocatari.core", "OCAtari"),
                         ("ocatari.ram.kangaroo", "np"), ("ocatari.ram.kangaroo", "Player.__init__")]:
        with pytest.raises(snapshot.SnapshotError, match="not an OCAtari object class"):
            _ocatari_class(module, name)


def test_values_round_trip_and_unknown_types_are_named():
    class Colour:
        pass

    import enum

    class Side(enum.Enum):
        LEFT = 1

    value = (1, 2.5, None, True, "x", [np.float64(0.1), (3, Side.LEFT)], ("enum", 4))
    data = through_a_checkpoint({"v": snapshot.encode_value(value, "v")})["v"]
    back = snapshot.decode_value(data, lambda m, n: Side)
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
