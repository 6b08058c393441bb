"""The environment registry.

An environment is a sub-package ``blendrl.envs.{name}`` whose ``__init__`` defines ``SPEC`` (an
:class:`~blendrl.envs.base.EnvSpec` whose ``name`` is the package's) and
``make_vec(num_envs, ...) -> VecEnv``. The registry finds them by listing the sub-packages of this
package (:func:`discover`): adding an environment is adding its package, nothing else. A
sub-package without ``SPEC`` is not an environment.

Reading a ``SPEC`` is cheap: an environment's ``__init__`` imports its factory (gymnasium's
classic control, OCAtari, torch) inside ``make_vec``, so that the launcher can import this
registry without torch (a test checks).
"""

from __future__ import annotations

import importlib
import pkgutil
import sys
from pathlib import Path
from types import ModuleType

from blendrl.envs.base import EnvSpec, StepBatch, VecEnv


def discover(package: ModuleType) -> dict[str, ModuleType]:
    """The environments below ``package``, by name: each sub-package whose ``__init__`` defines
    ``SPEC``, vector-state (classic control) environments first, then image-state (Atari) ones,
    each group by name. A package with ``SPEC`` but no ``make_vec``, or a ``SPEC`` named otherwise
    than its package, is an error (one the first import of the registry raises)."""
    found: dict[str, ModuleType] = {}
    for info in pkgutil.iter_modules(package.__path__):
        if not info.ispkg:
            continue
        module = importlib.import_module(f"{package.__name__}.{info.name}")
        spec = getattr(module, "SPEC", None)
        if spec is None:
            continue
        if not isinstance(spec, EnvSpec) or spec.name != info.name:
            raise ValueError(f"{module.__name__}.SPEC must be an EnvSpec named {info.name!r}, "
                              f"got {spec!r:.80}")
        if not callable(getattr(module, "make_vec", None)):
            raise ValueError(f"{module.__name__} defines SPEC but no make_vec(num_envs, ...)")
        found[info.name] = module
    return dict(sorted(found.items(), key=lambda item: (item[1].SPEC.is_image, item[0])))


_MODULES: dict[str, ModuleType] = discover(sys.modules[__name__])

ENV_NAMES: tuple[str, ...] = tuple(_MODULES)
CLASSIC_ENVS: tuple[str, ...] = tuple(n for n, m in _MODULES.items() if not m.SPEC.is_image)
"""Vector-state environments (classic control): small networks, one thread per job."""
ATARI_ENVS: tuple[str, ...] = tuple(n for n, m in _MODULES.items() if m.SPEC.is_image)
"""Image-state environments (Atari)."""


def env_module(name: str) -> ModuleType:
    """The module of environment ``name``; a clear error listing the valid names otherwise."""
    if name not in _MODULES:
        raise ValueError(f"unknown environment {name!r}; valid: {', '.join(ENV_NAMES)}")
    return _MODULES[name]


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
           "discover", "env_module", "get_spec", "make_vec_env"]
