"""Launching an experiment: every online and offline job of the comparison, in the right order.

One concern a module:

* :mod:`blendrl.launch.knobs` -- the knob table (each knob declared once) and the knob block of
  ``run_full_cycle.sh``;
* :mod:`blendrl.launch.knob_values` -- the values given to the knobs (environment variables /
  flags), their typed record and the checks of each knob on its own;
* :mod:`blendrl.launch.request` -- what ``run_full_cycle.py`` is asked (its flags, typed);
* :mod:`blendrl.launch.config` -- the validated :class:`~blendrl.launch.config.LaunchConfig`
  (the checks across knobs) and the cluster requests of each kind of job;
* :mod:`blendrl.launch.flags` -- the training scripts' flags the launcher sets;
* :mod:`blendrl.launch.plan` -- the jobs of an experiment, their run ids, commands and
  dependencies, and what to do with runs that already exist;
* :mod:`blendrl.launch.plan_checks`, :mod:`blendrl.launch.script_args`,
  :mod:`blendrl.launch.slurm_checks` -- the whole plan checked before anything starts;
* :mod:`blendrl.launch.registry` -- the job registry ``logs/{exp}/registry.json``;
  :mod:`blendrl.launch.states` -- a job's states; :mod:`blendrl.launch.scheduling` -- which jobs
  may start;
* :mod:`blendrl.launch.procs` -- process identity checks and signalling of process groups;
* :mod:`blendrl.launch.local_runner` -- the detached runner of local mode;
* :mod:`blendrl.launch.slurm` -- sbatch scripts, submission and job states on a SLURM cluster;
* :mod:`blendrl.launch.monitor` -- ``--status`` and following an experiment (``--wait``);
  :mod:`blendrl.launch.outcomes` -- what a job's exit status means;
* :mod:`blendrl.launch.resume` -- ``--resume``: continuing a stopped experiment;
* :mod:`blendrl.launch.kill` -- ``kill_experiments.sh``;
* :mod:`blendrl.launch.cli` -- what ``run_full_cycle.py`` does.

Nothing here imports torch: launching, watching and killing stay fast.
"""
