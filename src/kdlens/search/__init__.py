"""Searches and sweeps on Optuna: ``kdlens tune`` (a search space, pruned trials, the best config
re-run over seeds) and ``kdlens sweep`` (a grid over seeds), on one machine or many."""

from kdlens.search.space import Param, parse_grid, parse_space
from kdlens.search.sweep import grid_cells, run_sweep

__all__ = ["Param", "grid_cells", "parse_grid", "parse_space", "run_sweep"]
