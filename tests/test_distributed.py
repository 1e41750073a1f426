"""Several processes: sharded batches and a 2-process torchrun run on the CPU (gloo)."""

import json
import os
import subprocess
import sys

import pytest
import torch

from kdlens.config import AugmentConfig
from kdlens.data import BatchLoader, Normalizer
from tests.conftest import REPO, SMOKE


def _loader(rank=0, world_size=1, **kw):
    x = torch.rand(70, 1, 6, 6, generator=torch.Generator().manual_seed(0))
    y = torch.arange(70) % 3
    return BatchLoader(
        x,
        y,
        Normalizer.fit(x),
        16,
        shuffle=True,
        seed=5,
        num_classes=3,
        rank=rank,
        world_size=world_size,
        **kw,
    )


@pytest.mark.parametrize("augment", [None, AugmentConfig(shift=1, flip=True, mixup=0.3)])
def test_shards_of_each_batch_add_up_to_the_single_process_batch(augment):
    whole = list(_loader(augment=augment))
    shards = [list(_loader(r, 3, augment=augment)) for r in range(3)]
    assert all(len(s) == len(whole) for s in shards)
    for b, batch in enumerate(whole):
        parts = [s[b] for s in shards]
        assert torch.equal(torch.cat([p.index for p in parts]), batch.index)
        assert torch.equal(torch.cat([p.x for p in parts]), batch.x)  # same augmentation draws
        if batch.target is not None:
            assert torch.equal(torch.cat([p.target for p in parts]), batch.target)
        assert {len(p.y) for p in parts} <= {len(batch.y) // 3, len(batch.y) // 3 + 1}


def test_two_cpu_processes_match_one(smoke_run, tmp_path):
    _, single = smoke_run
    out = tmp_path / "ddp"
    env = {**os.environ, "PYTHONPATH": str(REPO / "src"), "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2"]
    cmd += ["-m", "kdlens", "run", "--config", str(SMOKE), "--out", str(out), "--quiet"]
    res = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stderr[-3000:]
    assert res.stdout.count("run folder:") == 1  # only rank 0 reports
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["environment"]["world_size"] == 2
    for name in ("teacher", "scratch", "kd"):
        # The same global batches and augmentation; batch norm sees half a batch per process.
        assert metrics["models"][name]["accuracy"] == pytest.approx(
            single["models"][name]["accuracy"], abs=0.03
        ), name
    for name in ("teacher", "scratch", "kd"):
        assert (out / "checkpoints" / f"{name}.safetensors").is_file()
    assert not list(out.rglob("*.tmp")) and not list(out.rglob("*.state.pt"))
