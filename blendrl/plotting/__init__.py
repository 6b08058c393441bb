"""The pictures and the timing table of an experiment (``plot_results.py``).

One concern a module:

* :mod:`blendrl.plotting.collect` -- the runs whose ``run.json`` names the experiment, read
  tolerantly (missing, empty or corrupt files become warnings);
* :mod:`blendrl.plotting.curves` -- smoothing, seeds averaged on a common grid, interval statistics;
* :mod:`blendrl.plotting.figures` -- ``online_returns.png``, ``interval_comparison.png``,
  ``blend_weights.png`` (matplotlib Figures on the Agg canvas);
* :mod:`blendrl.plotting.timing` -- ``timing.md`` / ``timing.csv``;
* :mod:`blendrl.plotting.report` -- all of it for one experiment, with the exit status.
"""
