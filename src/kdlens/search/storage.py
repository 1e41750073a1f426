"""Where a study lives, and the trials whose worker died.

By default a study is Optuna's journal file in the search folder (safe for several processes on
one machine); ``--storage postgresql://...`` or ``mysql://...`` (or ``sqlite:///...``) is an
Optuna RDB storage that processes on many machines share. A study records what it searches
(kind, space, objective, base config): a rerun that would search something else is refused.

A trial whose process was killed stays RUNNING in the storage. It is recognised as dead when its
worker's lock file (on this machine) is free, or, on an RDB storage, when its heartbeat stops;
it is then failed and its parameters are enqueued again.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from contextlib import contextmanager
from typing import Any

from kdlens.errors import ConfigError, KdlensError, first_line
from kdlens.search.folder import SearchFolder

log = logging.getLogger("kdlens")

RDB_SCHEMES = ("sqlite", "postgresql", "mysql")
DRIVERS = {"postgresql": "psycopg2-binary", "mysql": "pymysql"}  # what the hint suggests
HEARTBEAT_SECONDS = 20  # an RDB trial's heartbeat; one silent for GRACE_SECONDS is dead
GRACE_SECONDS = 90
UNNAMED_STALE_SECONDS = 600  # a RUNNING trial that never named its worker is dead after this
READY_WAIT_SECONDS = 60  # how long a second machine waits for the creator to describe a study
ATTR = "kdlens."  # prefix of every user attribute kdlens sets


class StorageError(KdlensError):
    """The study storage cannot be reached, or holds a study of another search."""


def optuna():
    """The optuna module (an optional extra, imported when a search starts)."""
    try:
        import optuna as module
    except ImportError:
        raise KdlensError(
            "kdlens tune and kdlens sweep need the 'optuna' package: pip install 'kdlens[optuna]'"
        ) from None
    module.logging.set_verbosity(module.logging.WARNING)  # kdlens reports each trial itself
    return module


def scheme(url: str) -> str:
    """``postgresql`` for ``postgresql+psycopg2://...``."""
    return url.split(":", 1)[0].split("+", 1)[0].lower()


def describe(url: str | None, folder: SearchFolder) -> str:
    """The storage as it may be printed and recorded: a database URL without its password."""
    if url is None:
        return str(folder.journal)
    try:
        from sqlalchemy.engine import make_url

        return make_url(url).render_as_string(hide_password=True)
    except Exception:  # noqa: BLE001 - an unparsable URL is reported by open_storage
        return url.split("@")[-1]


def check_url(url: str | None) -> None:
    """Refuse a storage URL of an unknown kind before anything else."""
    if url is not None and (":" not in url or scheme(url) not in RDB_SCHEMES):
        raise StorageError(
            f"--storage {url!r}: expected a database URL (postgresql://..., mysql://..., "
            "sqlite:///...); leave it out for a journal file in the search folder"
        )


def open_storage(url: str | None, folder: SearchFolder, create: bool = True):
    """The study storage; None for a journal file that does not exist yet and ``create=False``.

    An RDB storage is connected here, so an unreachable server is one line before anything runs.
    """
    opt = optuna()
    if url is None:
        if not create and not folder.journal.is_file():
            return None
        from optuna.storages.journal import JournalFileBackend

        try:
            return opt.storages.JournalStorage(JournalFileBackend(str(folder.journal)))
        except OSError as e:
            raise StorageError(f"cannot open {folder.journal}: {e.strerror or e}") from None
    check_url(url)
    kind = scheme(url)
    # A server that does not answer fails in seconds, not after the system's TCP timeout.
    engine: dict[str, Any] = {}
    if kind in ("postgresql", "mysql"):
        engine = {"connect_args": {"connect_timeout": 10}}
    kwargs: dict[str, Any] = {
        "engine_kwargs": engine,
        "heartbeat_interval": HEARTBEAT_SECONDS,
        "grace_period": GRACE_SECONDS,
    }
    import inspect

    params = inspect.signature(opt.storages.RDBStorage).parameters
    # Optuna 4.9 renamed failed_trial_callback; both are the same hook.
    hook = (
        "heartbeat_stale_trial_callback"
        if "heartbeat_stale_trial_callback" in params
        else "failed_trial_callback"
    )
    kwargs[hook] = requeue
    shown = describe(url, SearchFolder("."))
    try:
        with quiet_optuna():  # heartbeats are marked experimental
            return opt.storages.RDBStorage(with_driver(url), **kwargs)
    except ImportError:
        raise StorageError(
            f"--storage {shown}: no database driver for {kind} is installed; "
            f"pip install {DRIVERS.get(kind, 'its driver')}"
        ) from None
    except Exception as e:  # sqlalchemy raises many kinds; one line names the server's answer
        raise StorageError(f"cannot reach the storage {shown} ({first_line(e)})") from None


def with_driver(url: str) -> str:
    """``postgresql://`` with the PostgreSQL driver that is installed: SQLAlchemy 2.1 picks
    psycopg 3 and 2.0 psycopg2, whichever of them is there."""
    import importlib.util

    if not url.startswith("postgresql://"):
        return url
    for module, dialect in (("psycopg", "psycopg"), ("psycopg2", "psycopg2")):
        if importlib.util.find_spec(module) is not None:
            return f"postgresql+{dialect}://" + url.removeprefix("postgresql://")
    return url


def search_attrs(kind: str, space: dict[str, str], objective: str, config: dict) -> dict[str, Any]:
    """What a study records about its search, compared on every rerun."""
    return {
        ATTR + "kind": kind,
        ATTR + "space": space,
        ATTR + "objective": objective,
        ATTR + "config": config,
    }


def _first_difference(before: Any, now: Any, path: str = "") -> str:
    if isinstance(before, dict) and isinstance(now, dict):
        for key in sorted(set(before) | set(now), key=str):
            if before.get(key) != now.get(key):
                return _first_difference(before.get(key), now.get(key), f"{path}.{key}".strip("."))
    return f"{path or 'value'}: {json.dumps(before)} then, {json.dumps(now)} now"


def find_study(storage, name: str):
    """The study ``name`` in ``storage``, or None."""
    opt = optuna()
    if storage is None:
        return None
    try:
        return opt.load_study(study_name=name, storage=storage)
    except KeyError:
        return None


def wait_until_described(study, name: str) -> dict[str, Any]:
    """The study's kdlens attributes; a study just created elsewhere gets a minute to have them."""
    deadline = time.monotonic() + READY_WAIT_SECONDS
    while True:
        attrs = study.user_attrs
        if attrs.get(ATTR + "ready"):
            return attrs
        if time.monotonic() > deadline:
            raise StorageError(
                f"study {name!r} exists in the storage but kdlens did not describe it (made "
                "by another program, or its creation was interrupted); choose another --study"
            )
        time.sleep(0.5)


def check_study(study, name: str, wanted: dict[str, Any], shown: str) -> None:
    """Refuse a study that searches something other than ``wanted`` (one line, the first
    difference named)."""
    attrs = wait_until_described(study, name)
    for key, value in wanted.items():
        if attrs.get(key) != value:
            what = key.removeprefix(ATTR)
            raise ConfigError(
                f"study {name!r} in {shown} was created with another {what} "
                f"({_first_difference(attrs.get(key), value)}); rerun it with the same "
                "arguments, or choose another --out or --study"
            )


def create_study(
    storage, name: str, direction: str, wanted: dict[str, Any], shown: str, sampler=None
):
    """Create the study and describe it (or, when another process created it meanwhile, check
    it). Returns (study, created)."""
    opt = optuna()
    try:
        study = opt.create_study(
            study_name=name, storage=storage, direction=direction, sampler=sampler
        )
    except opt.exceptions.DuplicatedStudyError:
        study = opt.load_study(study_name=name, storage=storage, sampler=sampler)
        check_study(study, name, wanted, shown)
        return study, False
    for key, value in wanted.items():
        study.set_user_attr(key, value)
    return study, True


def mark_ready(study) -> None:
    """The study is fully described (and, for a sweep, its trials enqueued): others may work."""
    study.set_user_attr(ATTR + "ready", True)


# -- trials whose worker died -----------------------------------------------------------------


def trial_params(trial) -> dict[str, Any]:
    """A trial's parameters: the suggested ones, or those it was enqueued with."""
    return {**trial.user_attrs.get(ATTR + "params", {}), **trial.params}


def requeue(study, trial) -> None:
    """Enqueue a failed trial's parameters again, as a new trial (the dead one stays FAIL).
    Also Optuna's heartbeat callback for RDB storages."""
    attrs = {
        k: v
        for k, v in trial.user_attrs.items()
        if k in (ATTR + "params", ATTR + "cell", ATTR + "seed")
    }
    attrs[ATTR + "retry_of"] = trial.number
    params = trial_params(trial)
    study.enqueue_trial(params, user_attrs={**attrs, ATTR + "params": params})
    log.warning("trial %d: its worker died; its parameters are queued again", trial.number)


def retried(trials) -> set[int]:
    """Numbers of the trials that were queued again (they do not count towards --trials)."""
    return {t.user_attrs[ATTR + "retry_of"] for t in trials if ATTR + "retry_of" in t.user_attrs}


def _worker_alive(folder: SearchFolder, worker: str) -> bool | None:
    """True/False when this machine can tell (the worker's lock file is here); None otherwise."""
    from filelock import FileLock, Timeout

    path = folder.worker_lock(worker)
    if not path.is_file():
        return None
    lock = FileLock(str(path), timeout=0)
    try:
        lock.acquire()
    except Timeout:
        return True
    except OSError:
        return None
    lock.release()
    return False


def recover_stale(study, storage, folder: SearchFolder, me: str) -> list[int]:
    """Fail and enqueue again every RUNNING trial whose worker is dead; returns their numbers.

    Two processes may look at once: only the one whose FAIL the storage accepts enqueues it.
    """
    opt = optuna()
    from optuna.trial import TrialState

    with quiet_optuna():  # fail_stale_trials is marked experimental
        opt.storages.fail_stale_trials(study)  # RDB heartbeats (requeue is its callback)
    recovered = []
    study_id = storage.get_study_id_from_name(study.study_name)
    for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        worker = trial.user_attrs.get(ATTR + "worker")
        if worker is None:
            # Killed between starting the trial and naming its worker (milliseconds apart).
            started = trial.datetime_start.timestamp() if trial.datetime_start else time.time()
            if time.time() - started < UNNAMED_STALE_SECONDS:
                continue
        elif worker == me or _worker_alive(folder, worker) is not False:
            continue
        trial_id = storage.get_trial_id_from_study_id_trial_number(study_id, trial.number)
        try:
            if not storage.set_trial_state_values(trial_id, state=TrialState.FAIL):
                continue
        except opt.exceptions.UpdateFinishedTrialError:
            continue  # another process failed it first
        requeue(study, trial)
        recovered.append(trial.number)
    return recovered


@contextmanager
def quiet_optuna():
    """Silence Optuna's warnings about how it is called (kdlens drives it with ask and tell)."""
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        yield


@contextmanager
def worker_lock(folder: SearchFolder, me: str):
    """Hold this worker's lock file while it works: its trials are alive as long as it is."""
    from filelock import FileLock

    path = folder.worker_lock(me)
    path.parent.mkdir(parents=True, exist_ok=True)
    lock = FileLock(str(path))
    with lock:
        yield


def claim_waiting(study, storage):
    """Start the first WAITING trial no other process has started; None when there is none."""
    opt = optuna()
    from optuna.trial import TrialState

    study_id = storage.get_study_id_from_name(study.study_name)
    for trial in study.get_trials(deepcopy=False, states=(TrialState.WAITING,)):
        trial_id = storage.get_trial_id_from_study_id_trial_number(study_id, trial.number)
        try:
            if not storage.set_trial_state_values(trial_id, state=TrialState.RUNNING):
                continue  # another process took it
        except opt.exceptions.UpdateFinishedTrialError:
            continue
        return opt.Trial(study, trial_id)
    return None


@contextmanager
def heartbeat(storage, study, trial):
    """Record the trial's heartbeat while it runs (RDB storages; a no-op for journal files)."""
    interval = getattr(storage, "get_heartbeat_interval", lambda: None)()
    if not interval:
        yield
        return
    study_id = storage.get_study_id_from_name(study.study_name)
    trial_id = storage.get_trial_id_from_study_id_trial_number(study_id, trial.number)
    stop = threading.Event()

    def beat() -> None:
        while True:
            try:
                storage.record_heartbeat(trial_id)
            except Exception as e:  # noqa: BLE001 - a missed beat is not the trial's failure
                log.warning("trial %d: heartbeat not recorded (%s)", trial.number, first_line(e))
            if stop.wait(interval):
                return

    thread = threading.Thread(target=beat, daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()
