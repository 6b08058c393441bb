"""OCAtari's RAM extraction under numpy 1 and numpy 2 alike (``blendrl.envs.atari``'s docstring).

ALE hands out its RAM as uint8. Under numpy 2's promotion rules (NEP 50) a uint8 byte combined with
a Python int stays uint8, so OCAtari 2.2.1's game modules wrap or raise on it (Seaquest:
``OverflowError: Python integer 256 out of bounds for uint8``); numpy 1 promoted such results. The
environments therefore hand the modules Python ints (once per agent step) or int64 bytes (OCAtari's
own ``detect_objects``). These tests check that both give exactly the objects that uint8 RAM gave
under numpy 1, on real games and on random RAM: directly where numpy 1 is installed, and against
digests of numpy 1's objects recorded in ``tests/data/ocatari_objects_numpy1.json`` everywhere
(written under numpy 1.26.4 by ``python tests/test_numpy2.py --write-golden``).
"""

from __future__ import annotations

import hashlib
import importlib
import json
import sys
from pathlib import Path

import numpy as np
import pytest

from blendrl.envs import ATARI_ENVS, get_spec
from blendrl.envs.atari import OCAtariEnv, _ocatari_game_name
from blendrl.envs.snapshot import encode_object

NUMPY1 = int(np.__version__.split(".")[0]) < 2
GOLDEN = Path(__file__).parent / "data" / "ocatari_objects_numpy1.json"


def _game(name: str):
    from ocatari.ram.extract_ram_info import init_objects
    game = _ocatari_game_name(get_spec(name).gym_id)
    module = importlib.import_module(f"ocatari.ram.{game.lower()}")
    return game, module._detect_objects_ram, lambda: init_objects(game, False)


def _plain(objects) -> list:
    return [encode_object(o, f"objects[{i}]") for i, o in enumerate(objects)]


def _ram_forms(ram: np.ndarray) -> dict:
    """The RAM as each path hands it; uint8 (ALE's own) only under numpy 1, where it is the
    reference the other two must equal."""
    forms = {"python ints": ram.tolist(), "int64": ram.astype(np.int64)}
    if NUMPY1:
        forms["uint8 (numpy 1)"] = ram.copy()
    return forms


def _run_all(detect, new_objects, rams) -> None:
    """Feed the same RAM sequence to each form, each with its own object list; equal objects."""
    objects = {form: new_objects() for form in _ram_forms(rams[0])}
    for t, ram in enumerate(rams):
        for form, value in _ram_forms(ram).items():
            detect(objects[form], value, False)
        got = {form: _plain(objs) for form, objs in objects.items()}
        reference = got["python ints"]
        for form, plain in got.items():
            assert plain == reference, f"RAM {t}: {form} differs from Python ints"


def _played_rams(name: str) -> list[np.ndarray]:
    """The RAM after each of 200 seeded random agent steps of a real game."""
    spec = get_spec(name)
    env = OCAtariEnv(spec, extract_objects=False)
    try:
        env.reset(seed=3)
        rng = np.random.default_rng(3)
        rams = [env._ale.getRAM().copy()]
        for _ in range(200):
            _, _, term, trunc, _ = env.step(int(rng.integers(0, spec.n_actions)))
            rams.append(env._ale.getRAM().copy())
            if term or trunc:
                env.reset()
    finally:
        env.close()
    return rams


def _random_rams() -> list[np.ndarray]:
    """Random bytes reach branches a short game does not (including sums past 255)."""
    return list(np.random.default_rng(5).integers(0, 256, size=(300, 128), dtype=np.uint8))


def _digest(name: str, rams: list[np.ndarray], form) -> str:
    """sha256 of the objects after each RAM of the sequence, the RAM given as ``form(ram)``."""
    _, detect, new_objects = _game(name)
    objects, h = new_objects(), hashlib.sha256()
    for ram in rams:
        detect(objects, form(ram), False)
        h.update(json.dumps(_plain(objects), sort_keys=True, default=repr).encode())
    return h.hexdigest()


@pytest.mark.parametrize("name", ATARI_ENVS)
def test_ram_forms_give_the_same_objects_in_a_played_game(name):
    """200 random agent steps (the RAM after each): Python ints = int64 (= uint8 under numpy 1)."""
    _, detect, new_objects = _game(name)
    _run_all(detect, new_objects, _played_rams(name))


@pytest.mark.parametrize("name", ATARI_ENVS)
def test_ram_forms_give_the_same_objects_on_random_ram(name):
    _, detect, new_objects = _game(name)
    _run_all(detect, new_objects, _random_rams())


@pytest.mark.parametrize("name", ATARI_ENVS)
def test_widened_ram_gives_the_objects_numpy1_gave_uint8_ram(name):
    """The env's path (int64 RAM) under this numpy = the digests of numpy 1.26.4 on ALE's uint8
    RAM, for the played game and the random RAM above."""
    golden = json.loads(GOLDEN.read_text())[name]
    widened = lambda ram: ram.astype(np.int64)  # noqa: E731
    assert _digest(name, _played_rams(name), widened) == golden["played"]
    assert _digest(name, _random_rams(), widened) == golden["random"]


def test_seaquest_uint8_ram_overflows_under_numpy2_only():
    """The root cause: an enemy in lane 0's first slot makes Seaquest compute
    ``(ram[30] + 16 * j) % 256``; with uint8 RAM numpy 2 refuses the Python int 256."""
    _, detect, new_objects = _game("seaquest")
    ram = np.zeros(128, np.uint8)
    ram[36] = 0b111  # lane 0: all three slots hold an enemy
    ram[30] = 250  # x of the first (off screen); then (250 + 16) % 256 = 10 and 26
    forms = [ram.tolist(), ram.astype(np.int64)]
    if NUMPY1:
        forms.append(ram)  # promoted past uint8: the same sharks
    else:
        with pytest.raises(OverflowError, match="out of bounds for uint8"):
            detect(new_objects(), ram, False)
    for form in forms:
        objects = new_objects()
        detect(objects, form, False)
        assert sorted(o.x for o in objects if type(o).__name__ == "Shark") == [10, 26]


def test_ocatari_own_detection_is_given_widened_ram():
    """The env's OCAtari detects (at its reset, and every frame with ``detect_every_frame``) from
    int64 RAM: 300 Seaquest steps with enemies on screen, which raised under numpy 2 before."""
    spec = get_spec("seaquest")
    env = OCAtariEnv(spec, detect_every_frame=True)
    try:
        env.reset(seed=0)
        assert "_widened_ram_detection" in env._oc.detect_objects.__qualname__
        rng = np.random.default_rng(0)
        enemies = 0
        for _ in range(300):
            obs, _, term, trunc, _ = env.step(int(rng.integers(0, spec.n_actions)))
            enemies += sum(type(o).__name__ in ("Shark", "Submarine") for o in env.objects)
            if term or trunc:
                env.reset()
        assert enemies > 0
    finally:
        env.close()


if __name__ == "__main__" and sys.argv[1:] == ["--write-golden"]:
    if not NUMPY1:
        raise SystemExit("error: the golden digests are numpy 1's: run this under numpy 1")
    as_is = lambda ram: ram  # noqa: E731 -- ALE's uint8 RAM, as OCAtari got it under numpy 1
    GOLDEN.write_text(json.dumps({name: {"played": _digest(name, _played_rams(name), as_is),
                                         "random": _digest(name, _random_rams(), as_is)}
                                  for name in ATARI_ENVS}, indent=1) + "\n")
    print(f"wrote {GOLDEN} (numpy {np.__version__})")
