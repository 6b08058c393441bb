"""The figures, interval estimates, report and timing table of an experiment (``plot_results.py``).

One concern a module:

* :mod:`blendrl.plotting.collect` -- the runs whose ``run.json`` names the experiment, read
  tolerantly (missing, empty or corrupt files become warnings);
* :mod:`blendrl.plotting.series` -- the runs grouped by method and dataset source, labels, styles;
* :mod:`blendrl.plotting.stats` -- point estimates and bootstrap CIs with rliable (seeded);
* :mod:`blendrl.plotting.planned` -- the planned runs, from the launcher's job registry;
* :mod:`blendrl.plotting.gaps` -- per run, the planned marks without a valid result, and why;
* :mod:`blendrl.plotting.summary` -- per series and mark the estimate and its CI, the paired
  offline - online differences, what is missing;
* :mod:`blendrl.plotting.curves` -- smoothing, seeds averaged on a common grid, CI bands;
* :mod:`blendrl.plotting.figures` -- ``online_returns.png``, ``interval_comparison.png``,
  ``paired_differences.png``, ``blend_weights.png`` (matplotlib Figures on the Agg canvas);
* :mod:`blendrl.plotting.tables` -- ``summary.csv``, ``paired_differences.csv``;
* :mod:`blendrl.plotting.markdown` -- ``report.md``;
* :mod:`blendrl.plotting.timing` -- ``timing.md`` / ``timing.csv``;
* :mod:`blendrl.plotting.report` -- all of it for one experiment, with the exit status.
"""
