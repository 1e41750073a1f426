"""``kdlens run --resume RUN_DIR``: continue a run that stopped (crash, kill, divergence).

The run folder holds everything needed: its resolved ``config.yaml``, the weights and
``<stage>.done.json`` of every finished stage, and ``<stage>.state.pt`` of the stage that was
training (see :mod:`kdlens.checkpointing`). Finished stages are loaded, not retrained; the
interrupted one continues from its last saved epoch; evaluation and later stages run again.
On the CPU the result equals that of a run that was never interrupted.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from kdlens.config import load_config
from kdlens.errors import KdlensError


def resume_run(
    run_dir: str | Path, overrides: list[str] | None = None, progress: bool = False
) -> dict[str, Any]:
    """Continue the run in ``run_dir`` with the config it started with; returns its metrics.

    ``overrides`` (``key=value``) change that config, e.g. a lower ``train.lr`` after a
    divergence; the run folder's ``config.yaml`` is updated. A change of data or model is refused
    when the saved split or state no longer fits.
    """
    from kdlens.pipeline import run

    folder = Path(run_dir)
    if not (folder / "config.yaml").is_file():
        raise KdlensError(f"cannot resume {folder}: it is not a run folder (no config.yaml)")
    config = load_config(folder / "config.yaml", overrides)
    return run(config, folder, progress=progress, resume=True)
