"""One trial of a search: an ordinary run folder made by ``pipeline.run``, whose distilled
student's validation accuracy is reported to Optuna's pruner epoch by epoch.

The objective is a validation metric of the distilled student (``kd``) at its best epoch (the
weights a run keeps): the test split never chooses anything.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kdlens import distributed
from kdlens.config import RunConfig
from kdlens.errors import ConfigError
from kdlens.run import RunFolder
from kdlens.run.state import TrainResult
from kdlens.stages.students import DISTILLED

log = logging.getLogger("kdlens")

# Objective name -> Optuna direction. Validation metrics only: the test split chooses nothing.
OBJECTIVES = {"val_accuracy": "maximize", "val_nll": "minimize"}
TEST_MODELS = ("kd", "scratch", "teacher")
TEST_METRICS = ("accuracy", "fidelity")


def check_objective(name: str) -> str:
    """The objective's Optuna direction; a test metric or unknown name is one line."""
    if name not in OBJECTIVES:
        raise ConfigError(
            f"--objective {name!r}: a validation metric of the distilled student "
            f"({', '.join(OBJECTIVES)}); the test split never chooses"
        )
    return OBJECTIVES[name]


def best_record(history: list[dict[str, float]]) -> dict[str, float]:
    """The epoch a run keeps: best validation accuracy, ties broken by validation NLL."""
    return max(history, key=lambda r: (r["val_accuracy"], -r["val_nll"]))


def objective_value(result: TrainResult, objective: str) -> float:
    return float(best_record(result.history)[objective])


@dataclass
class Reporter:
    """``pipeline.run``'s ``on_epoch``: reports the distilled student's best-so-far validation
    metric to the trial after each of its epochs, and stops the run when the pruner says so.

    Under torchrun every process calls it: rank 0 (which alone holds ``trial``) decides.
    """

    trial: Any  # optuna.Trial on rank 0, None elsewhere
    objective: str
    prune: bool
    epochs: int = 0
    best: dict[str, float] | None = field(default=None)

    def __call__(self, name: str, record: dict[str, float]) -> None:
        if name != DISTILLED:
            return
        self.epochs += 1
        if self.best is None or best_record([self.best, record]) is record:
            self.best = record
        stop = False
        if self.trial is not None:
            self.trial.report(float(self.best[self.objective]), step=int(record["epoch"]))
            stop = self.prune and self.trial.should_prune()
        if distributed.broadcast(stop):
            import optuna

            raise optuna.TrialPruned(f"pruned after epoch {int(record['epoch'])}")


def test_metrics(metrics: dict[str, Any]) -> dict[str, dict[str, float]]:
    """The few test numbers a sweep summarises (a tune's trials never evaluate on test)."""
    models = metrics.get("models", {})
    return {
        model: {m: models[model][m] for m in TEST_METRICS if m in models[model]}
        for model in TEST_MODELS
        if model in models
    }


@dataclass
class Outcome:
    """What a finished trial reports: its objective value and what the tables show."""

    value: float
    epochs: int
    seconds: float
    test: dict[str, dict[str, float]]


def run_trial(
    config: RunConfig,
    folder: Path,
    reporter: Reporter,
    only: tuple[str, ...] | None,
    twins: bool,
    progress: bool = False,
    tracker=None,
) -> Outcome:
    """Train one trial's run folder (from scratch) and read its objective from the distilled
    student's finished-stage record. ``optuna.TrialPruned`` passes through."""
    from kdlens.pipeline import run

    start = time.perf_counter()
    metrics = run(
        config,
        folder,
        overwrite=True,
        progress=progress,
        only=only,
        on_epoch=reporter,
        tracker=tracker,
        twins=twins,
    )
    seconds = time.perf_counter() - start
    if not distributed.is_main():
        return Outcome(float("nan"), reporter.epochs, seconds, {})
    run_folder = RunFolder(folder, write=False)
    record = run_folder.read_json(run_folder.done(DISTILLED))
    result = TrainResult(**record["result"])
    return Outcome(
        objective_value(result, reporter.objective),
        len(result.history),
        seconds,
        test_metrics(metrics),
    )
