"""Data larger than memory: the streaming path gives the in-memory path's batches, runs, resumes
and shards across processes alike. ``data.max_memory_gb`` is set tiny so that small files of
scikit-learn's 8x8 digits stream."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import torch
from torch import nn

from kdlens.config import AugmentConfig, TrainConfig, load_config
from kdlens.data import BatchLoader, LazyRows, Normalizer, create_dataset, dataset_from_config
from kdlens.data.streaming import read_batches
from kdlens.distill import Distiller
from kdlens.errors import DataError
from kdlens.run import RunFolder, StageCheckpoint
from kdlens.run.inputs import memory_notes
from kdlens.train import config_values, fit
from kdlens.utils import set_seed
from tests.conftest import CORE_ONLY, REPO, SMOKE, decided_numbers

TINY = 1e-5  # GB: every test dataset here is larger decoded (600 8x8 digits: 1.5e-4 GB)
PER_CLASS = 60


@pytest.fixture(scope="module")
def digits_folder(tmp_path_factory):
    """An image folder of 10 x PER_CLASS PNGs of scikit-learn's digits."""
    from PIL import Image
    from sklearn.datasets import load_digits

    d = load_digits()
    root = tmp_path_factory.mktemp("streaming") / "digits"
    for label in range(10):
        (root / f"d{label}").mkdir(parents=True)
        for i, img in enumerate(d.images[d.target == label][:PER_CLASS]):
            pixels = np.round(img / 16 * 255).astype(np.uint8)
            Image.fromarray(pixels, mode="L").save(root / f"d{label}" / f"{i:03d}.png")
    return root


@pytest.fixture
def one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield {**os.environ, "PYTHONPATH": str(REPO / "src"), "OMP_NUM_THREADS": "1"}
    torch.set_num_threads(before)


def streaming_overrides(folder, workers: int = 1) -> list[str]:
    return [
        f"data.name=imagefolder:{folder}",
        f"data.max_memory_gb={TINY}",
        f"data.workers={workers}",
        *CORE_ONLY,
    ]


def one_line(info) -> str:
    assert "\n" not in str(info.value)
    return str(info.value)


# --- the decision ------------------------------------------------------------------------------


def test_a_tiny_memory_limit_streams_and_the_default_loads(digits_folder, tmp_path):
    loaded = create_dataset(f"imagefolder:{digits_folder}")
    streamed = create_dataset(f"imagefolder:{digits_folder}", max_memory_gb=TINY, workers=3)
    assert not loaded.streaming and isinstance(loaded.x, torch.Tensor)
    assert streamed.streaming and isinstance(streamed.x, LazyRows) and streamed.x.workers == 3
    assert streamed.input_shape == loaded.input_shape == (1, 8, 8)
    assert len(streamed) == len(loaded) == 10 * PER_CLASS
    assert torch.equal(streamed.y, loaded.y)
    rows = torch.tensor([599, 0, 17, 300])
    assert torch.equal(streamed.x[rows], loaded.x[rows])  # indexing reads those rows
    assert torch.equal(streamed.x[5], loaded.x[5]) and torch.equal(streamed.x[:3], loaded.x[:3])
    view = streamed.x.select(rows)  # picks rows without reading them
    assert isinstance(view, LazyRows) and torch.equal(view[:], loaded.x[rows])

    # npz written by numpy.savez: x's rows are read from the file, x never loaded.
    x = np.random.default_rng(0).random((90, 7, 6)).astype(np.float32)
    np.savez(tmp_path / "a.npz", x=x, y=np.arange(90) % 3)
    npz = create_dataset(f"npz:{tmp_path / 'a.npz'}", max_memory_gb=TINY)
    assert npz.streaming and npz.input_shape == (1, 7, 6)
    assert torch.equal(npz.x[torch.tensor([4, 2, 3, 89])], torch.as_tensor(x[[4, 2, 3, 89], None]))


def test_the_run_says_that_its_data_stream(digits_folder):
    config = load_config(SMOKE, streaming_overrides(digits_folder, workers=2))
    notes = memory_notes(dataset_from_config(config.data), config.data)
    assert notes == [
        "data: the inputs take 0.000154 GB decoded, above data.max_memory_gb (1e-05): they stay "
        "on disk and stream, batch by batch, through 2 DataLoader worker processes"
    ]
    digits = load_config(SMOKE, [f"data.max_memory_gb={TINY}"])  # built in: always in memory
    (note,) = memory_notes(dataset_from_config(digits.data), digits.data)
    assert note.endswith(
        "only imagefolder:, hf: images and npz: data can stream, digits is held in memory"
    )
    default = load_config(SMOKE, [f"data.name=imagefolder:{digits_folder}"])
    assert memory_notes(dataset_from_config(default.data), default.data) == []


def test_npz_that_cannot_stream_is_refused_in_one_line(tmp_path):
    x = np.random.default_rng(0).random((500, 10)).astype(np.float32)  # 2e-5 GB
    np.savez_compressed(tmp_path / "c.npz", x=x, y=np.arange(500) % 2)
    with pytest.raises(DataError) as info:
        create_dataset(f"npz:{tmp_path / 'c.npz'}", max_memory_gb=TINY)
    assert "is compressed (numpy.savez_compressed)" in one_line(info)
    assert "save it with numpy.savez, or raise data.max_memory_gb" in str(info.value)
    assert not create_dataset(f"npz:{tmp_path / 'c.npz'}").streaming  # below the limit: loaded
    np.savez(tmp_path / "f.npz", x=np.asfortranarray(x), y=np.arange(500) % 2)
    with pytest.raises(DataError, match="stored column by column"):
        create_dataset(f"npz:{tmp_path / 'f.npz'}", max_memory_gb=TINY)
    x[3, 1] = np.nan
    np.savez(tmp_path / "n.npz", x=x, y=np.arange(500) % 2)
    with pytest.raises(DataError) as info:
        create_dataset(f"npz:{tmp_path / 'n.npz'}", max_memory_gb=TINY)
    assert one_line(info) == f"dataset 'npz:{tmp_path / 'n.npz'}': 1 examples contain NaN or inf"


def test_an_image_that_fails_when_read_is_named_in_one_line(digits_folder, tmp_path):
    import shutil

    root = tmp_path / "digits"
    shutil.copytree(digits_folder, root)
    good = (root / "d3" / "000.png").read_bytes()
    (root / "d3" / "000.png").write_bytes(good[: len(good) // 2])  # its header still opens
    ds = create_dataset(f"imagefolder:{root}", max_memory_gb=TINY, workers=1)
    loader = BatchLoader(ds.x, ds.y, Normalizer.fit(ds.x[:50]), 64)
    with pytest.raises(DataError) as info:
        list(loader)  # read by a DataLoader worker, raised here
    assert one_line(info).startswith(f"image {root / 'd3' / '000.png'} cannot be read")
    skipped = create_dataset(
        f"imagefolder:{root}", max_memory_gb=TINY, skip_bad_files=True, workers=1
    )
    assert skipped.skipped_files == [str(root / "d3" / "000.png")] and len(skipped) == 599
    assert len(list(BatchLoader(skipped.x, skipped.y, Normalizer.fit(ds.x[:50]), 64))) == 10


# --- the batches -------------------------------------------------------------------------------


@pytest.mark.parametrize("augment", [None, AugmentConfig(shift=1, flip=True, mixup=0.3)])
@pytest.mark.parametrize("world_size", [1, 3])
def test_streaming_batches_are_the_in_memory_batches(digits_folder, augment, world_size):
    loaded = create_dataset(f"imagefolder:{digits_folder}")
    streamed = create_dataset(f"imagefolder:{digits_folder}", max_memory_gb=TINY, workers=2)
    norm = Normalizer.fit(loaded.x)
    index = torch.arange(len(loaded)) + 1000  # dataset indices travel with their rows

    def loader(x, rank):
        return BatchLoader(
            x,
            loaded.y,
            norm,
            64,
            shuffle=True,
            augment=augment,
            num_classes=10,
            seed=7,
            rank=rank,
            world_size=world_size,
            source_index=index,
            max_batches=6,
        )

    for rank in range(world_size):
        memory, stream = loader(loaded.x, rank), loader(streamed.x, rank)
        for _epoch in range(2):  # the second epoch continues the generator alike
            global_rng = torch.get_rng_state()
            a, b = list(memory), list(stream)
            assert torch.equal(torch.get_rng_state(), global_rng)  # dropout's draws untouched
            assert len(a) == len(b) == 6
            for p, q in zip(a, b, strict=True):
                assert torch.equal(p.index, q.index) and torch.equal(p.y, q.y)
                assert torch.equal(p.x, q.x)  # same rows, same shifts, flips and mixing
                assert torch.equal(p.source_index, q.source_index)
                assert (p.target is None) == (q.target is None)
                if p.target is not None:
                    assert torch.equal(p.target, q.target)
            assert torch.equal(memory.get_state(), stream.get_state())


def test_each_process_reads_only_its_share_and_the_partners_it_mixes_with(digits_folder):
    streamed = create_dataset(f"imagefolder:{digits_folder}", max_memory_gb=TINY)
    norm = Normalizer.fit(streamed.x[:100])
    read: list[int] = []

    class Counting:  # the reader, counting the rows it is asked for
        def __init__(self, inner):
            self.inner, self.row_shape, self.finite = inner, inner.row_shape, True

        def __len__(self):
            return len(self.inner)

        def read(self, rows):
            read.extend(rows.tolist())
            return self.inner.read(rows)

    x = LazyRows(Counting(streamed.x.reader), streamed.x.rows)  # workers 0: read here
    plain = BatchLoader(x, streamed.y, norm, 60, rank=1, world_size=3, max_batches=3)
    list(plain)
    assert len(read) == 3 * 20  # a third of each batch of 60
    read.clear()
    mixing = BatchLoader(
        x, streamed.y, norm, 60, shuffle=True, augment=AugmentConfig(mixup=0.4),
        num_classes=10, rank=1, world_size=3, max_batches=3,
    )  # fmt: skip
    list(mixing)
    assert 3 * 20 < len(read) <= 3 * 40  # the share, and the partners outside it


def test_the_normaliser_in_one_streaming_pass_matches_the_in_memory_one(digits_folder):
    loaded = create_dataset(f"imagefolder:{digits_folder}")
    streamed = create_dataset(f"imagefolder:{digits_folder}", max_memory_gb=TINY, workers=1)
    whole = Normalizer.fit(loaded.x)
    passed = Normalizer.fit_batches(read_batches(streamed.x, 64))
    assert passed.mean.shape == whole.mean.shape == (1, 1, 1)
    assert torch.allclose(passed.mean, whole.mean, atol=1e-6)
    assert torch.allclose(passed.std, whole.std, atol=1e-6)
    table = torch.randn(1000, 5, dtype=torch.float64) * torch.tensor([1, 10, 100, 0.1, 0]) + 3
    exact_mean, exact_std = table.mean(0), table.std(0)
    fitted = Normalizer.fit_batches(table.float().split(77))
    assert torch.allclose(fitted.mean, exact_mean.float(), atol=1e-5)
    assert torch.allclose(fitted.std[:4], exact_std[:4].float(), rtol=1e-5)
    assert fitted.std[4] == 1  # a constant feature is centred, not scaled


# --- training and resuming ---------------------------------------------------------------------


def _fit_streaming(tmp_path, epochs, checkpoint=None, on_epoch=None):
    """test_resume's tiny problem, its inputs streamed from an npz."""
    g = torch.Generator().manual_seed(0)
    x = torch.randn(96, 1, 4, 4, generator=g)
    y = (x.flatten(1).sum(1) > 0).long()
    path = tmp_path / "tiny.npz"
    if not path.exists():
        np.savez(path, x=x.numpy(), y=y.numpy())
    ds = create_dataset(f"npz:{path}", max_memory_gb=1e-6, workers=1)  # x: 6e-6 GB
    assert ds.streaming
    norm = Normalizer.fit(x)
    cfg = TrainConfig(
        epochs=epochs, batch_size=16, lr=0.05, augment=AugmentConfig(shift=1, mixup=0.4)
    )
    set_seed(0)
    student = nn.Sequential(nn.Flatten(), nn.Linear(16, 32), nn.Dropout(0.3), nn.Linear(32, 2))
    loader = BatchLoader(
        ds.x, ds.y, norm, 16, shuffle=True, augment=cfg.augment, num_classes=2, seed=3
    )
    val = BatchLoader(ds.x.select(slice(0, 32)), ds.y[:32], norm, 32)
    result = fit(Distiller(student), loader, val, cfg, checkpoint=checkpoint, on_epoch=on_epoch)
    return result, student


class _Stop(Exception):
    pass


def test_an_interrupted_streaming_fit_resumes_exactly(tmp_path):
    whole, whole_model = _fit_streaming(tmp_path, 5)
    folder = RunFolder(tmp_path / "run")
    folder.make_dirs()
    ckpt = StageCheckpoint(folder, "s", every=1)

    def stop_after_3(record):
        if record["epoch"] == 3:
            raise _Stop

    with pytest.raises(_Stop):
        _fit_streaming(tmp_path, 5, checkpoint=ckpt, on_epoch=stop_after_3)
    ckpt.resume = True
    resumed, resumed_model = _fit_streaming(tmp_path, 5, checkpoint=ckpt)
    assert resumed.history == whole.history and resumed.best_epoch == whole.best_epoch
    for a, b in zip(resumed_model.parameters(), whole_model.parameters(), strict=True):
        assert torch.equal(a, b)


def test_a_streaming_run_end_to_end(digits_folder, tmp_path, one_thread, monkeypatch):
    from kdlens.pipeline import prepare, run
    from kdlens.run import load_run
    from kdlens.train import teacher_logits

    config = load_config(SMOKE, streaming_overrides(digits_folder))
    metrics = run(config, tmp_path / "stream")
    assert any("stream, batch by batch" in n for n in metrics["notes"])
    record = json.loads((tmp_path / "stream" / "dataset.json").read_text())
    assert record["streaming"] is True
    in_memory = run(
        load_config(SMOKE, [f"data.name=imagefolder:{digits_folder}", *CORE_ONLY]),
        tmp_path / "memory",
    )
    for name in ("teacher", "scratch", "kd"):  # the normalisers differ in the last float bits
        assert metrics["models"][name]["accuracy"] == pytest.approx(
            in_memory["models"][name]["accuracy"], abs=0.02
        ), name

    # The students' teacher logits were cached on disk; a resumed run reads them back.
    (cache,) = (tmp_path / "stream" / "cache").glob("teacher_logits_*.safetensors")
    ctx = prepare(config, tmp_path / "stream", resume=True)
    teacher = load_run(tmp_path / "stream").load_model("teacher")

    def no_recompute(*args, **kwargs):
        raise AssertionError("the teacher's logits were computed again")

    monkeypatch.setattr("kdlens.train.compute_logits", no_recompute)
    cached = teacher_logits(ctx, teacher, ctx.student_data, ctx.student_index)
    monkeypatch.undo()
    from kdlens.distill import compute_logits

    x, y = ctx.student_data
    fresh = compute_logits(teacher, BatchLoader(x, y, ctx.normalizer, 512))
    assert torch.allclose(cached, fresh, atol=1e-5)


def test_sigkill_then_resume_on_streaming_data_gives_the_same_metrics(
    digits_folder, tmp_path, one_thread
):
    from kdlens.cli import main
    from kdlens.pipeline import run

    overrides = [*streaming_overrides(digits_folder), "student.train.epochs=8"]
    out = tmp_path / "killed"
    cmd = [sys.executable, "-m", "kdlens", "run", "--config", str(SMOKE), "--out", str(out)]
    cmd += ["--quiet", *[a for o in overrides for a in ("--set", o)]]
    proc = subprocess.Popen(cmd, env=one_thread, stderr=subprocess.PIPE)
    state = out / "checkpoints" / "scratch.state.pt"
    deadline = time.monotonic() + 300
    while not state.exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)
    assert proc.poll() is None, "the run ended before it could be killed"
    proc.send_signal(signal.SIGKILL)  # mid-way through the scratch student
    proc.wait()
    assert not (out / "metrics.json").exists()
    assert not (out / "checkpoints" / "kd.safetensors").exists()

    assert main(["run", "--resume", str(out), "--quiet", "--set", "data.workers=2"]) == 0
    resumed = json.loads((out / "metrics.json").read_text())
    whole = run(load_config(SMOKE, overrides), tmp_path / "whole")
    keys = ("models", "summary", "dataset")
    assert decided_numbers({k: resumed[k] for k in keys}) == decided_numbers(
        {k: whole[k] for k in keys}
    )


def test_data_workers_do_not_count_as_a_change_on_resume(digits_folder):
    config = load_config(SMOKE, streaming_overrides(digits_folder))
    values = config_values(config, ("data",))
    assert "data.workers" not in values and values["data.max_memory_gb"] == TINY


def test_two_processes_stream_as_one(digits_folder, tmp_path, one_thread):
    from kdlens.pipeline import run

    overrides = streaming_overrides(digits_folder)
    single = run(load_config(SMOKE, overrides), tmp_path / "one")
    out = tmp_path / "ddp"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2"]
    cmd += ["-m", "kdlens", "run", "--config", str(SMOKE), "--out", str(out), "--quiet"]
    cmd += [a for o in overrides for a in ("--set", o)]
    res = subprocess.run(cmd, env=one_thread, capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stderr[-3000:]
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["environment"]["world_size"] == 2
    assert any("stream, batch by batch" in n for n in metrics["notes"])
    for name in ("teacher", "scratch", "kd"):
        # The same global batches; batch norm sees half a batch per process (as in memory).
        assert metrics["models"][name]["accuracy"] == pytest.approx(
            single["models"][name]["accuracy"], abs=0.03
        ), name


def test_surrogates_on_streaming_data_fit_a_bounded_sample(digits_folder, tmp_path):
    from kdlens.pipeline import run

    overrides = [*streaming_overrides(digits_folder), "readable.students=[tree]"]
    metrics = run(
        load_config(SMOKE, overrides),
        tmp_path / "run",
        only=("teacher", "students", "evaluate", "readable"),
    )
    # At most a quarter of data.max_memory_gb: 2,500 bytes, 9 rows of 8x8 float32 pixels.
    assert metrics["readable"]["transfer"]["n_examples"] == int(TINY * 1e9 / 4 / (64 * 4)) == 9
    (note,) = [n for n in metrics["notes"] if n.startswith("readable:")]
    assert "a random sample of 9 of the 420 training examples" in note
    assert "tree_kd" in metrics["models"] and "tree_scratch" in metrics["models"]
