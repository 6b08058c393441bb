#!/usr/bin/env python
"""Online PPO for the BlendRL agent (method ``blendrl_ppo``): a neural actor and a logic actor
blended by a blender; saves its experience with --save_dataset.

Example: python train_blenderl.py --env mountaincar --total_timesteps 100000 --run_id b1 --save_dataset
Outputs as train_neuralppo.py. Exit status: 0 done (or already complete), 2 bad arguments, 74 a
write failed (disk full: free space, then --resume), 75 interrupted (resume with --resume).
"""

import sys

from blendrl.cli_parse import cli
from blendrl.online import BlendRLOnlineArgs, main

if __name__ == "__main__":
    sys.exit(main(cli(BlendRLOnlineArgs), "blendrl_ppo"))
