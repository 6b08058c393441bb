"""CUDA work on the training device only: every event is created and recorded on that device's
current stream (the stream its copies run on) and waited for under that device (:class:`CudaSync`),
so ``--device cuda:1`` never touches GPU 0. The feeds (:mod:`blendrl.datasets.feed`) and the device
pool (:mod:`blendrl.datasets.device_pool`) know that a copy is done through it.
"""

from __future__ import annotations

from typing import Any, Callable

import torch


class CudaSync:
    """How the feeds know that a non-blocking copy to ``device`` is done, touching that device
    only: an event created under ``device`` and recorded on its current stream (where the copies
    to it are queued; a bare ``torch.cuda.Event().record()`` records on the *current* device's
    stream -- GPU 0's when training on ``cuda:1`` -- which neither orders after the copy nor
    leaves GPU 0 alone), and waited for under ``device``.

    ``stream_of``, ``new_event`` and ``guard`` are ``torch.cuda.current_stream``,
    ``torch.cuda.Event`` and ``torch.cuda.device`` (tests give fakes).
    """

    def __init__(self, device: torch.device, stream_of: Callable[[Any], Any] | None = None,
                 new_event: Callable[[], Any] | None = None, guard: Callable[[Any], Any] | None = None):
        self.device = device
        self.stream_of = stream_of or torch.cuda.current_stream
        self.new_event = new_event or torch.cuda.Event
        self.guard = guard or torch.cuda.device

    def copies_done(self) -> Any:
        """An event that completes once everything queued so far on the device's current stream
        (the copies just issued) is done."""
        with self.guard(self.device):
            event = self.new_event()
            event.record(self.stream_of(self.device))
        return event

    def wait(self, event: Any) -> None:
        """Block this thread until ``event`` completed."""
        with self.guard(self.device):
            event.synchronize()

    def scope(self) -> Any:
        """``device`` as this thread's current CUDA device (a background thread's is GPU 0)."""
        return self.guard(self.device)


def sync_for(device: torch.device) -> CudaSync | None:
    """The training device's :class:`CudaSync` (an indexed device: a background thread's
    "current device" is not the training thread's), None on CPU."""
    if device.type != "cuda":
        return None
    if device.index is None:
        device = torch.device("cuda", torch.cuda.current_device())
    return CudaSync(device)
