"""Interruption by signal: SIGTERM / SIGUSR1 become a flag the training loop checks at safe points
(it then checkpoints and exits with ``EXIT_INTERRUPTED``)."""

from __future__ import annotations

import signal
from typing import Any


class Interrupt:
    """Turns SIGTERM / SIGUSR1 into a flag the training loop checks at safe points."""

    SIGNALS = (signal.SIGTERM, signal.SIGUSR1)

    def __init__(self) -> None:
        self.signum: int | None = None
        self._previous = {}

    def __enter__(self) -> "Interrupt":
        for s in self.SIGNALS:
            self._previous[s] = signal.signal(s, self._handle)
        return self

    def __exit__(self, *exc) -> None:
        for s, h in self._previous.items():
            signal.signal(s, h)

    def _handle(self, signum: int, frame: Any) -> None:
        self.signum = signum

    @property
    def requested(self) -> bool:
        return self.signum is not None
