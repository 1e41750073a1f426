"""A search's workers: each takes trials from the study until none is left, and runs them.

``--workers K`` starts K processes (spawned, each with ``cores // K`` torch threads); other
machines join by running the same command against the same ``--storage``. A worker of a tune
starts a new trial while the study holds fewer than ``--trials`` (queued-again ones aside); a
worker of a sweep only takes the trials the sweep enqueued, so no grid cell runs twice.
Under torchrun, rank 0 talks to the study and every process trains each trial together.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import sys
import zlib
from contextlib import nullcontext
from dataclasses import dataclass, replace
from typing import Any

from kdlens import distributed
from kdlens.config import RunConfig, config_from_dict
from kdlens.errors import KdlensError, first_line
from kdlens.search import storage as st
from kdlens.search.folder import SearchFolder, worker_name
from kdlens.search.space import Param, param_from_spec, with_values
from kdlens.search.teachers import with_shared_teacher
from kdlens.search.trial import Reporter, run_trial
from kdlens.tracking import create_tracker
from kdlens.utils import resolve_device

log = logging.getLogger("kdlens")

A = st.ATTR


@dataclass(frozen=True)
class Job:
    """Everything a worker process needs (picklable: it crosses to spawned processes)."""

    kind: str  # "tune" or "sweep"
    folder: str
    storage: str | None  # None: the journal file in the folder
    study: str
    base: dict[str, Any]  # the resolved base config
    space: dict[str, str]  # key -> SPEC
    objective: str = "val_accuracy"
    pruner: str = "median"
    trials: int = 0  # a tune's budget
    teachers: str | None = None
    only: tuple[str, ...] | None = None  # stages each trial runs
    twins: bool = True
    tracking: str | None = None
    tracking_uri: str | None = None
    progress: bool = False
    index: int = 0  # the worker's number on this machine
    threads: int | None = None


def make_pruner(name: str):
    """``median`` (Optuna's MedianPruner, from the 5th trial and the 2nd epoch on) or ``none``."""
    opt = st.optuna()
    if name == "none":
        return opt.pruners.NopPruner()
    return opt.pruners.MedianPruner(n_startup_trials=4, n_warmup_steps=2)


def make_sampler(job: Job, n_before: int):
    """A tune's TPE sampler, seeded by the study, the config's seed, the worker and how many
    trials the study held when it started: reproducible, yet two workers (or a rerun) never draw
    the same random start.

    A sweep samples nothing: every (cell, seed) is enqueued once and its workers only take
    enqueued trials. (Optuna's GridSampler would start a cell that is still running elsewhere
    again when a worker runs out of cells, and its end-of-grid stop needs ``optimize``.)
    """
    opt = st.optuna()
    if job.kind == "sweep":
        return opt.samplers.RandomSampler(seed=0)
    parts = (job.study, RunConfig.model_validate(job.base).seed, job.index, n_before)
    return opt.samplers.TPESampler(seed=zlib.crc32(repr(parts).encode()) % 2**31)


def load_study(job: Job, storage):
    opt = st.optuna()
    n_before = len(opt.load_study(study_name=job.study, storage=storage).trials)
    return opt.load_study(
        study_name=job.study,
        storage=storage,
        sampler=make_sampler(job, n_before),
        pruner=make_pruner(job.pruner) if job.kind == "tune" else None,
    )


def counted(trials) -> int:
    """Trials that count towards a tune's budget: all but those queued again."""
    return len(trials) - len(st.retried(trials))


def next_trial(job: Job, study, storage):
    """The next trial this worker runs (already RUNNING), or None when the search is done."""
    trial = st.claim_waiting(study, storage)
    if trial is not None or job.kind == "sweep":
        return trial
    # Two workers asking at the same moment may pass this check together: a tune can then run
    # one trial more than --trials, never fewer.
    if counted(study.get_trials(deepcopy=False)) >= job.trials:
        return None
    with st.quiet_optuna():  # it warns that RDB heartbeats are meant for optimize(); we beat
        return study.ask()


def _values(trial, space: dict[str, Param]) -> dict[str, Any]:
    values = {key: param.suggest(trial) for key, param in space.items()}
    trial.set_user_attr(A + "params", dict(values))
    return values


def _describe(values: dict[str, Any]) -> str:
    return ", ".join(
        f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in values.items()
    )


def _trial_config(job: Job, base: RunConfig, values: dict[str, Any]) -> RunConfig:
    teachers = job.teachers or SearchFolder(job.folder).teachers
    return with_shared_teacher(with_values(base, values), teachers, job.progress)


def _run_one(job: Job, base: RunConfig, study, storage, trial, values, number: int) -> None:
    """Run one trial in every process; rank 0 tells the study how it ended."""
    opt = st.optuna()
    folder = SearchFolder(job.folder)
    path = folder.trial(number)
    main = distributed.is_main()
    reporter = Reporter(trial, job.objective, prune=job.kind == "tune" and job.pruner != "none")
    tracker = (
        create_tracker(
            job.tracking,
            job.tracking_uri,
            experiment=job.study,
            run_name=f"{job.kind} {job.study} trial {number}",
            tags={A + "study": job.study, A + "trial": str(number), A + "search": job.kind},
        )
        if main
        else None
    )
    context = st.heartbeat(storage, study, trial) if main else nullcontext()
    with context:
        try:
            config = _trial_config(job, base, values)
            outcome = run_trial(config, path, reporter, job.only, job.twins, job.progress, tracker)
        except opt.TrialPruned as e:
            if main:
                trial.set_user_attr(A + "epochs", reporter.epochs)
                study.tell(trial, state=opt.trial.TrialState.PRUNED)
                log.info("trial %d: %s", number, e)
            return
        except KdlensError as e:  # e.g. a diverging trial: recorded, the search goes on
            if main:
                trial.set_user_attr(A + "error", first_line(e))
                trial.set_user_attr(A + "epochs", reporter.epochs)
                study.tell(trial, state=opt.trial.TrialState.FAIL)
                log.warning("trial %d failed: %s", number, first_line(e))
            return
        except BaseException:
            # Interrupted (or a bug): the trial is queued again for the next run of the search.
            if main:
                _fail_and_requeue(study, trial)
            raise
    if main:
        trial.set_user_attr(A + "epochs", outcome.epochs)
        trial.set_user_attr(A + "seconds", outcome.seconds)
        if outcome.test:
            trial.set_user_attr(A + "test", outcome.test)
        study.tell(trial, outcome.value)
        log.info("trial %d: %s %.4f (%.1fs)", number, job.objective, outcome.value, outcome.seconds)


def _fail_and_requeue(study, trial) -> None:
    opt = st.optuna()
    try:
        st.requeue(study, study.tell(trial, state=opt.trial.TrialState.FAIL))
    except Exception as e:  # noqa: BLE001 - the interruption is what the user must see
        log.warning("trial %d could not be queued again (%s)", trial.number, first_line(e))


def work(job: Job) -> int:
    """Run trials until the search has none left for this worker; returns how many it ran."""
    base = config_from_dict(job.base)
    space = {key: param_from_spec(key, spec) for key, spec in job.space.items()}
    distributed.setup(resolve_device(base.device))
    main = distributed.is_main()
    folder, me = SearchFolder(job.folder), worker_name()
    storage = st.open_storage(job.storage, folder) if main else None
    study = load_study(job, storage) if main else None
    ran = 0
    with st.worker_lock(folder, me) if main else nullcontext():
        while True:
            task = None
            if main:
                st.recover_stale(study, storage, folder, me)
                trial = next_trial(job, study, storage)
                if trial is not None:
                    trial.set_user_attr(A + "worker", me)
                    values = _values(trial, space)
                    trial.set_user_attr(A + "folder", folder.relative(folder.trial(trial.number)))
                    log.info("trial %d: %s", trial.number, _describe(values))
                    task = (trial.number, values)
            else:
                trial = None
            task = distributed.broadcast(task)
            if task is None:
                return ran
            number, values = task
            _run_one(job, base, study, storage, trial, values, number)
            ran += 1


# -- several processes on this machine --------------------------------------------------------


def _worker_main(job: Job, errors) -> None:
    """Entry point of a spawned worker: its own logging and threads; errors go to the parent."""
    logging.basicConfig(
        level=logging.INFO, format=f"[worker {job.index}] %(message)s", stream=sys.stderr
    )
    import torch

    if job.threads:
        torch.set_num_threads(job.threads)
    try:
        work(job)
    except KdlensError as e:
        errors.put((job.index, str(e)))
        sys.exit(2)
    except KeyboardInterrupt:
        sys.exit(130)


def cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


def run_workers(job: Job, workers: int) -> list[str]:
    """``workers`` processes on this machine (this process itself when 1). Returns what stopped
    a worker that crashed or was killed (its trial is queued again by the next worker that looks);
    a worker's user error is raised here."""
    if workers == 1:
        work(job)
        return []
    threads = max(1, cores() // workers)
    ctx = multiprocessing.get_context("spawn")
    errors = ctx.SimpleQueue()
    procs = [
        ctx.Process(
            target=_worker_main,
            args=(replace(job, index=i, threads=threads, progress=False), errors),
            name=f"kdlens-worker-{i}",
        )
        for i in range(workers)
    ]
    for p in procs:
        p.start()
    try:
        for p in procs:
            p.join()
    except KeyboardInterrupt:
        for p in procs:  # they received the same Ctrl-C; wait for them to queue their trials
            p.join(30)
        raise
    found = []
    while not errors.empty():
        found.append(errors.get())
    if found:
        raise KdlensError(sorted(found)[0][1])
    return [
        f"worker {i} stopped with exit code {p.exitcode}"
        + (f" (signal {-p.exitcode})" if p.exitcode < 0 else "")
        for i, p in enumerate(procs)
        if p.exitcode
    ]
