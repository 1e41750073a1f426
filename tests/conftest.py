from __future__ import annotations

from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
SMOKE = REPO / "configs" / "smoke.yaml"


@pytest.fixture(autouse=True)
def _seed_and_threads():
    torch.manual_seed(0)
    yield


@pytest.fixture(scope="session")
def smoke_run(tmp_path_factory):
    """One smoke run shared by the tests that only read its outputs."""
    from kdlens.config import load_config
    from kdlens.pipeline import run

    out = tmp_path_factory.mktemp("runs") / "smoke"
    metrics = run(load_config(SMOKE), out)
    return out, metrics
