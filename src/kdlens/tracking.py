"""Logging a run elsewhere while it trains: TensorBoard event files, or an MLflow tracking server.

TensorBoard is ``fit``'s per-epoch callback; MLflow is a :class:`Tracker` that ``pipeline.run``
starts with the resolved config, calls after every epoch, and finishes with the final metrics,
verdicts and ``report.html``.
"""

from __future__ import annotations

import math
import os
import time
from pathlib import Path
from typing import Any, Protocol

from kdlens.config import RunConfig
from kdlens.errors import KdlensError, first_line
from kdlens.run.folder import RunFolder


class TrackingError(KdlensError):
    """The tracking server (or folder) cannot be reached or written."""


def _group(key: str) -> str:
    """TensorBoard tag for a history key: losses, accuracies and the learning rate apart."""
    if "accuracy" in key:
        return f"accuracy/{key}"
    if key == "lr":
        return "lr"
    return f"loss/{key}"


class TensorBoardLogger:
    """Call as ``logger(model_name, epoch_record)``; writes RUN_DIR/tb/<model_name>/events.*."""

    def __init__(self, folder: str | Path):
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError as e:
            raise KdlensError(
                f"--tensorboard needs the 'tensorboard' package ({e}); pip install tensorboard"
            ) from None
        self._writer_cls = SummaryWriter
        self.folder = Path(folder)
        self.writers: dict[str, Any] = {}

    def __call__(self, name: str, record: dict[str, float]) -> None:
        if name not in self.writers:
            self.writers[name] = self._writer_cls(log_dir=str(self.folder / name))
        writer, epoch = self.writers[name], int(record["epoch"])
        for key, value in record.items():
            if key != "epoch":
                writer.add_scalar(_group(key), float(value), epoch)
        writer.flush()  # an interrupted run still leaves its curves so far

    def close(self) -> None:
        for writer in self.writers.values():
            writer.close()


class Tracker(Protocol):
    """What ``pipeline.run`` calls on a tracker (in the main process only)."""

    def start(self, config: RunConfig, folder: RunFolder) -> None: ...

    def __call__(self, name: str, record: dict[str, float]) -> None: ...

    def finish(self, metrics: dict[str, Any], folder: RunFolder) -> None: ...

    def stop(self, error: BaseException) -> None: ...


TRACKERS = ("mlflow",)
MAX_BATCH = 100  # MLflow's REST API takes at most 100 params (and 1000 metrics) per request


def default_tracking_uri() -> str:
    """A local ``mlruns/`` folder in the current directory (MLflow's own default)."""
    return (Path.cwd() / "mlruns").as_uri()


def flatten(tree: Any, prefix: str = "") -> dict[str, Any]:
    """``{"a": {"b": 1}}`` -> ``{"a.b": 1}``; lists are leaves."""
    if isinstance(tree, dict):
        out: dict[str, Any] = {}
        for key, value in tree.items():
            out.update(flatten(value, f"{prefix}.{key}" if prefix else str(key)))
        return out
    return {prefix: tree}


def final_values(metrics: dict[str, Any]) -> tuple[dict[str, float], dict[str, str]]:
    """metrics.json as MLflow metrics (numbers: ``test.<model>.<metric>``, ``summary.*``) and
    tags (the verdicts' words); timings and the environment stay in the artifact."""
    numbers: dict[str, float] = {}
    words: dict[str, str] = {}
    sections = {"test": metrics.get("models", {}), "summary": metrics.get("summary", {})}
    for key, value in flatten(sections).items():
        if isinstance(value, bool):
            words[key] = str(value)
        elif isinstance(value, int | float):
            if math.isfinite(value):
                numbers[key] = float(value)
        elif isinstance(value, str):
            words[key] = value
    return numbers, words


class MlflowTracker:
    """One MLflow run per kdlens run: the resolved config as parameters, every epoch's record
    as ``<model>.<key>`` metrics (step = epoch), the final metrics, the verdicts as tags, and
    ``report.html`` and ``metrics.json`` as artifacts.

    ``uri``: an MLflow tracking URI (default: a local ``mlruns/`` folder); ``experiment``: its
    name; ``tags`` are added to the run (a search names the study and trial there).
    """

    def __init__(
        self,
        uri: str | None = None,
        experiment: str = "kdlens",
        run_name: str | None = None,
        tags: dict[str, str] | None = None,
    ):
        self.uri = uri or default_tracking_uri()
        self.experiment = experiment
        self.run_name = run_name
        self.tags = dict(tags or {})
        self.run_id: str | None = None
        self._client: Any = None

    def _call(self, what: str, fn, *args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except KdlensError:
            raise
        except Exception as e:  # the server or store can fail in any way; one line names it
            raise TrackingError(f"MLflow at {self.uri}: cannot {what} ({first_line(e)})") from None

    def client(self):
        """The MLflow client (imported here: mlflow is an optional extra)."""
        if self._client is None:
            if self.uri.startswith("file:"):
                # MLflow 3 keeps its folder store only behind this switch; a folder needs no
                # server and is safe for several worker processes, so kdlens opts in for it.
                os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")
            try:
                from mlflow.tracking import MlflowClient
            except ImportError:
                raise TrackingError(
                    "--tracking mlflow needs the 'mlflow' package: pip install 'kdlens[mlflow]'"
                ) from None
            self._client = self._call("connect", MlflowClient, tracking_uri=self.uri)
        return self._client

    def experiment_id(self) -> str:
        client = self.client()
        found = self._call("read experiments", client.get_experiment_by_name, self.experiment)
        if found is not None:
            return found.experiment_id
        try:
            return client.create_experiment(self.experiment)
        except Exception:  # another worker created it meanwhile
            found = self._call("read experiments", client.get_experiment_by_name, self.experiment)
            if found is None:
                raise TrackingError(
                    f"MLflow at {self.uri}: cannot create experiment {self.experiment!r}"
                ) from None
            return found.experiment_id

    def start(self, config: RunConfig, folder: RunFolder) -> None:
        from mlflow.entities import Param

        client = self.client()
        tags = {"kdlens.run_folder": str(folder.path.resolve()), **self.tags}
        run = self._call(
            "create a run",
            client.create_run,
            self.experiment_id(),
            run_name=self.run_name or folder.path.name,
            tags=tags,
        )
        self.run_id = run.info.run_id
        params = [
            Param(key, "null" if value is None else str(value))
            for key, value in flatten(config.model_dump(mode="json")).items()
        ]
        for i in range(0, len(params), MAX_BATCH):
            self._call(
                "log the config", client.log_batch, self.run_id, params=params[i : i + MAX_BATCH]
            )

    def __call__(self, name: str, record: dict[str, float]) -> None:
        from mlflow.entities import Metric

        if self.run_id is None:
            return
        now, step = int(time.time() * 1000), int(record["epoch"])
        metrics = [
            Metric(f"{name}.{key}", float(value), now, step)
            for key, value in record.items()
            if key != "epoch" and math.isfinite(float(value))
        ]
        self._call("log an epoch", self.client().log_batch, self.run_id, metrics=metrics)

    def finish(self, metrics: dict[str, Any], folder: RunFolder) -> None:
        from mlflow.entities import Metric, RunTag

        if self.run_id is None:
            return
        client, now = self.client(), int(time.time() * 1000)
        numbers, words = final_values(metrics)
        batch = [Metric(k, v, now, 0) for k, v in numbers.items()]
        for i in range(0, len(batch), MAX_BATCH):
            self._call(
                "log metrics", client.log_batch, self.run_id, metrics=batch[i : i + MAX_BATCH]
            )
        tags = [RunTag(k, v[:5000]) for k, v in words.items()]
        for i in range(0, len(tags), MAX_BATCH):
            self._call("log verdicts", client.log_batch, self.run_id, tags=tags[i : i + MAX_BATCH])
        for path in (folder.metrics, folder.report):
            if path.is_file():
                self._call("upload " + path.name, client.log_artifact, self.run_id, str(path))
        self._call("end the run", client.set_terminated, self.run_id, "FINISHED")

    def stop(self, error: BaseException) -> None:
        """End the MLflow run of a run that stopped: KILLED when interrupted or pruned."""
        if self.run_id is None:
            return
        killed = not isinstance(error, Exception) or type(error).__name__ == "TrialPruned"
        client = self.client()
        try:
            client.set_tag(self.run_id, "kdlens.stopped_by", type(error).__name__)
            client.set_terminated(self.run_id, "KILLED" if killed else "FAILED")
        except Exception:  # noqa: BLE001 - the run's own error is the one to report
            pass


def create_tracker(
    kind: str | None,
    uri: str | None = None,
    experiment: str = "kdlens",
    run_name: str | None = None,
    tags: dict[str, str] | None = None,
) -> Tracker | None:
    """The tracker ``--tracking KIND`` names (None for none)."""
    if kind is None:
        return None
    if kind != "mlflow":
        raise TrackingError(f"--tracking {kind!r}: unknown tracker (known: {', '.join(TRACKERS)})")
    return MlflowTracker(uri, experiment, run_name, tags)
