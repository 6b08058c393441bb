"""Test helpers for dataset_utils: a deterministic stream of environment steps, and a writer process.

``make_stream`` builds what a vectorised environment would hand to ``DatasetWriter.add``: episodes
that end by termination and by truncation at scattered places, with the true final state as the
next state where an episode ended, and (for frame kinds) 4-frame stacks that shift by one frame a
step and restart from a repeated reset frame. Float states include -0.0, a subnormal, inf and NaN
so that comparisons must be bit-exact.

Run as a script it is the writer process that the crash tests kill:
``python tests/helpers_dataset.py DIR --kind tinyframes --steps 400 ...``.
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

KINDS: dict[str, dict[str, Any]] = {
    # name: logic shape, neural shape, neural dtype, actions
    "classic": {"logic_shape": (2, 2), "neural_shape": (4,), "neural_dtype": np.float32, "n_actions": 2},
    "atari": {"logic_shape": (40, 6), "neural_shape": (4, 84, 84), "neural_dtype": np.uint8, "n_actions": 18},
    "tinyframes": {"logic_shape": (3, 2), "neural_shape": (4, 6, 5), "neural_dtype": np.uint8, "n_actions": 5},
}

FIELDS = ("logic", "neural", "action", "reward", "next_logic", "next_neural", "terminated", "truncated")
SPECIAL = np.array([-0.0, 1e-45, np.inf, -np.inf, np.nan], np.float32)


def writer_kwargs(kind: str, num_envs: int, **extra: Any) -> dict[str, Any]:
    """The DatasetWriter keyword arguments for a stream of ``kind``."""
    return {"env": f"test-{kind}", "num_envs": num_envs, **KINDS[kind], **extra}


def _classic_state(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    v = rng.standard_normal(4).astype(np.float32)
    if rng.random() < 0.3:
        v[rng.integers(4)] = SPECIAL[rng.integers(len(SPECIAL))]
    return v.reshape(2, 2).copy(), v


def make_stream(kind: str, num_envs: int, n_steps: int, seed: int = 0, glitch: float = 0.0,
                max_len: int = 4, p_term: float = 0.1, life_lost: bool = False) -> list[dict[str, np.ndarray]]:
    """``n_steps`` steps of ``num_envs`` environments; each a dict of the ``add`` arguments.

    With ``life_lost`` each step also holds a ``life_lost`` flag array (about one transition in
    five), drawn from its own generator so that the other fields are those of the same stream
    without it.

    Env ``i`` is truncated at episode length ``max_len + 3 * i`` and terminates with probability
    ``p_term`` a step (once both together, at env 0's third step, when ``max_len > 3``). With
    ``glitch > 0`` the state after a step that did not end an episode is, with that
    probability, not the step's next state (a jump the writer must store).
    """
    spec = KINDS[kind]
    rng = np.random.default_rng(seed)
    frames = len(spec["neural_shape"]) == 3
    o, f = spec["logic_shape"]

    def fresh() -> tuple[np.ndarray, np.ndarray]:
        if not frames:
            return _classic_state(rng)
        logic = rng.standard_normal((o, f)).astype(np.float32)
        first = rng.integers(0, 256, spec["neural_shape"][1:], dtype=np.uint8)
        return logic, np.stack([first] * spec["neural_shape"][0])

    def advance(state: tuple[np.ndarray, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        if not frames:
            return _classic_state(rng)
        logic = rng.standard_normal((o, f)).astype(np.float32)
        frame = rng.integers(0, 256, spec["neural_shape"][1:], dtype=np.uint8)
        return logic, np.concatenate([state[1][1:], frame[None]])

    lives = np.random.default_rng([seed, 1])
    states = [fresh() for _ in range(num_envs)]
    lengths = [0] * num_envs
    steps = []
    both_done = False
    for _ in range(n_steps):
        step = {k: [] for k in FIELDS}
        for i in range(num_envs):
            logic, neural = states[i]
            nxt = advance(states[i])
            lengths[i] += 1
            term = bool(rng.random() < p_term)
            trunc = lengths[i] >= max_len + 3 * i
            if term and trunc:
                both_done = True
            if not both_done and lengths[i] == 3 and i == 0 and max_len > 3:
                term = trunc = True
                both_done = True
            step["logic"].append(logic)
            step["neural"].append(neural)
            step["action"].append(rng.integers(spec["n_actions"]))
            step["reward"].append(rng.standard_normal() * 10.0)
            step["next_logic"].append(nxt[0])
            step["next_neural"].append(nxt[1])
            step["terminated"].append(term)
            step["truncated"].append(trunc)
            if term or trunc:
                states[i] = fresh()
                lengths[i] = 0
            elif glitch and rng.random() < glitch:
                # the following row's state is not this row's next state: a jump of the whole
                # state, of the neural state only, or of the logic state only
                jump, part = fresh(), rng.integers(3)
                states[i] = jump if part == 0 else (nxt[0], jump[1]) if part == 1 else (jump[0], nxt[1])
            else:
                states[i] = nxt
        steps.append({
            "logic": np.stack(step["logic"]).astype(np.float32),
            "neural": np.stack(step["neural"]).astype(spec["neural_dtype"]),
            "action": np.array(step["action"], np.int64),
            "reward": np.array(step["reward"], np.float64),
            "next_logic": np.stack(step["next_logic"]).astype(np.float32),
            "next_neural": np.stack(step["next_neural"]).astype(spec["neural_dtype"]),
            "terminated": np.array(step["terminated"], bool),
            "truncated": np.array(step["truncated"], bool),
        })
        if life_lost:
            steps[-1]["life_lost"] = lives.random(num_envs) < 0.2
    return steps


def flatten(steps: list[dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    """Step-major transitions: row ``t * num_envs + i`` is env ``i`` at step ``t``."""
    keys = FIELDS + (("life_lost",) if "life_lost" in steps[0] else ())
    return {k: np.concatenate([s[k] for s in steps]) for k in keys}


BATCH_OF = {"logic": "logic_state", "neural": "neural_state", "action": "action", "reward": "reward",
            "next_logic": "next_logic_state", "next_neural": "next_neural_state",
            "terminated": "terminated", "truncated": "truncated", "life_lost": "life_lost"}


def assert_bits_equal(a: np.ndarray, b: np.ndarray, what: str = "") -> None:
    """Same shape and bit-identical contents (NaN payloads and the sign of zero included)."""
    a, b = np.ascontiguousarray(a), np.ascontiguousarray(b)
    assert a.shape == b.shape, f"{what}: shape {a.shape} != {b.shape}"
    if a.dtype.kind == "f" or b.dtype.kind == "f":
        assert a.dtype == b.dtype, f"{what}: dtype {a.dtype} != {b.dtype}"
    same = (a.view(np.uint8) == b.view(np.uint8)) if a.dtype == b.dtype else (a == b)
    assert np.all(same), f"{what}: contents differ at {np.argwhere(~same.reshape(a.shape[0], -1).all(1))[:5].ravel()}"


def assert_batch_matches(batch: Any, expected: dict[str, np.ndarray], rows: np.ndarray) -> None:
    """``batch`` (from get/sample) holds exactly the expected transitions at ``rows`` (``life_lost``
    all False where the stream has none)."""
    for k, name in BATCH_OF.items():
        got = getattr(batch, name)
        want = expected[k][rows] if k in expected else np.zeros(len(rows), bool)
        if k == "action":
            assert got.dtype == np.int64
        assert_bits_equal(got, want, f"{name}")


def write_steps(writer: Any, steps: list[dict[str, np.ndarray]]) -> None:
    for s in steps:
        writer.add(*(s[k] for k in FIELDS), life_lost=s.get("life_lost"))


@dataclass
class WriterProcessArgs:
    """A dataset writer process for the crash tests (killed by the test with SIGKILL)."""

    directory: Path
    """dataset folder"""
    kind: str = "tinyframes"
    """stream kind (see KINDS)"""
    num_envs: int = 3
    """parallel environments"""
    steps: int = 400
    """steps of the stream to write in all (the stream is regenerated from the seed)"""
    seed: int = 0
    """stream seed"""
    chunk_size: int = 30
    """DatasetWriter chunk_size"""
    flush_every: int = 0
    """call flush() every this many steps (0: never)"""
    resume_at: int = -1
    """resume the dataset at this transition count (-1: a new dataset)"""
    step_sleep: float = 0.0
    """seconds to sleep after each step (keeps the process alive long enough to be killed)"""
    stop_after: int = -1
    """after this many steps (>= 0), print READY and sleep until killed"""


def run_writer(args: WriterProcessArgs) -> None:
    from dataset_utils import DatasetWriter

    steps = make_stream(args.kind, args.num_envs, args.steps, args.seed)
    resume = None if args.resume_at < 0 else args.resume_at
    w = DatasetWriter(args.directory, chunk_size=args.chunk_size, resume_at=resume,
                      **writer_kwargs(args.kind, args.num_envs))
    first = w.count // args.num_envs
    print(f"STARTED {w.count}", flush=True)
    for t in range(first, args.steps):
        w.add(*(steps[t][k] for k in FIELDS))
        if args.flush_every and (t + 1) % args.flush_every == 0:
            w.flush()
            w.mark(w.count)
        if args.stop_after >= 0 and t + 1 == args.stop_after:
            print(f"READY {w.count}", flush=True)
            time.sleep(120)
        if args.step_sleep:
            time.sleep(args.step_sleep)
    w.close()
    print(f"DONE {w.count}", flush=True)


if __name__ == "__main__":
    import tyro

    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    run_writer(tyro.cli(WriterProcessArgs))


def cartpole_offline_dataset(path: Path, marks: list[int], steps: int, chunk_size: int,
                             reward_is_position: bool = False) -> Path:
    """A finished cartpole-shaped dataset (2 envs, finite states: finite losses) with evaluation
    ``marks``, for offline runs; ``reward_is_position``: each reward is its transition's index."""
    from blendrl.datasets import DatasetWriter

    n = 2
    stream = make_stream("classic", n, steps, seed=30)
    for t, st in enumerate(stream):
        if reward_is_position:
            st["reward"] = np.arange(t * n, (t + 1) * n, dtype=np.float64)
        for k in ("logic", "neural", "next_logic", "next_neural"):
            st[k] = np.nan_to_num(st[k], nan=0.5, posinf=1.0, neginf=-1.0)
    with DatasetWriter(path, chunk_size=chunk_size, metadata={"method": "ppo", "run_id": "src", "seed": 0},
                       **{**writer_kwargs("classic", n), "env": "cartpole"}) as w:
        for t, st in enumerate(stream):
            w.add(*(st[k] for k in FIELDS))
            if (t + 1) * n in marks:
                w.mark((t + 1) * n)
        w.finish()
    return path
