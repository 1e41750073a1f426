"""Start (or resume) a search: check everything, open the study, run the workers.

Everything that can fail on the user's input is checked before the search folder, the journal
or the study is written: the configs every trial can get, the output folder, the storage (an
unreachable server) and an existing study of another search.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterable
from pathlib import Path

from kdlens import distributed
from kdlens.config import RunConfig
from kdlens.errors import ConfigError, KdlensError
from kdlens.search import storage as st
from kdlens.search.folder import SearchFolder
from kdlens.search.worker import Job, run_workers
from kdlens.utils import resolve_device

log = logging.getLogger("kdlens")

# Keys whose values build models, data or the distiller: their configs are prepared (data
# loaded, models built) before the search starts; the others are checked by the config alone.
BUILDS = ("teacher.", "student.", "data.", "distill.method", "distill.options", "distill.transfer")


def builds(key: str) -> bool:
    return key.startswith(BUILDS)


def check_runs(configs: Iterable[RunConfig], folder: SearchFolder) -> None:
    """``pipeline.prepare`` each distinct config (nothing is written): a missing dataset, an
    unknown model argument or a bad checkpoint stops the search before it starts."""
    from kdlens.pipeline import prepare

    seen = set()
    for config in configs:
        text = json.dumps(config.model_dump(mode="json"), sort_keys=True)
        if text not in seen:
            seen.add(text)
            prepare(config, folder.path / "trials" / "check", overwrite=True)


def launch(
    job: Job,
    workers: int,
    direction: str,
    wanted: dict,
    enqueue: Callable[[object], None] | None = None,
):
    """Open or create the study, then run ``workers`` local workers on it; returns the study
    (None in every process but the main one under torchrun) and what stopped crashed workers.

    ``wanted``: the study attributes a rerun must match; ``enqueue(study)`` fills a new study's
    trial queue (a sweep) before any worker may start. Under torchrun the processes are one
    worker: rank 0 alone talks to the study, all of them train each trial together.
    """
    distributed.setup(resolve_device(job.base["device"]))  # first: is_main() needs it
    if distributed.launched() and workers > 1:
        raise ConfigError(
            "--workers: under torchrun every process trains each trial together; "
            "start one torchrun per worker instead"
        )
    folder = SearchFolder(job.folder)
    storage = None
    if distributed.is_main():
        folder.check_target(job.kind)
        st.check_url(job.storage)
        shown = st.describe(job.storage, folder)
        storage = st.open_storage(job.storage, folder, create=False)
        study = st.find_study(storage, job.study)
        if study is not None:
            st.check_study(study, job.study, wanted, shown)
        # Everything is checked: from here on the search writes.
        folder.start(job.kind, job.study, shown)
        if storage is None:
            storage = st.open_storage(job.storage, folder)
        if study is None:
            study, created = st.create_study(storage, job.study, direction, wanted, shown)
            if created:
                if enqueue is not None:
                    enqueue(study)
                st.mark_ready(study)
    crashed = run_workers(job, workers)
    for text in crashed:
        log.warning("%s; a rerun of the same command finishes its trial", text)
    if not distributed.is_main():
        return None, crashed
    return st.find_study(storage, job.study), crashed


def unfinished(trials) -> int:
    """Trials still queued or running (elsewhere, or left by a crashed worker)."""
    from optuna.trial import TrialState

    return sum(t.state in (TrialState.RUNNING, TrialState.WAITING) for t in trials)


def check_finished(crashed: list[str], trials) -> None:
    """After the outputs are written: a crashed worker that left trials undone is an error."""
    if crashed and unfinished(trials):
        raise KdlensError(f"{crashed[0]}; rerun the same command to finish its trials")


def default_study_name(out: str | Path) -> str:
    """The search folder's name: every machine running the same command joins the same study."""
    return Path(out).resolve().name
