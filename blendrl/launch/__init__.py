"""Launching an experiment: every online and offline job of the comparison, in the right order.

One concern a module:

* :mod:`blendrl.launch.config` -- the knobs (environment variables / flags) and the validated
  :class:`~blendrl.launch.config.LaunchConfig`;
* :mod:`blendrl.launch.plan` -- the jobs of an experiment, their run ids, commands and
  dependencies, and what to do with runs that already exist;
* :mod:`blendrl.launch.registry` -- the job registry ``logs/{exp}/registry.json``;
* :mod:`blendrl.launch.procs` -- process identity checks and signalling of process groups;
* :mod:`blendrl.launch.local_runner` -- the detached runner of local mode;
* :mod:`blendrl.launch.slurm` -- sbatch scripts, submission and job states on a SLURM cluster;
* :mod:`blendrl.launch.monitor` -- ``--status`` and following an experiment (``--wait``);
* :mod:`blendrl.launch.resume` -- ``--resume``: continuing a stopped experiment;
* :mod:`blendrl.launch.kill` -- ``kill_experiments.sh``;
* :mod:`blendrl.launch.cli` -- what ``run_full_cycle.py`` does.

Nothing here imports torch: launching, watching and killing stay fast.
"""
