"""The real single-node SLURM cluster the SLURM tests use (``cluster``), and the rule that keeps
them apart from each other when the suite runs on pytest-xdist workers (``./run_tests.sh`` runs
it with ``--dist loadgroup``).

The cluster is one machine-wide service: it is started once per session by ``cluster`` (through
``../shared/slurm/setup.sh``, as root) and torn down at the session's end if the session started
it. Every test that uses it goes to one worker, one after the other (its tests read the cluster's
queue and fill its 2 CPUs). Without xdist the mark does nothing.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from test_launch_support import ROOT, real_scripts_missing

SLURM_GROUP = "slurm-cluster"


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "cluster" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.xdist_group(SLURM_GROUP))


SLURM_DIR = ROOT.parent / "shared" / "slurm"
SLURM_ROOT = Path(os.environ.get("SLURM_ROOT", "/tmp/slurm"))


def _daemon_running(name: str) -> bool:
    pid_file = SLURM_ROOT / "run" / f"{name}.pid"
    try:
        os.kill(int(pid_file.read_text().strip()), 0)
        return True
    except (OSError, ValueError):
        return False


@pytest.fixture(scope="session")
def cluster():
    """A running single-node cluster; torn down at the session's end if this session started it."""
    missing = real_scripts_missing()
    if missing:
        pytest.skip(f"scripts not written yet: {missing}")
    if os.geteuid() != 0:
        pytest.skip("SLURM tests need root (setup.sh installs Debian packages and starts daemons)")
    setup = SLURM_DIR / "setup.sh"
    if not setup.is_file():
        pytest.skip(f"no SLURM setup script at {setup}")
    was_running = _daemon_running("slurmctld") and _daemon_running("slurmd")
    try:
        res = subprocess.run(["bash", str(setup)], capture_output=True, text=True, timeout=600)
    except subprocess.TimeoutExpired:
        pytest.skip("SLURM setup took more than 600 s")
    if res.returncode != 0:
        pytest.skip(f"SLURM setup failed here (exit {res.returncode}): {res.stderr.strip()[-500:]}")
    yield
    if not was_running:
        subprocess.run(["bash", str(SLURM_DIR / "teardown.sh")], capture_output=True, timeout=120)
