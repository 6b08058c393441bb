"""Process identity and process-group signalling, without ever matching processes by name.

A process is identified by its pid *and* its start time (``/proc/PID/stat`` field 22, in clock
ticks since boot), so a pid reused by an unrelated process is never signalled. A process group
whose leader has exited can still hold members; its id cannot have been reused while they live
(Linux does not hand out a pid still in use as a process group id), so signalling it is safe.
On systems without ``/proc`` the start time is unknown and only the pid is checked.
"""

from __future__ import annotations

import os
import signal
import time
from dataclasses import dataclass
from pathlib import Path

_PROC = Path("/proc")


def _stat_fields(pid: int) -> list[str] | None:
    """Fields 3.. of ``/proc/PID/stat`` (after the command name), or None if gone."""
    try:
        text = (_PROC / str(pid) / "stat").read_text()
    except (FileNotFoundError, ProcessLookupError, PermissionError, OSError):
        return None
    return text[text.rfind(")") + 2:].split()


def start_time(pid: int) -> int | None:
    """The start time of process ``pid`` (clock ticks since boot), None if unknown or gone."""
    fields = _stat_fields(pid)
    return int(fields[19]) if fields and len(fields) > 19 else None


def is_alive(pid: int | None, expected_start: int | None = None) -> bool:
    """True if ``pid`` runs (not a zombie) and, when ``expected_start`` is given and ``/proc``
    is available, started at that time (i.e. it is the same process, not a reused pid)."""
    if not pid:
        return False
    fields = _stat_fields(pid)
    if fields is None:
        if _PROC.is_dir():
            return False
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        return True
    if fields[0] in ("Z", "X"):
        return False
    if expected_start is not None and int(fields[19]) != int(expected_start):
        return False
    return True


def group_members(pgid: int) -> list[int]:
    """Live (non-zombie) processes of process group ``pgid`` (empty without ``/proc``)."""
    members = []
    if not _PROC.is_dir():
        return members
    for entry in _PROC.iterdir():
        if not entry.name.isdigit():
            continue
        fields = _stat_fields(int(entry.name))
        if fields and len(fields) > 2 and fields[0] not in ("Z", "X") and int(fields[2]) == pgid:
            members.append(int(entry.name))
    return members


def group_alive(pgid: int | None) -> bool:
    if not pgid:
        return False
    if _PROC.is_dir():
        return bool(group_members(pgid))
    try:
        os.killpg(pgid, 0)
    except (ProcessLookupError, PermissionError):
        return False
    return True


def is_our_group(pgid: int | None, leader_start: int | None) -> bool:
    """True if process group ``pgid`` is still the one recorded: its leader (pid == pgid) is the
    recorded process, or the leader has exited and members remain."""
    if not pgid:
        return False
    fields = _stat_fields(pgid)
    if fields is not None and fields[0] not in ("Z", "X"):
        # A live process holds the leader's pid: ours only if it started when recorded (a reused
        # pid means the old group had emptied, so nothing of ours can be left in it).
        return leader_start is None or int(fields[19]) == int(leader_start)
    return group_alive(pgid)


def signal_group(pgid: int | None, leader_start: int | None, sig: int) -> bool:
    """Send ``sig`` to the recorded process group if it is still ours; True if sent."""
    if not is_our_group(pgid, leader_start):
        return False
    try:
        os.killpg(pgid, sig)
    except (ProcessLookupError, PermissionError):
        return False
    return True


def signal_process(pid: int | None, expected_start: int | None, sig: int) -> bool:
    """Send ``sig`` to ``pid`` if it is still the recorded process; True if sent."""
    if not is_alive(pid, expected_start):
        return False
    try:
        os.kill(pid, sig)
    except (ProcessLookupError, PermissionError):
        return False
    return True


@dataclass(frozen=True)
class Target:
    """A process group (``group``: ``pid`` is its leader's pid, the pgid) or a single process,
    with the start time recorded for it (None: not checked), so that only what is still the
    recorded process (group) is ever signalled."""

    pid: int
    start: int | None
    group: bool = True

    def ours(self) -> bool:
        return is_our_group(self.pid, self.start) if self.group else is_alive(self.pid, self.start)

    def signal(self, sig: int) -> bool:
        """Send ``sig`` if it is still ours; True if sent."""
        send = signal_group if self.group else signal_process
        return send(self.pid, self.start, sig)


def kill_leftovers(targets: list[Target], grace: float, poll: float = 0.1) -> list[Target]:
    """Wait up to ``grace`` seconds for every target to end, then SIGKILL what is left (still
    ours). Returns the targets that got SIGKILL."""
    live = list(targets)
    deadline = time.monotonic() + grace
    while live and time.monotonic() < deadline:
        live = [t for t in live if t.ours()]
        if live:
            time.sleep(poll)
    return [t for t in live if t.signal(signal.SIGKILL)]


def terminate(targets: list[Target], grace: float, poll: float = 0.1) -> list[Target]:
    """SIGTERM each target that is still ours, wait up to ``grace`` seconds for them to end,
    then SIGKILL what is left. Returns the targets that needed SIGKILL."""
    return kill_leftovers([t for t in targets if t.signal(signal.SIGTERM)], grace, poll)
