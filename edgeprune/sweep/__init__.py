"""``edgeprune sweep`` (issue 16): a grid of pruning settings, every point optimized and benched, a Pareto table.

Filled in by the modules of this package: ``grid`` (points and keys), ``state`` (sweep.json), ``local`` and
``ray_runner`` (where the points' optimize runs happen), ``pareto`` and ``plot`` (the result).
"""
