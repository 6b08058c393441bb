"""Evaluation videos (``--eval_video``): the first evaluation episode at each mark as an MP4.

What is written, for evaluation episode ``j = 0`` (it runs on copy 0 of the evaluation's vector
env, :func:`blendrl.evaluation.evaluate`):

* **one frame per agent step**, the frame of the state the agent acted on (the reset frame first,
  never the state after the last step): a video of an episode of length ``L`` has ``L`` frames;
* the game frame at its native resolution: the RGB screen ALE shows (Atari, 210x160, the last
  frame of the agent step), gymnasium's ``rgb_array`` drawing (classic control), made by copy 0
  only (:class:`~blendrl.envs.base.FirstEpisodeFrames`); what the agent sees and every random
  stream are unchanged, so an evaluation gives the same result with and without a video;
* for an agent with rules (BlendRL), a text panel **beside** the frame (never over it): the blend
  weight of the logic policy at that state and the :data:`TOP_CLAUSES` actor clauses that fire
  most there, with their values (:meth:`~blendrl.agents.base.Agent.clause_values`);
* encoded by imageio's ffmpeg plugin (imageio-ffmpeg's own ffmpeg binary), H.264 (``libx264``),
  ``yuv420p``; an odd width or height is padded by one black row / column (never scaled);
* under ``{runs_dir}/{run_id}/videos/`` named by the mark: :func:`video_name`
  (``eval_mark03_limit000120000.mp4``); written under a temporary name and renamed when complete.
"""

from __future__ import annotations

import os
import queue
import threading
from pathlib import Path
from typing import Any

import numpy as np

VIDEO_DIR = "videos"
"""The folder of a run's videos (inside its run folder)."""

TOP_CLAUSES = 4
"""Clauses the panel lists: those with the highest values at the state."""

PANEL_WIDTH = 360
"""Width in pixels of the text panel beside a BlendRL frame."""

_FONT_SCALE = 0.4
_LINE_HEIGHT = 14
_CHARS_PER_LINE = 52
_FFMPEG_PARAMS = ["-preset", "ultrafast"]
"""Encoder speed over file size: x264's fastest preset (the evaluation waits for the encoder
when the queue of frames is full)."""

_QUEUE_FRAMES = 64
"""Frames waiting for the encoder at most (a CartPole frame with its panel is about 1 MB)."""


def video_name(interval: int, data_limit: int) -> str:
    """The file name of the video of evaluation ``interval`` (1-based) at ``data_limit``."""
    return f"eval_mark{interval:02d}_limit{data_limit:09d}.mp4"


def pad_even(frame: np.ndarray) -> np.ndarray:
    """``frame`` ``[H, W, 3]`` with a black row / column added where H / W is odd (H.264 in
    yuv420p needs even sides)."""
    h, w = frame.shape[:2]
    if h % 2 == 0 and w % 2 == 0:
        return frame
    return np.pad(frame, ((0, h % 2), (0, w % 2), (0, 0)))


def panel_lines(logic_weight: float | None, clauses: list[tuple[str, float]],
                top: int = TOP_CLAUSES) -> list[str]:
    """The panel's text: the logic policy's blend weight, then the ``top`` clauses with the
    highest values (value first; a long clause wrapped onto indented lines)."""
    lines = ["logic weight: " + ("n/a" if logic_weight is None else f"{logic_weight:.3f}"),
             f"top {min(top, len(clauses))} clauses (value):"]
    ranked = sorted(clauses, key=lambda item: -item[1])[:top]
    for text, value in ranked:
        words = f"{value:.3f} {text}"
        while len(words) > _CHARS_PER_LINE:
            cut = words.rfind(" ", 0, _CHARS_PER_LINE)
            cut = cut if cut > 0 else _CHARS_PER_LINE
            lines.append(words[:cut])
            words = "      " + words[cut:].lstrip()
        lines.append(words)
    return lines


def with_panel(frame: np.ndarray, lines: list[str], width: int = PANEL_WIDTH) -> np.ndarray:
    """``frame`` with a black panel of ``width`` pixels on its right holding ``lines`` (white
    text drawn with ``cv2.putText``); the frame itself is copied unchanged."""
    import cv2

    h = max(frame.shape[0], _LINE_HEIGHT * (len(lines) + 1))
    out = np.zeros((h, frame.shape[1] + width, 3), dtype=np.uint8)
    out[:frame.shape[0], :frame.shape[1]] = frame
    for i, line in enumerate(lines):
        cv2.putText(out, line, (frame.shape[1] + 6, _LINE_HEIGHT * (i + 1)),
                    cv2.FONT_HERSHEY_SIMPLEX, _FONT_SCALE, (255, 255, 255), 1, cv2.LINE_AA)
    return out


class FrameEncoder:
    """Frames piped to ffmpeg (imageio's FFMPEG writer) by a thread of its own, so that the
    evaluation goes on while ffmpeg takes the previous frames; at most :data:`_QUEUE_FRAMES` wait.
    :meth:`close` waits until every frame is encoded and re-raises the thread's error, if any."""

    def __init__(self, path: Path, fps: float):
        import imageio.v2 as imageio

        self._writer = imageio.get_writer(str(path), format="FFMPEG", mode="I", fps=fps,
                                          codec="libx264", pixelformat="yuv420p",
                                          macro_block_size=1, ffmpeg_log_level="error",
                                          ffmpeg_params=_FFMPEG_PARAMS)
        self._queue: queue.Queue = queue.Queue(maxsize=_QUEUE_FRAMES)
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="video-encoder", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while (frame := self._queue.get()) is not None:
            if self._error is None:
                try:
                    self._writer.append_data(frame)
                except BaseException as e:  # noqa: BLE001 -- handed to close()
                    self._error = e

    def put(self, frame: np.ndarray) -> None:
        if self._error is not None:
            raise self._error
        self._queue.put(frame)

    def close(self) -> None:
        self._queue.put(None)
        self._thread.join()
        self._writer.close()
        if self._error is not None:
            raise self._error


class EpisodeVideo:
    """The MP4 of one evaluation episode, frame by frame (:meth:`add`), written under a temporary
    name: :meth:`finish` renames it into place, :meth:`close` (always, after) removes what was
    not finished (an evaluation that failed leaves no half video).

    ``agent``: the evaluated agent (its :meth:`~blendrl.agents.base.Agent.clause_values` decide
    whether a panel is drawn); ``fps``: frames per second of the file (None: 30).
    """

    def __init__(self, path: Path, agent: Any, fps: float | None):
        self.path = Path(path)
        self.partial = self.path.with_name("." + self.path.name)  # ffmpeg reads the format from .mp4
        self.agent, self.fps = agent, float(fps or 30)
        self.frames = 0
        self._encoder: FrameEncoder | None = None

    def add(self, frame: np.ndarray | None, logic: Any, logic_weight: Any) -> None:
        """Append ``frame`` (None: the episode is over, nothing is added), the state the agent
        acted on, with its logic state ``logic`` (a tensor ``[O, F]``) and the batch's blend
        weights ``logic_weight`` (a tensor ``[B]``, row 0 this state's; None for a neural agent)
        for the panel."""
        if frame is None:
            return
        clauses = self.agent.clause_values(logic)
        if clauses is not None:
            weight = None if logic_weight is None else float(logic_weight[0])
            frame = with_panel(frame, panel_lines(weight, clauses))
        frame = pad_even(np.ascontiguousarray(frame, dtype=np.uint8))
        if self._encoder is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._encoder = FrameEncoder(self.partial, self.fps)
        self._encoder.put(frame)
        self.frames += 1

    def finish(self) -> None:
        """Wait for the encoder and put the file in place (nothing when no frame was added)."""
        if self._encoder is not None:
            encoder, self._encoder = self._encoder, None
            try:
                encoder.close()
            except BaseException:
                self.partial.unlink(missing_ok=True)
                raise
            os.replace(self.partial, self.path)

    def close(self) -> None:
        """After :meth:`finish`, nothing; otherwise stop the encoder and remove its output."""
        if self._encoder is not None:
            encoder, self._encoder = self._encoder, None
            try:
                encoder.close()
            finally:
                self.partial.unlink(missing_ok=True)
