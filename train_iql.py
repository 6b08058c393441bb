#!/usr/bin/env python
"""Offline discrete IQL for the neural agent (method ``iql``) on an online run's dataset.

One interval per online evaluation mark of the dataset: interval k trains
ceil(epochs * mark_k / batch_size) gradient steps on the first mark_k transitions only, then
evaluates in the live environment.

Example: python train_iql.py --dataset_run_id r1 --run_id r1_iql --epochs 10
Outputs: out/runs/{run_id}/ (run.json, results.json, timing.json, checkpoints/, tensorboard,
training_log.pkl). Exit status: 0 done (or already complete), 2 bad arguments, 65 a broken dataset
file, 74 a write failed (disk full: free space, then --resume), 75 interrupted (resume with
--resume).
"""

import sys

from blendrl.cli_parse import cli
from blendrl.offline import OfflineArgs, main

if __name__ == "__main__":
    sys.exit(main(cli(OfflineArgs), "iql"))
