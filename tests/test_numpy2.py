"""OCAtari's RAM extraction under numpy 1 and numpy 2 alike (``blendrl.envs.atari``'s docstring).

ALE hands out its RAM as uint8. Under numpy 2's promotion rules (NEP 50) a uint8 byte combined with
a Python int stays uint8, so OCAtari 2.2.1's game modules wrap or raise on it (Seaquest:
``OverflowError: Python integer 256 out of bounds for uint8``); numpy 1 promoted such results. The
environments therefore hand the modules Python ints (once per agent step) or int64 bytes (OCAtari's
own ``detect_objects``). These tests check that both give exactly the objects that uint8 RAM gave
under numpy 1 (compared directly where numpy 1 is installed), on real games and on random RAM.
"""

from __future__ import annotations

import importlib

import numpy as np
import pytest

from blendrl.envs import ATARI_ENVS, get_spec
from blendrl.envs.atari import OCAtariEnv, _ocatari_game_name
from blendrl.envs.snapshot import encode_object

NUMPY1 = int(np.__version__.split(".")[0]) < 2


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


@pytest.mark.parametrize("name", ATARI_ENVS)
def test_ram_forms_give_the_same_objects_in_a_played_game(name):
    """200 random agent steps (the RAM after each): Python ints = int64 (= uint8 under numpy 1)."""
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
    _, detect, new_objects = _game(name)
    _run_all(detect, new_objects, rams)


@pytest.mark.parametrize("name", ATARI_ENVS)
def test_ram_forms_give_the_same_objects_on_random_ram(name):
    """Random bytes reach branches a short game does not (including sums past 255)."""
    _, detect, new_objects = _game(name)
    rams = list(np.random.default_rng(5).integers(0, 256, size=(300, 128), dtype=np.uint8))
    _run_all(detect, new_objects, rams)


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
