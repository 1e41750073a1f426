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


@pytest.fixture
def single_thread():
    """Tiny models: one thread is fastest, spares a busy machine and fixes the summation order."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def smoke_run(tmp_path_factory):
    """One smoke run shared by the tests that only read its outputs."""
    from kdlens.config import load_config
    from kdlens.pipeline import run

    out = tmp_path_factory.mktemp("runs") / "smoke"
    metrics = run(load_config(SMOKE), out)
    return out, metrics


TIMING_WORDS = ("seconds", "latency", "time", "throughput", "_ms")


def decided_numbers(d):
    """Every value of a metrics document that training decides: wall-clock measurements removed."""
    if isinstance(d, dict):
        return {
            k: decided_numbers(v) for k, v in d.items() if not any(t in k for t in TIMING_WORDS)
        }
    return d


# Overrides that switch off the stages after evaluation: for tests of the core run only.
CORE_ONLY = [
    "explain.enabled=false",
    "readable.students=[]",
    "readable.sweeps=[]",
    "deploy.quantize=false",
]
