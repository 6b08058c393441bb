"""Environment snapshots: the exact state of one environment copy, as plain data.

An online run's checkpoint holds a snapshot of every environment copy, so that ``--resume``
continues the very episodes it stopped in, with the same random streams: an interrupted and
resumed run computes what an uninterrupted run of the same seed computes (the emulator's state
with its random generator, the no-op generator, OCAtari's objects, the frame stack, step and
life counters; for classic control the physics state, the generator and the time-limit counter).

A snapshot holds only what ``torch.load(weights_only=True)`` reads back (tensors, numbers,
strings, bytes, lists, tuples, dicts), so loading a checkpoint still runs no code from the file;
classes (OCAtari's object classes and enums) are named, and looked up only among the classes a
caller allows. Each environment class defines an ``env_state`` property (get: a snapshot, or
``{"error": ...}`` where one cannot be taken; set: restore one);
:meth:`blendrl.envs.base.VecEnv.get_state` gathers them across copies (worker processes too).
"""

from __future__ import annotations

import enum
from typing import Any, Callable

import numpy as np
import torch

SNAPSHOT_VERSION = 2
"""Version of the snapshot layout; a snapshot of another version is refused (2: Atari snapshots
keep the action ALE repeats on a sticky frame)."""


class SnapshotError(Exception):
    """A snapshot cannot be taken or does not fit the environment it is restored into."""


def to_cpu(data: Any) -> Any:
    """``data`` with every tensor on the CPU (a checkpoint loaded with ``map_location="cuda"``
    must not hand CUDA tensors to forked env workers)."""
    if isinstance(data, torch.Tensor):
        return data.cpu()
    if isinstance(data, dict):
        return {k: to_cpu(v) for k, v in data.items()}
    if isinstance(data, (list, tuple)):
        return type(data)(to_cpu(v) for v in data)
    return data


def array(a: np.ndarray) -> torch.Tensor:
    """An exact copy of a numpy array as a tensor (dtype kept)."""
    return torch.from_numpy(np.array(a, copy=True))


def generator_state(rng: np.random.Generator) -> dict:
    """A numpy generator's bit-generator state (plain ints and strings)."""
    return dict(rng.bit_generator.state)


def set_generator_state(rng: np.random.Generator, state: dict) -> None:
    if state.get("bit_generator") != type(rng.bit_generator).__name__:
        raise SnapshotError(f"the snapshot's generator is a {state.get('bit_generator')!r}, the "
                            f"environment's a {type(rng.bit_generator).__name__!r}")
    rng.bit_generator.state = state


# --------------------------------------------------------------------------- objects as data

_PLAIN = (bool, int, float, str, type(None))


def encode_value(value: Any, where: str) -> Any:
    """``value`` as plain data: numbers, strings, None, tuples and lists of them, and enum members
    as ``("enum", module, class name, value)``; anything else is a SnapshotError naming ``where``."""
    if isinstance(value, enum.Enum):
        cls = type(value)
        return ("enum", cls.__module__, cls.__qualname__, encode_value(value.value, where))
    if isinstance(value, np.generic):  # before the plain types: np.float64 is a float
        if isinstance(value.item(), _PLAIN):
            return value.item()
    elif isinstance(value, _PLAIN):
        return value
    elif isinstance(value, (tuple, list)):
        items = [encode_value(v, f"{where}[{i}]") for i, v in enumerate(value)]
        return ("tuple", *items) if isinstance(value, tuple) else items
    raise SnapshotError(f"{where}: a {type(value).__name__} cannot be kept in a snapshot")


def decode_value(data: Any, find_enum: Callable[[str, str], type]) -> Any:
    """The value :func:`encode_value` described; ``find_enum(module, name)`` gives an enum
    class (or raises a SnapshotError)."""
    if isinstance(data, list):
        return [decode_value(v, find_enum) for v in data]
    if isinstance(data, tuple):
        if len(data) == 4 and data[0] == "enum":
            _, module, name, value = data
            cls = find_enum(module, name)
            if not (isinstance(cls, type) and issubclass(cls, enum.Enum)):
                raise SnapshotError(f"{module}.{name} is not an enum")
            return cls(decode_value(value, find_enum))
        if data and data[0] == "tuple":
            return tuple(decode_value(v, find_enum) for v in data[1:])
        raise SnapshotError(f"not a snapshot value: {data!r}")
    if not isinstance(data, _PLAIN):
        raise SnapshotError(f"not a snapshot value: a {type(data).__name__}")
    return data


def encode_object(obj: Any, where: str) -> tuple:
    """A plain object (no ``__slots__``, attributes in ``__dict__``) as ``(module, class name,
    {attribute: value})``."""
    cls = type(obj)
    attrs = {name: encode_value(v, f"{where}.{name}") for name, v in vars(obj).items()}
    return (cls.__module__, cls.__qualname__, attrs)


def decode_object(data: tuple, find_object: Callable[[str, str], type],
                  find_enum: Callable[[str, str], type]) -> Any:
    """The object :func:`encode_object` described, made without running its ``__init__``;
    ``find_object`` gives its class, ``find_enum`` its attributes' enum classes."""
    module, name, attrs = data
    cls = find_object(module, name)
    if issubclass(cls, enum.Enum):
        raise SnapshotError(f"{module}.{name} is an enum, not an object class")
    obj = object.__new__(cls)
    obj.__dict__.update({str(k): decode_value(v, find_enum) for k, v in attrs.items()})
    return obj


def or_error(take: Callable[[], dict]) -> dict:
    """``take()``, or ``{"version", "error"}`` where it raises (an env copy's ``env_state``
    getter, which may run in a worker process that an exception would end:
    :meth:`~blendrl.envs.base.VecEnv.get_state` raises the error in the parent instead)."""
    try:
        return take()
    except SnapshotError as e:
        return {"version": SNAPSHOT_VERSION, "error": str(e)}
    except Exception as e:  # noqa: BLE001 -- whatever broke, the worker must live on
        return {"version": SNAPSHOT_VERSION, "error": f"{type(e).__name__}: {e}"}


def check_version(state: dict, what: str) -> None:
    if not isinstance(state, dict) or state.get("version") != SNAPSHOT_VERSION:
        version = state.get("version") if isinstance(state, dict) else None
        raise SnapshotError(f"{what}: snapshot version {version!r} is not {SNAPSHOT_VERSION}")
