"""The environment registry.

Each environment is one module (or package) below ``blendrl.envs`` that defines ``SPEC``
(:class:`~blendrl.envs.base.EnvSpec`) and ``make_vec(num_envs, ...) -> VecEnv``. They are listed
here explicitly; Atari modules are imported only when asked for (OCAtari is slow to import).
To add an environment: write its module and add one line to ``_MODULES``.
"""

from __future__ import annotations

import importlib
from pathlib import Path
from types import ModuleType

from blendrl.envs.base import EnvSpec, StepBatch, VecEnv

_MODULES: dict[str, str] = {
    "cartpole": "blendrl.envs.cartpole",
    "mountaincar": "blendrl.envs.mountaincar",
    "seaquest": "blendrl.envs.seaquest",
    "kangaroo": "blendrl.envs.kangaroo",
    "donkeykong": "blendrl.envs.donkeykong",
}

ENV_NAMES: tuple[str, ...] = tuple(_MODULES)
CLASSIC_ENVS: tuple[str, ...] = ("cartpole", "mountaincar")
ATARI_ENVS: tuple[str, ...] = ("seaquest", "kangaroo", "donkeykong")


def env_module(name: str) -> ModuleType:
    """The module of environment ``name``; a clear error listing the valid names otherwise."""
    if name not in _MODULES:
        raise ValueError(f"unknown environment {name!r}; valid: {', '.join(ENV_NAMES)}")
    return importlib.import_module(_MODULES[name])


def load_rule_set(name: str, rules: str = "default"):
    """Rule set ``rules`` (a name under the environment's ``rules/`` folder, or a folder path) of
    environment ``name``, validated against the environment's ``SPEC`` and the valuation
    functions of its ``valuation`` module (``VALUATIONS``). The environment hands these to
    :func:`blendrl.logic.build_rule_set`; the logic package knows no game."""
    from blendrl.logic.ruleset import build_rule_set, rule_set_folder

    module = env_module(name)
    valuations = importlib.import_module(f"{module.__name__}.valuation").VALUATIONS
    folder = rule_set_folder(Path(module.__file__).parent, rules)
    return build_rule_set(folder, module.SPEC, valuations)


def get_spec(name: str) -> EnvSpec:
    return env_module(name).SPEC


def make_vec_env(name: str, num_envs: int, **options) -> VecEnv:
    """``num_envs`` parallel copies of environment ``name`` (call ``reset(seed)`` before use)."""
    return env_module(name).make_vec(num_envs, **options)


__all__ = ["EnvSpec", "StepBatch", "VecEnv", "ENV_NAMES", "CLASSIC_ENVS", "ATARI_ENVS",
           "env_module", "get_spec", "make_vec_env"]
