"""What ``run_full_cycle.py`` is asked to do, as one typed record built once from its flags."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from blendrl.launch import knob_values


@dataclass(frozen=True)
class LaunchRequest:
    """The knobs' values and what to do with them: ``run_full_cycle.py``'s ``Args``, typed. The
    flags besides the knobs are the fields below; ``--resume`` is the knob RESUME."""

    knobs: knob_values.KnobValues = dataclasses.field(
        default_factory=lambda: knob_values.KnobValues())
    """the value of each knob (:class:`~blendrl.launch.knob_values.KnobValues`)"""
    work_dir: str = ""
    """folder for out/runs, offline_dataset, logs and plots ('' = the project's folder)"""
    scripts_dir: str = ""
    """folder of train_*.py and plot_results.py ('' = the project's folder)"""
    dry_run: bool = False
    status: str | None = None
    """show the state of this experiment's jobs instead of starting one"""
    wait: bool = False
    detach: bool = False
    overwrite: bool = False
    skip_existing: bool = False

    @property
    def resume(self) -> bool:
        return bool(self.knobs.resume)

    @classmethod
    def of(cls, args: Any) -> "LaunchRequest":
        """The request of ``run_full_cycle.py``'s ``Args`` (any object with its fields)."""
        own = {f.name: getattr(args, f.name) for f in dataclasses.fields(cls) if f.name != "knobs"}
        return cls(knobs=knob_values.KnobValues.of(args), **own)

    def contradiction(self) -> str | None:
        """Two flags given together that contradict each other, in words (None: none do)."""
        keep = "--resume keeps what is done and continues the rest"
        pairs = (("overwrite", self.overwrite, "skip_existing", self.skip_existing, "pick one"),
                 ("resume", self.resume, "overwrite", self.overwrite, keep),
                 ("resume", self.resume, "skip_existing", self.skip_existing, keep),
                 ("detach", self.detach, "wait", self.wait,
                  "--detach returns at once, --wait follows to the end"))
        for a, a_given, b, b_given, why in pairs:
            if a_given and b_given:
                return f"--{a} and --{b} contradict each other: {why}"
        return None
