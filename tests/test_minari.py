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
from dataclasses import replace
from pathlib import Path

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


def test_cartpole_export_reads_back_step_for_step(tmp_path):
    src = write_cartpole(tmp_path / "ds")
    assert cli(["export-minari", str(src), "--dataset-id", "blendrl/cartpole-test-v0"]) == 0
    ds = minari.load_dataset("blendrl/cartpole-test-v0")
    expected = episodes_of_reader(src)
    assert len(ds) == len(expected) and ds.total_steps == len(DatasetReader(src))
    assert ds.env_spec.id == "CartPole-v1"
    for ep, exp in zip(ds.iterate_episodes(), expected):
        b, rows = exp["b"], exp["rows"]
        assert_bits_equal(ep.observations[:-1], b.neural_state[rows], "obs")
        assert_bits_equal(ep.observations[1:], b.next_neural_state[rows], "next obs")
        assert_bits_equal(ep.infos["logic_state"][1:], b.next_logic_state[rows], "logic")
        assert (ep.actions == b.action[rows]).all() and ep.actions.dtype == np.int64
        assert_bits_equal(ep.rewards, b.reward[rows], "rewards")
        assert (ep.terminations == b.terminated[rows]).all()
        cut = ep.infos["cut"][1:]
        assert (ep.truncations == (b.truncated[rows] | cut)).all()
        assert (ep.infos["transition_index"][1:] == rows).all()
        assert (ep.infos["env_index"] == rows[0] % NUM_ENVS).all()
        assert cut.sum() == (not (b.terminated[rows[-1]] or b.truncated[rows[-1]]))
    meta = ds.storage.metadata["blendrl"]
    assert meta["complete"] and meta["source_manifest"]["marks"] == [60, 160, 240]
    assert meta["chunks"] == [50, 26, 50, 50, 50, 14] and meta["cut_episodes"] == NUM_ENVS
