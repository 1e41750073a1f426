"""A run: its folder (every path, the marker, the lock), its context, weights, state and records."""

from kdlens.run.context import EVAL_BATCH, RunContext
from kdlens.run.folder import RunFolder
from kdlens.run.load import Run, load_run, read_config
from kdlens.run.records import ModelRecord, select
from kdlens.run.state import StageCheckpoint, TrainProgress, TrainResult
from kdlens.weights import load_weights, read_state_dict, save_weights, torch_load_safely

__all__ = [
    "EVAL_BATCH",
    "ModelRecord",
    "Run",
    "RunContext",
    "RunFolder",
    "StageCheckpoint",
    "TrainProgress",
    "TrainResult",
    "load_run",
    "load_weights",
    "read_config",
    "read_state_dict",
    "save_weights",
    "select",
    "torch_load_safely",
]
