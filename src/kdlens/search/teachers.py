"""One teacher per seed, trained once and shared by every trial and worker of that seed.

Each teacher is an ordinary run folder (``pipeline.run(..., only=("teacher",))``) under
``teachers/<key>``, where the key hashes everything the teacher's weights depend on. A lock file
beside it (not the run folder's own lock, which guards one writer of the folder) is held while it
trains, so a second worker waits for it instead of training it again.
"""

from __future__ import annotations

import hashlib
import json
import logging
from contextlib import contextmanager, nullcontext
from pathlib import Path

from kdlens import distributed
from kdlens.config import RunConfig
from kdlens.run import RunFolder

log = logging.getLogger("kdlens")


def teacher_key(config: RunConfig) -> str:
    """Everything a teacher's training depends on: its spec, the data, the seed, the holdout."""
    parts = {
        "teacher": config.teacher.model_dump(mode="json"),
        "data": config.data.model_dump(mode="json"),
        "seed": config.seed,
        "holdout": config.distill.transfer.holdout,
    }
    return hashlib.sha1(json.dumps(parts, sort_keys=True).encode()).hexdigest()[:12]


@contextmanager
def _held(path: Path, seed: int):
    """Hold the lock file ``path``; says so when another worker holds it (it is training that
    teacher, which this one then loads)."""
    from filelock import FileLock, Timeout

    lock = FileLock(str(path))
    try:
        lock.acquire(timeout=0)
    except Timeout:
        log.info("teacher of seed %d: another worker is training it; waiting", seed)
        lock.acquire()
    try:
        yield
    finally:
        lock.release()


def ensure_teacher(config: RunConfig, teachers: str | Path, progress: bool = False) -> Path:
    """The checkpoint of ``config``'s teacher under ``teachers``, trained first if no process
    did (a teacher whose training was killed continues from its last epoch).

    Under torchrun every process calls this: rank 0 decides, all of them train together.
    """
    from kdlens.pipeline import run

    teachers = Path(teachers)
    key = teacher_key(config)
    folder = RunFolder(teachers / key)
    if distributed.is_main():
        teachers.mkdir(parents=True, exist_ok=True)
    lock = teachers / f"{key}.lock"
    with _held(lock, config.seed) if distributed.is_main() else nullcontext():
        done = distributed.broadcast(folder.done("teacher").is_file())
        if not done:
            # Resuming needs every process to read the state: only a single process does.
            resume = distributed.world_size() == 1 and folder.path.is_dir() and folder.is_run()
            log.info(
                "teacher of seed %d: %s in %s",
                config.seed,
                "resuming" if resume else "training",
                folder.path,
            )
            run(
                config,
                folder.path,
                overwrite=not resume,
                resume=resume,
                progress=progress,
                only=("teacher",),
            )
    return folder.weights("teacher").resolve()


def with_shared_teacher(
    config: RunConfig, teachers: str | Path, progress: bool = False
) -> RunConfig:
    """``config`` loading its seed's shared teacher (trained first if no process did); a config
    that names its own ``teacher.checkpoint`` is returned as it is."""
    if config.teacher.checkpoint is not None:
        return config
    checkpoint = ensure_teacher(config, teachers, progress)
    # kdlens trained it on these very inputs: the loaded-teacher check looks for a teacher fed
    # what it does not expect, which this one cannot be (a short smoke teacher may be weak).
    update = {"checkpoint": str(checkpoint), "accept_weak": True}
    return config.model_copy(update={"teacher": config.teacher.model_copy(update=update)})
