"""Minari export (``dataset_utils.py export-minari``) and import (``--minari_dataset``), issue 32:
docs/MINARI.md.

Every test writes into ``tmp_path`` (``MINARI_DATASETS_PATH`` points there). Datasets: a small
real CartPole dataset written by the project's env and ``DatasetWriter`` (random actions, two
copies, marks, a trailing unfinished episode per copy), an Atari-shaped one from the dataset
tests' frame stream (lost lives, glitches: next states that are not the following state), and
one written by minari's own ``DataCollector``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

minari = pytest.importorskip("minari")

import torch  # noqa: E402

from blendrl.offline import OfflineArgs, main as offline_main  # noqa: E402
from dataset_utils import DatasetReader, DatasetWriter, main as cli  # noqa: E402
from helpers_dataset import assert_bits_equal, make_stream, writer_kwargs  # noqa: E402

NUM_ENVS = 2


@pytest.fixture(autouse=True)
def _minari_home(tmp_path, monkeypatch):
    """Minari's dataset folder in the test's tmp_path; torch's thread count restored."""
    monkeypatch.setenv("MINARI_DATASETS_PATH", str(tmp_path / "minari"))
    previous = torch.get_num_threads()
    yield
    torch.set_num_threads(previous)


def write_cartpole(path: Path, steps: int = 120, marks: tuple = (60, 160, 240), seed: int = 0,
                   chunk_size: int = 50, finish: bool = True) -> Path:
    """``steps`` steps of ``NUM_ENVS`` real CartPole copies under random actions."""
    from blendrl.envs import get_spec, make_vec_env

    spec = get_spec("cartpole")
    env = make_vec_env("cartpole", NUM_ENVS)
    logic, neural = env.reset(seed=seed)
    rng = np.random.default_rng(seed)
    meta = {"method": "ppo", "run_id": "src", "exp_id": "e", "seed": 3, "reward_transform": "none",
            "life_loss_terminal": False}
    with DatasetWriter(path, env="cartpole", num_envs=NUM_ENVS, logic_shape=spec.logic_shape,
                       neural_shape=spec.neural_shape, neural_dtype=np.float32, n_actions=2,
                       chunk_size=chunk_size, metadata=meta) as w:
        for t in range(steps):
            action = rng.integers(0, 2, NUM_ENVS)
            s = env.step(action)
            w.add(logic, neural, action, s.reward.astype(np.float64), s.next_logic, s.next_neural,
                  s.terminated, s.truncated)
            logic, neural = s.obs_logic, s.obs_neural
            if (t + 1) * NUM_ENVS in marks:
                w.mark((t + 1) * NUM_ENVS)
            if t == 37:
                w.flush()  # a short chunk in the middle: the import must rebuild it
        if finish:
            w.finish()
    env.close()
    return path


def episodes_of_reader(path: Path) -> list[dict]:
    """The project reader's transitions cut per copy at terminations, truncations and the end."""
    r = DatasetReader(path)
    b = r.get(np.arange(len(r)))
    n = r.num_envs
    out = []
    for i in range(n):
        rows = np.arange(i, len(r), n)
        ends = np.flatnonzero(b.terminated[rows] | b.truncated[rows]) + 1
        for piece in np.split(rows, ends):
            if piece.size:
                out.append({"first": int(piece[0]), "rows": piece, "b": b})
    return sorted(out, key=lambda e: e["first"])


def check_export(src: Path, dataset_id: str) -> Any:
    """The Minari dataset ``dataset_id`` holds ``src``'s transitions, episode by episode and step
    for step (the project's reader's); returns it."""
    ds = minari.load_dataset(dataset_id)
    expected = episodes_of_reader(src)
    assert len(ds) == len(expected) and ds.total_steps == len(DatasetReader(src))
    metas = list(ds.storage.get_episode_metadata(range(len(ds))))
    for ep, exp, meta in zip(ds.iterate_episodes(), expected, metas):
        b, rows = exp["b"], exp["rows"]
        assert meta["total_steps"] == len(ep) == len(rows)
        assert_bits_equal(ep.observations[:-1], b.neural_state[rows], "obs")
        assert_bits_equal(ep.observations[1:], b.next_neural_state[rows], "next obs")
        assert_bits_equal(ep.infos["logic_state"][1:], b.next_logic_state[rows], "logic")
        assert_bits_equal(ep.infos["logic_state"][:1], b.logic_state[rows[:1]], "first logic")
        assert (ep.actions == b.action[rows]).all() and ep.actions.dtype == np.int64
        assert_bits_equal(ep.rewards, b.reward[rows], "rewards")
        assert (ep.terminations == b.terminated[rows]).all()
        cut = ep.infos["cut"][1:]
        assert (ep.truncations == (b.truncated[rows] | cut)).all()
        assert (ep.infos["transition_index"][1:] == rows).all()
        assert (ep.infos["env_index"] == rows[0] % NUM_ENVS).all()
        assert cut.sum() == (not (b.terminated[rows[-1]] or b.truncated[rows[-1]]))
    return ds


def test_cartpole_export_reads_back_step_for_step(tmp_path):
    src = write_cartpole(tmp_path / "ds")
    assert cli(["export-minari", str(src), "--dataset-id", "blendrl/cartpole-test-v0"]) == 0
    ds = check_export(src, "blendrl/cartpole-test-v0")
    assert ds.env_spec.id == "CartPole-v1"
    meta = ds.storage.metadata["blendrl"]
    assert meta["complete"] and meta["source_manifest"]["marks"] == [60, 160, 240]
    assert meta["chunks"] == [50, 26, 50, 50, 50, 14] and meta["cut_episodes"] == NUM_ENVS


def test_small_windows_write_episodes_piece_by_piece(tmp_path):
    from blendrl.interop.minari_export import export_minari
    from blendrl.interop.minari_import import import_minari

    src = write_cartpole(tmp_path / "ds", steps=80)
    # 64 bytes of states a transition: windows of 3 steps, so most episodes span several
    summary = export_minari(src, "blendrl/pieces-v0", window_bytes=64 * 6)
    assert summary["steps"] == 160
    check_export(src, "blendrl/pieces-v0")
    assert_same_dataset(src, import_minari("blendrl/pieces-v0", tmp_path / "cache", "cartpole"))


def write_frames(path: Path, env: str = "kangaroo", kind: str = "atari", steps: int = 30,
                 num_envs: int = 3, finish: bool = True) -> Path:
    """An Atari-shaped dataset: frame stacks, lost lives, glitches (a next state that is not the
    copy's following state), a short chunk."""
    meta = {"method": "blendrl_ppo", "run_id": "atari_src", "seed": 5}
    stream = make_stream(kind, num_envs, steps, seed=4, glitch=0.15, life_lost=True)
    with DatasetWriter(path, chunk_size=24, metadata=meta,
                       **{**writer_kwargs(kind, num_envs), "env": env}) as w:
        for t, st in enumerate(stream):
            w.add(**st)
            if t == 10:
                w.mark((t + 1) * num_envs)
        if finish:
            w.finish()
    return path


def assert_same_dataset(a: Path, b: Path) -> None:
    """Two project datasets hold the same transitions, bit for bit, in the same chunks and marks."""
    ra, rb = DatasetReader(a), DatasetReader(b)
    assert len(ra) == len(rb) and ra.marks == rb.marks and ra.num_envs == rb.num_envs
    assert [e["count"] for e in ra.manifest["chunks"]] == [e["count"] for e in rb.manifest["chunks"]]
    assert ra.has_life_lost == rb.has_life_lost
    ba, bb = ra.get(np.arange(len(ra))), rb.get(np.arange(len(rb)))
    for name, x, y in zip(ba._fields, ba, bb):
        assert_bits_equal(x, y, name)


def test_atari_shaped_export_keeps_stacks_lives_and_cuts_at_glitches(tmp_path):
    src = write_frames(tmp_path / "ds")
    assert cli(["export-minari", str(src), "--dataset-id", "kangaroo-frames-v1"]) == 0
    ds = minari.load_dataset("kangaroo-frames-v1")
    assert ds.observation_space.shape == (4, 84, 84) and ds.env_spec is None
    r = DatasetReader(src)
    b = r.get(np.arange(len(r)))
    seen = np.zeros(len(r), bool)
    cuts = 0
    for ep in ds.iterate_episodes():
        rows = ep.infos["transition_index"][1:]
        seen[rows] = True
        assert_bits_equal(ep.observations[:-1], b.neural_state[rows], "stacks")
        assert_bits_equal(ep.observations[1:], b.next_neural_state[rows], "next stacks")
        assert (ep.infos["life_lost"][1:] == b.life_lost[rows]).all()
        assert (ep.infos["learner_reward"][1:] == np.sign(b.reward[rows])).all()  # Atari: sign
        assert (ep.infos["learner_no_bootstrap"][1:] == (b.terminated | b.life_lost)[rows]).all()
        cuts += int(ep.infos["cut"].sum())
    assert seen.all() and cuts == ds.storage.metadata["blendrl"]["cut_episodes"] > 3  # glitches
    # imported back (no training: Atari evaluation is slow), the very dataset
    from blendrl.interop.minari_import import import_minari

    back = import_minari("kangaroo-frames-v1", tmp_path / "cache", None)
    assert_same_dataset(src, back)
    assert DatasetReader(back).metadata["run_id"] == "atari_src"


def offline_args(tmp_path: Path, run_id: str, **kw) -> OfflineArgs:
    base = dict(run_id=run_id, runs_dir=tmp_path / "runs", dataset_dir=tmp_path / "cache",
                epochs=1, batch_size=16, eval_episodes=2, eval_envs=1, threads=1, device="cpu",
                hidden=8, critic_hidden=16, log_every=5, progress_seconds=1000.0)
    base.update(kw)
    return OfflineArgs(**base)


def results_without_timing(tmp_path: Path, run_id: str) -> list[dict]:
    out = json.loads((tmp_path / "runs" / run_id / "results.json").read_text())
    return [{k: v for k, v in r.items() if not k.endswith("_seconds")} for r in out]


def test_round_trip_trains_to_the_same_results(tmp_path):
    src = write_cartpole(tmp_path / "ds")
    assert cli(["export-minari", str(src), "--dataset-id", "rt/cartpole-v0"]) == 0
    assert offline_main(offline_args(tmp_path, "orig", dataset=src), "iql") == 0
    assert offline_main(offline_args(tmp_path, "back", minari_dataset="rt/cartpole-v0"), "iql") == 0
    back = tmp_path / "cache" / "minari-rt_cartpole-v0"
    assert_same_dataset(src, back)
    assert [r["data_limit"] for r in results_without_timing(tmp_path, "orig")] == [60, 160, 240]
    assert results_without_timing(tmp_path, "orig") == results_without_timing(tmp_path, "back")
    run = json.loads((tmp_path / "runs" / "back" / "run.json").read_text())
    assert run["dataset_source"]["run_id"] == "src" and run["args"]["minari_dataset"] == "rt/cartpole-v0"
    stamp = (back / "manifest.json").stat().st_mtime_ns
    assert offline_main(offline_args(tmp_path, "again", minari_dataset="rt/cartpole-v0"), "iql") == 0
    assert (back / "manifest.json").stat().st_mtime_ns == stamp  # converted once, reused


def collect_cartpole(dataset_id: str, episodes: int = 4, seed: int = 0) -> None:
    """A Minari dataset written by minari's own DataCollector: random CartPole-v1 policy."""
    import gymnasium as gym

    env = minari.DataCollector(gym.make("CartPole-v1"))
    env.reset(seed=seed)
    env.action_space.seed(seed)
    done = 0
    while done < episodes:
        _, _, term, trunc, _ = env.step(env.action_space.sample())
        if term or trunc:
            done += 1
            env.reset()
    with pytest.warns(UserWarning):
        env.create_dataset(dataset_id=dataset_id, algorithm_name="random")
    env.close()


def test_import_of_a_data_collector_dataset_and_a_real_run(tmp_path):
    collect_cartpole("cp/random-v0")
    ds = minari.load_dataset("cp/random-v0")
    assert offline_main(offline_args(tmp_path, "dc", minari_dataset="cp/random-v0", intervals=2),
                        "iql") == 0
    results = results_without_timing(tmp_path, "dc")
    from blendrl.loop_state import interval_marks

    assert [r["data_limit"] for r in results] == interval_marks(ds.total_steps, 2)
    assert all(r["episodes"] == 2 for r in results)
    r = DatasetReader(tmp_path / "cache" / "minari-cp_random-v0")
    assert r.num_envs == 1 and r.env == "cartpole" and r.marks == []
    b, at = r.get(np.arange(len(r))), 0
    for ep in ds.iterate_episodes():
        rows = np.arange(at, at + len(ep))
        at += len(ep)
        assert_bits_equal(b.neural_state[rows], ep.observations[:-1], "obs")
        assert_bits_equal(b.next_neural_state[rows], ep.observations[1:], "next obs")
        assert_bits_equal(b.logic_state[rows], ep.observations[:-1].reshape(-1, 2, 2), "logic")
        assert (b.action[rows] == ep.actions).all() and (b.reward[rows] == ep.rewards).all()
        assert (b.terminated[rows] == ep.terminations).all() and (b.truncated[rows] == ep.truncations).all()
    assert at == len(r)


def test_export_refuses_bad_input_before_any_work(tmp_path, capsys):
    src = write_cartpole(tmp_path / "ds", steps=40)
    assert cli(["export-minari", str(src), "--dataset-id", "no version"]) == 2
    assert "bad Minari dataset id" in capsys.readouterr().err
    assert cli(["export-minari", str(tmp_path / "none"), "--dataset-id", "ab/b-v0"]) == 2
    assert cli(["export-minari", str(src), "--dataset-id", "ab/b-v0"]) == 0
    first = minari.load_dataset("ab/b-v0").total_episodes
    capsys.readouterr()
    assert cli(["export-minari", str(src), "--dataset-id", "ab/b-v0"]) == 2
    err = capsys.readouterr().err
    assert "exists already" in err and err.count("\n") == 1
    assert cli(["export-minari", str(src), "--dataset-id", "ab/b-v0", "--overwrite"]) == 0
    assert minari.load_dataset("ab/b-v0").total_episodes == first
    unfinished = write_cartpole(tmp_path / "unfinished", steps=40, finish=False)
    assert cli(["export-minari", str(unfinished), "--dataset-id", "ab/u-v0"]) == 2
    assert "not finished" in capsys.readouterr().err and "ab/u-v0" not in minari.list_local_datasets()
    assert cli(["export-minari", str(unfinished), "--dataset-id", "ab/u-v0", "--partial-dataset"]) == 0
    meta = minari.load_dataset("ab/u-v0").storage.metadata["blendrl"]
    assert meta["source_manifest"]["writer_finished"] is False
    # imported, it is unfinished again: refused without --partial_dataset, as the source is
    assert offline_main(offline_args(tmp_path, "u", minari_dataset="ab/u-v0"), "iql") == 2
    assert "--partial_dataset" in capsys.readouterr().err
    chunk = sorted(src.glob("chunk_*.pkl"))[0]
    chunk.write_bytes(chunk.read_bytes()[:-3] + b"xyz")
    assert cli(["export-minari", str(src), "--dataset-id", "ab/broken-v0"]) == 1
    assert chunk.name in capsys.readouterr().err


def _minari_without_episodes(dataset_id: str, env: str, **spaces) -> None:
    with pytest.warns(UserWarning):
        minari.create_dataset_from_buffers(dataset_id, [], env=env, **spaces)


@pytest.mark.parametrize("case, words", [
    ("unknown", "no Minari dataset 'nope/none-v0'"),
    ("other_env", "--env mountaincar does not match"),
    ("unknown_env", "recorded on Acrobot-v1"),
    ("foreign_atari", "Atari data is imported only from this project's exports"),
    ("other_space", "observation space"),
    ("unknown_export_env", "holds 'test-tinyframes' transitions"),
    ("interrupted_export", "did not finish"),
    ("two_sources", "give exactly one of"),
    ("follow", "drop --follow"),
])
def test_import_refuses_bad_input_with_exit_2(tmp_path, capsys, case, words):
    import gymnasium as gym

    kw: dict = {"minari_dataset": "xy/d-v0"}
    if case == "unknown":
        kw["minari_dataset"] = "nope/none-v0"
    elif case in ("other_env", "two_sources", "follow", "interrupted_export"):
        src = write_cartpole(tmp_path / "ds", steps=20)
        assert cli(["export-minari", str(src), "--dataset-id", "xy/d-v0"]) == 0
        extra = {"other_env": {"env": "mountaincar"}, "two_sources": {"dataset": src},
                 "follow": {"follow": True}}.get(case, {})
        kw.update(extra)
        if case == "interrupted_export":
            storage = minari.load_dataset("xy/d-v0").storage
            storage.update_metadata({"blendrl": {**storage.metadata["blendrl"], "complete": False}})
    elif case == "unknown_env":
        _minari_without_episodes("xy/d-v0", "Acrobot-v1")
    elif case == "foreign_atari":
        gym.register_envs(pytest.importorskip("ale_py"))
        _minari_without_episodes("xy/d-v0", "ALE/Kangaroo-v5")
    elif case == "other_space":
        _minari_without_episodes("xy/d-v0", "CartPole-v1",
                                 observation_space=gym.spaces.Box(-1, 1, (4,), np.float64))
    else:
        src = write_frames(tmp_path / "ds", env="test-tinyframes", kind="tinyframes", steps=8)
        assert cli(["export-minari", str(src), "--dataset-id", "xy/d-v0"]) == 0
    capsys.readouterr()
    assert offline_main(offline_args(tmp_path, "bad", **kw), "iql") == 2
    err = capsys.readouterr().err
    assert words in err and err.count("\n") == 1, err
    assert not (tmp_path / "runs" / "bad").exists() and not (tmp_path / "cache").exists()
