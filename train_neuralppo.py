#!/usr/bin/env python
"""Online PPO for the neural agent (method ``ppo``); saves its experience with --save_dataset.

Example: python train_neuralppo.py --env cartpole --total_timesteps 100000 --run_id r1 --save_dataset
Outputs: out/runs/{run_id}/ (run.json, results.json, checkpoints/, tensorboard, training_log.pkl)
and offline_dataset/{run_id}/. Exit status: 0 done (or already complete), 2 bad arguments, 74 a
write failed (disk full: free space, then --resume), 75 interrupted (resume with --resume).
"""

import sys

from blendrl.cli_parse import cli
from blendrl.online import OnlineArgs, main

if __name__ == "__main__":
    sys.exit(main(cli(OnlineArgs), "ppo"))
