"""The run folder: every path and file name of a run, its marker, its lock, and safe reads/writes.

No other module spells a run file's name: they ask a :class:`RunFolder`. Layout::

    .kdlens-run.json         marker, written first: version, creation time, command, config
    .kdlens.lock(.owner)     held by the one process writing (filelock; the owner file names it)
    config.yaml              the resolved config (rerun with ``kdlens run --config``)
    split.json               train/val/test indices into the dataset
    normalization.json       mean and std fitted on the training split
    dataset.json             class and feature names, what the data fitted on its training split
    models.json              one record per model: role, family, derived_from, how to rebuild it
    metrics.json             the results (see README)
    history_<model>.json     per-epoch training records
    checkpoints/             weights (<model>.safetensors, int8 <model>.pt), training state
                             (<stage>.state.pt) and finished-stage records (<stage>.done.json)
    cache/                   teacher logits over un-augmented training data
    explain.json, test_logits.safetensors, figures/, readable/, report.html, tb/, export/

A multi-seed folder (``kdlens run --seeds N``) is a kdlens folder too, of marker kind "seeds"::

    .kdlens-run.json, .kdlens.lock   marker (kind "seeds", the number of seeds) and lock
    config.yaml                      the config of seed 0; seed k runs with seed + k
    seed-<k>/                        one ordinary run folder per seed
    summary.json, report.html        every metric across seeds, the verdicts across seeds
"""

from __future__ import annotations

import json
import os
import shutil
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import kdlens
from kdlens.errors import CheckpointError, KdlensError, OutputError
from kdlens.utils import read_json as read_json_file
from kdlens.utils import write_bytes_atomic, write_json

MARKER = ".kdlens-run.json"
LOCK = ".kdlens.lock"
LOCK_OWNER = ".kdlens.lock.owner"  # filelock truncates the lock file itself on every attempt
CONFIG = "config.yaml"
SPLIT = "split.json"
NORMALIZATION = "normalization.json"
DATASET = "dataset.json"
MODELS = "models.json"
METRICS = "metrics.json"
EXPLAIN = "explain.json"
TEST_LOGITS = "test_logits.safetensors"
REPORT = "report.html"
CHECKPOINTS = "checkpoints"
CACHE = "cache"
FIGURES = "figures"
READABLE = "readable"
EXPORT = "export"
SUMMARY = "summary.json"
SEED_FOLDER = "seed-{}"
RUN_KIND, SEEDS_KIND = "run", "seeds"  # the marker's "kind": one run, or several seeds of one
TENSORBOARD = "tb"
FLOAT_SUFFIX = ".safetensors"
INT8_SUFFIX = ".pt"  # a student after PyTorch dynamic int8 quantization (torch.save state dict)
TEMP_SUFFIX = ".tmp"  # atomic writes go through ".<name>.<random>.tmp" next to the target
# Files that say nothing about a run's progress: a folder holding only these is "fresh".
_BOOKKEEPING = {MARKER, LOCK, LOCK_OWNER, CONFIG, SPLIT, NORMALIZATION, DATASET}


class RunFolder:
    """One run folder. ``write=False`` (every process but the main one under torchrun) makes
    every write a no-op, so callers never test which process they are."""

    def __init__(self, path: str | Path, write: bool = True):
        self.path = Path(path)
        self.write = write
        self._lock: Any = None

    def __repr__(self) -> str:
        return f"RunFolder({str(self.path)!r})"

    # -- paths -----------------------------------------------------------------------------------
    def file(self, name: str) -> Path:
        return self.path / name

    @property
    def marker(self) -> Path:
        return self.path / MARKER

    @property
    def config(self) -> Path:
        return self.path / CONFIG

    @property
    def split(self) -> Path:
        return self.path / SPLIT

    @property
    def normalization(self) -> Path:
        return self.path / NORMALIZATION

    @property
    def dataset_record(self) -> Path:
        return self.path / DATASET

    @property
    def models(self) -> Path:
        return self.path / MODELS

    @property
    def metrics(self) -> Path:
        return self.path / METRICS

    @property
    def explain(self) -> Path:
        return self.path / EXPLAIN

    @property
    def test_logits(self) -> Path:
        return self.path / TEST_LOGITS

    @property
    def report(self) -> Path:
        return self.path / REPORT

    @property
    def checkpoints(self) -> Path:
        return self.path / CHECKPOINTS

    @property
    def cache(self) -> Path:
        return self.path / CACHE

    @property
    def figures(self) -> Path:
        return self.path / FIGURES

    @property
    def readable(self) -> Path:
        return self.path / READABLE

    @property
    def export(self) -> Path:
        return self.path / EXPORT

    @property
    def tensorboard(self) -> Path:
        return self.path / TENSORBOARD

    # Files one stage writes and another reads.
    @property
    def compression_table(self) -> Path:
        return self.figures / "compression_table.json"

    @property
    def compression_plot(self) -> Path:
        return self.figures / "compression_accuracy_vs_size.png"

    @property
    def pruning_table(self) -> Path:
        return self.figures / "pruning.json"

    @property
    def pruning_plot(self) -> Path:
        return self.figures / "pruning_accuracy_vs_sparsity.png"

    @property
    def readable_results(self) -> Path:
        return self.readable / "readable.json"

    @property
    def summary(self) -> Path:
        """A multi-seed folder's summary across its seeds."""
        return self.path / SUMMARY

    def seed_folder(self, k: int) -> RunFolder:
        """The run folder of a multi-seed folder's ``k``-th seed (counted from 0)."""
        return RunFolder(self.path / SEED_FOLDER.format(k), write=self.write)

    def figure(self, name: str) -> Path:
        return self.figures / f"{name}.png"

    def rules(self, model: str) -> Path:
        """A decision tree's rules as text."""
        return self.readable / f"{model}_rules.txt"

    def weights(self, model: str, int8: bool = False) -> Path:
        return self.checkpoints / f"{model}{INT8_SUFFIX if int8 else FLOAT_SUFFIX}"

    def onnx(self, model: str) -> Path:
        return self.export / f"{model}.onnx"

    def state(self, stage: str) -> Path:
        return self.checkpoints / f"{stage}.state.pt"

    def done(self, stage: str) -> Path:
        return self.checkpoints / f"{stage}.done.json"

    def history(self, model: str) -> Path:
        return self.path / f"history_{model}.json"

    def teacher_logits_cache(self, key: str) -> Path:
        return self.cache / f"teacher_logits_{key}{FLOAT_SUFFIX}"

    def relative(self, path: Path) -> str:
        """``path`` as written in the run's JSON files: relative to the folder, with slashes."""
        return path.relative_to(self.path).as_posix()

    # -- what the folder is ----------------------------------------------------------------------
    def is_run(self) -> bool:
        """A kdlens run folder: it has the marker (or, from kdlens 0.1, a config and a split)."""
        return self.marker.is_file() or (self.config.is_file() and self.split.is_file())

    def kind(self) -> str | None:
        """``"run"``, ``"seeds"`` (a multi-seed folder) or None (not a kdlens folder)."""
        if not self.is_run():
            return None
        if not self.marker.is_file():
            return RUN_KIND  # kdlens 0.1 wrote no marker, and no multi-seed folders
        try:
            marker = read_json_file(self.marker)
        except (OSError, ValueError):
            return RUN_KIND  # a corrupt marker is reported by whatever reads the run next
        return (
            SEEDS_KIND
            if isinstance(marker, dict) and marker.get("kind") == SEEDS_KIND
            else RUN_KIND
        )

    def is_seeds(self) -> bool:
        return self.kind() == SEEDS_KIND

    def is_fresh(self) -> bool:
        """A run that began but produced nothing yet (killed before its first stage finished)."""
        for entry in self.path.iterdir():
            if entry.name in _BOOKKEEPING or entry.name.endswith(TEMP_SUFFIX):
                continue
            if entry.name == CHECKPOINTS and entry.is_dir() and not any(entry.iterdir()):
                continue
            return False
        return True

    def finished_stages(self) -> dict[str, dict[str, Any]]:
        """``{stage: its done record}`` for every training stage that finished."""
        if not self.checkpoints.is_dir():
            return {}
        return {
            p.name.removesuffix(".done.json"): self.read_json(p)
            for p in sorted(self.checkpoints.glob("*.done.json"))
        }

    # -- starting, replacing, locking -------------------------------------------------------------
    def check_target(self, overwrite: bool) -> None:
        """Refuse, before anything is written, a folder this run may not write into."""
        p = self.path
        if p.exists() and not p.is_dir():
            raise OutputError(f"output path {p} exists and is not a folder")
        if p.is_dir() and any(e.name not in (LOCK, LOCK_OWNER) for e in p.iterdir()):
            if not self.is_run():
                raise OutputError(
                    f"{p} is not empty and is not a kdlens run folder; kdlens writes only into "
                    "an empty folder or its own run folder (choose another --out)"
                )
            if not overwrite and not self.is_fresh():
                raise OutputError(
                    f"run folder {p} already exists; pass --overwrite to replace it "
                    f"(or --resume {p} to continue it)"
                )
        parent = p if p.exists() else p.parent
        while not parent.exists():
            parent = parent.parent
        if not parent.is_dir() or not writable(parent):
            raise OutputError(f"output folder {p} is not writable")

    def start(
        self,
        config_dict: dict[str, Any],
        command: list[str] | None = None,
        kind: str = RUN_KIND,
        **extra: Any,
    ) -> None:
        """Empty the folder (a kdlens run folder or a fresh one; the lock is kept) and write the
        marker first, so a kill at any later moment leaves a folder kdlens recognises.
        ``kind``: "run", or "seeds" for a multi-seed folder (``extra``: its number of seeds)."""
        if not self.write:
            return
        for entry in list(self.path.iterdir()):
            if entry.name in (LOCK, LOCK_OWNER):
                continue
            try:
                shutil.rmtree(
                    entry
                ) if entry.is_dir() and not entry.is_symlink() else entry.unlink()
            except OSError as e:
                raise OutputError(f"cannot remove {entry}: {e.strerror or e}") from None
        write_json(
            self.marker,
            {
                "kdlens": kdlens.__version__,
                "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                "command": list(sys.argv if command is None else command),
                "kind": kind,
                **extra,
                "config": config_dict,
            },
        )
        if kind == RUN_KIND:
            self.make_dirs()

    def make_dirs(self) -> None:
        if not self.write:
            return
        try:
            self.checkpoints.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise OutputError(f"cannot create {self.checkpoints}: {e.strerror or e}") from None

    @contextmanager
    def locked(self) -> Iterator[RunFolder]:
        """Hold the folder's lock for the block: a second writer stops in one line naming the
        holder's process id. The lock is the kernel's (flock), so a killed holder leaves none."""
        if not self.write:
            yield self
            return
        from filelock import FileLock, Timeout

        try:
            self.path.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise OutputError(f"cannot create {self.path}: {e.strerror or e}") from None
        lock = FileLock(str(self.path / LOCK), timeout=0)
        try:
            lock.acquire()
        except Timeout:
            raise OutputError(
                f"run folder {self.path} is in use by another kdlens process "
                f"(pid {self._holder() or 'unknown'}); wait for it to finish"
            ) from None
        except OSError as e:
            raise OutputError(f"cannot lock {self.path / LOCK}: {e.strerror or e}") from None
        try:
            try:
                (self.path / LOCK_OWNER).write_text(f"{os.getpid()}\n")
            except OSError:
                pass  # the name of the holder is a courtesy; the lock itself is held
            self._lock = lock
            yield self
        finally:
            self._lock = None
            lock.release()

    def _holder(self) -> str | None:
        try:
            return (self.path / LOCK_OWNER).read_text().strip() or None
        except OSError:
            return None

    def remove_temporaries(self) -> list[Path]:
        """Delete half-written files a killed process left (``.<name>.<random>.tmp``)."""
        removed = []
        if not self.write or not self.path.is_dir():
            return removed
        for tmp in self.path.rglob(f".*{TEMP_SUFFIX}"):
            tmp.unlink(missing_ok=True)
            removed.append(tmp)
        return removed

    # -- reading and writing ---------------------------------------------------------------------
    def read_json(self, path: Path) -> Any:
        """A JSON file of the run; a missing or corrupt one is a one-line error naming it."""
        if not path.is_file():
            raise KdlensError(f"{path} is missing")
        try:
            return read_json_file(path)
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise CheckpointError(f"{path} is corrupt ({e})") from None
        except OSError as e:
            raise OutputError(f"cannot read {path}: {e.strerror or e}") from None

    def write_json(self, path: Path, data: Any) -> None:
        if self.write:
            path.parent.mkdir(parents=True, exist_ok=True)
            write_json(path, data)

    def write_bytes(self, path: Path, data: bytes) -> None:
        if self.write:
            path.parent.mkdir(parents=True, exist_ok=True)
            write_bytes_atomic(path, data)

    def read_marker(self) -> dict[str, Any]:
        return self.read_json(self.marker)


def writable(folder: Path) -> bool:
    """Try it: permission bits say nothing to root or about read-only mounts."""
    import tempfile

    try:
        with tempfile.TemporaryFile(dir=folder):
            return True
    except OSError:
        return False
