"""The search folder of ``kdlens tune`` and ``kdlens sweep``: every path in it, and its marker.

Layout::

    .kdlens-search.json      marker, written first: kind (tune or sweep), study, storage, command
    optuna.journal           the study (Optuna's journal file storage), unless --storage names one
    teachers/<key>/          one teacher run folder per seed (and teacher-side config), shared
    teachers/<key>.lock      held while that teacher trains: two workers never train it twice
    workers/<host>-<pid>.lock  held by each live worker: a trial whose worker's lock is free died
    trials/<number>/         one ordinary run folder per trial
    trials.json, trials.csv, tune.html, best.yaml, tune.json, best/seed_<s>/   (tune)
    sweep.json, sweep.csv, sweep.png                                       (sweep)
"""

from __future__ import annotations

import socket
import sys
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import kdlens
from kdlens.errors import OutputError
from kdlens.run.folder import writable
from kdlens.utils import read_json, write_json

MARKER = ".kdlens-search.json"
JOURNAL = "optuna.journal"


class SearchFolder:
    """One search folder (see the module's docstring for its layout)."""

    def __init__(self, path: str | Path):
        self.path = Path(path)

    def __repr__(self) -> str:
        return f"SearchFolder({str(self.path)!r})"

    @property
    def marker(self) -> Path:
        return self.path / MARKER

    @property
    def journal(self) -> Path:
        return self.path / JOURNAL

    @property
    def teachers(self) -> Path:
        return self.path / "teachers"

    @property
    def workers(self) -> Path:
        return self.path / "workers"

    def worker_lock(self, worker: str) -> Path:
        """The lock file of the worker named ``host/pid``."""
        return self.workers / (worker.replace("/", "-") + ".lock")

    def trial(self, number: int) -> Path:
        return self.path / "trials" / str(number)

    def best_run(self, seed: int) -> Path:
        return self.path / "best" / f"seed_{seed}"

    def file(self, name: str) -> Path:
        """``trials.json``, ``sweep.csv``, ``tune.html``...: the search's own outputs."""
        return self.path / name

    def relative(self, path: Path) -> str:
        return path.relative_to(self.path).as_posix()

    def kind(self) -> str | None:
        """``tune`` or ``sweep`` for a search folder; None when there is no marker."""
        if not self.marker.is_file():
            return None
        try:
            return read_json(self.marker).get("kind")
        except (OSError, ValueError, AttributeError):
            return "unknown"

    def check_target(self, kind: str) -> None:
        """Refuse, before anything is written, a folder this search may not write into."""
        p = self.path
        if p.exists() and not p.is_dir():
            raise OutputError(f"output path {p} exists and is not a folder")
        if p.is_dir() and any(p.iterdir()):
            found = self.kind()
            if found is None:
                raise OutputError(
                    f"{p} is not empty and is not a kdlens search folder; choose another --out"
                )
            if found != kind:
                raise OutputError(f"{p} holds a kdlens {found}, not a {kind}; choose another --out")
        parent = p if p.exists() else p.parent
        while not parent.exists():
            parent = parent.parent
        if not parent.is_dir() or not writable(parent):
            raise OutputError(f"output folder {p} is not writable")

    def start(self, kind: str, study: str, storage: str) -> None:
        """Create the folder and its marker (kept when it exists: a search resumes in place)."""
        try:
            self.path.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise OutputError(f"cannot create {self.path}: {e.strerror or e}") from None
        if not self.marker.is_file():
            self.write_json(
                self.marker,
                {
                    "kdlens": kdlens.__version__,
                    "kind": kind,
                    "study": study,
                    "storage": storage,
                    "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                    "command": list(sys.argv),
                },
            )

    def write_json(self, path: Path, data: Any) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        write_json(path, data)


def worker_name() -> str:
    """``host/pid``: how a trial names the process running it."""
    import os

    return f"{socket.gethostname()}/{os.getpid()}"
