"""The methods of the comparison (docs/extending.md, "A method"): :data:`METHOD_TABLE`, one row a
method, and the views of it the launcher, the loops and the plots read.

Torch-free, so the launcher and the plotting code import it directly.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Method:
    """One method of the comparison: everything the launcher, the plots and the loops need to
    know of it. Adding a method is one row of :data:`METHOD_TABLE` and its script."""

    id: str
    """the method id (run.json ``method``, the launcher's ONLINE_METHODS / OFFLINE_METHODS)"""
    kind: str
    """``"online"`` (PPO, writes a dataset) or ``"offline"`` (trains on an online run's dataset)"""
    script: str
    """its training script in the project folder"""
    label: str
    """its name in figures and reports"""
    blendrl: bool
    """its policy blends a neural and a logic actor (BlendRL Args; it records blend weights)"""
    marker: str
    """its marker in figures (matplotlib)"""
    colors: tuple[str, ...]
    """its colours in figures: an online method one; an offline method one per dataset source,
    in the order of the online methods (a test checks the count)"""
    data_linestyle: str = ""
    """an online method: the line style of the offline series trained on its data (its own
    series are solid)"""


METHOD_TABLE: tuple[Method, ...] = (
    Method("ppo", "online", "train_neuralppo.py", "PPO", False, "o", ("tab:blue",), "--"),
    Method("blendrl_ppo", "online", "train_blenderl.py", "BlendRL-PPO", True, "o",
           ("tab:orange",), ":"),
    Method("iql", "offline", "train_iql.py", "IQL", False, "s", ("tab:green", "tab:olive")),
    Method("blendrl_iql", "offline", "train_blendrl_iql.py", "BlendRL-IQL", True, "^",
           ("tab:purple", "tab:red")),
)
"""The methods, in the order figures and tables list them."""

METHOD_INFO: dict[str, Method] = {m.id: m for m in METHOD_TABLE}
METHODS: dict[str, str] = {m.id: m.kind for m in METHOD_TABLE}
"""Method id -> kind."""
ONLINE_METHODS: tuple[str, ...] = tuple(m.id for m in METHOD_TABLE if m.kind == "online")
OFFLINE_METHODS: tuple[str, ...] = tuple(m.id for m in METHOD_TABLE if m.kind == "offline")
