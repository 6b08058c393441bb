#!/usr/bin/env python
"""Offline discrete IQL for the BlendRL agent (method ``blendrl_iql``) on an online run's dataset:
the advantage-weighted regression trains the neural actor, the logic clause weights and the
blender together; the critics are the same as train_iql.py's.

Example: python train_blendrl_iql.py --dataset_run_id b1 --run_id b1_biql --epochs 10
Outputs as train_iql.py. Exit status: 0 done (or already complete), 2 bad arguments, 65 a broken
dataset file, 74 a write failed (disk full: free space, then --resume), 75 interrupted (resume with
--resume).
"""

import sys

from blendrl.cli_parse import cli
from blendrl.offline import BlendRLOfflineArgs, main

if __name__ == "__main__":
    sys.exit(main(cli(BlendRLOfflineArgs), "blendrl_iql"))
