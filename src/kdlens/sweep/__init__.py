"""Sweeps: a grid of config overrides x seeds, one teacher per seed, resumable."""

from kdlens.sweep.plot import plot_sweep
from kdlens.sweep.runner import grid_cells, parse_grid, run_sweep

__all__ = ["grid_cells", "parse_grid", "plot_sweep", "run_sweep"]
