"""Suite-wide collection rule for parallel runs (``./run_tests.sh`` runs the suite on pytest-xdist
workers with ``--dist loadgroup``).

Every test that uses the real single-node SLURM cluster (the ``cluster`` fixture of
``test_launch_slurm.py``) goes to one worker, one after the other: the cluster is one shared
machine-wide service that a module's fixture may start and tear down, and its tests read its queue.
Without xdist the mark does nothing.
"""

from __future__ import annotations

import pytest

SLURM_GROUP = "slurm-cluster"


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "cluster" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.xdist_group(SLURM_GROUP))
