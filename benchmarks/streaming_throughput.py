"""Images per second of KD training on an image folder of 5,000 PNGs (mnist5k written out):
kdlens streaming from disk, kdlens in memory, and the floor: a plain torchvision ``ImageFolder`` +
``DataLoader`` + hand-written KD loop with the same workers, models, batch size and loss.

Every arm trains the same student (a fresh one each time) against the same frozen teacher for
``--epochs`` epochs over all 5,000 images, running the teacher on every batch (kdlens with
``distill.cache_teacher_logits: false``; no augmentation), then scores 500 images, in memory, as
kdlens's ``fit`` does after each epoch. Arms alternate, repeat, and the medians of wall time
are compared (the workers decode in other processes: CPU time of the training process would not
see them). Also: what decoding one PNG costs, and what loading the folder into memory costs.

    python benchmarks/streaming_throughput.py --repeats 5 --workers 2 --models small
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import tempfile
import time
from datetime import date
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from kdlens.config import DistillConfig, TrainConfig
from kdlens.data import BatchLoader, Normalizer, create_dataset
from kdlens.distill import build_distiller
from kdlens.models import create_model
from kdlens.train import fit

MODELS = {  # teacher and student architectures (kdlens registry names and arguments)
    "tiny": (("mlp", {"hidden": [128]}), ("mlp", {"hidden": [32]})),
    "small": (("cnn", {"channels": [8, 16], "hidden": 32}), ("mlp", {"hidden": [32]})),
    "default": (("cnn", {"channels": [32, 64], "hidden": 128}), ("mlp", {"hidden": [800, 800]})),
}
T, ALPHA, BATCH, LR, VAL = 4.0, 0.1, 64, 1e-3, 500


def write_folder(root: Path) -> float:
    """mnist5k as 5,000 grey PNGs, one subfolder per class; returns the seconds it took."""
    from PIL import Image

    start = time.perf_counter()
    ds = create_dataset("mnist5k")
    pixels = (ds.x[:, 0] * 255).round().to(torch.uint8).numpy()
    for i, (img, label) in enumerate(zip(pixels, ds.y.tolist(), strict=True)):
        folder = root / f"digit{label}"
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(img, mode="L").save(folder / f"{i:05d}.png")
    return time.perf_counter() - start


def kd_loss(s: torch.Tensor, t: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Hinton et al. (2015), as kdlens's kd: alpha CE + (1 - alpha) T^2 KL, batchmean."""
    soft = F.kl_div(
        F.log_softmax(s / T, -1), F.log_softmax(t / T, -1), reduction="batchmean", log_target=True
    )
    return ALPHA * F.cross_entropy(s, y) + (1 - ALPHA) * T * T * soft


def grey_loader(path: str):
    """Opens a PNG as 8-bit grey directly (ImageFolder's default loader converts to RGB)."""
    from PIL import Image

    with open(path, "rb") as f:
        return Image.open(f).convert("L")


def plain_epochs(root, teacher, student, norm, val_x, val_y, epochs, workers, grey) -> None:
    """The floor: what a user writes with torchvision alone; ``grey``: with grey_loader, else
    ImageFolder's default loader and a Grayscale transform."""
    from torchvision import datasets, transforms

    steps = [] if grey else [transforms.Grayscale()]
    tf = transforms.Compose(
        steps
        + [
            transforms.ToTensor(),
            transforms.Normalize(norm.mean.flatten().tolist(), norm.std.flatten().tolist()),
        ]
    )
    folder = datasets.ImageFolder(
        str(root), transform=tf, **({"loader": grey_loader} if grey else {})
    )
    data = torch.utils.data.DataLoader(
        folder,
        batch_size=BATCH,
        shuffle=True,
        num_workers=workers,
        persistent_workers=workers > 0,
    )
    opt = torch.optim.Adam(student.parameters(), lr=LR)
    teacher.eval()
    for _ in range(epochs):
        student.train()
        for x, y in data:
            with torch.no_grad():
                t = teacher(x)
            loss = kd_loss(student(x), t, y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        student.eval()
        with torch.no_grad():  # what fit() does after each epoch
            (student(norm(val_x)).argmax(-1) == val_y).float().mean()


def kdlens_epochs(x, y, teacher, student, norm, val_x, val_y, epochs) -> None:
    """kdlens's own loop: a BatchLoader (streaming when ``x`` is LazyRows), the kd Distiller,
    fit()."""
    distill = DistillConfig(method="kd", temperature=T, alpha=ALPHA, cache_teacher_logits=False)
    distiller = build_distiller(distill, student, teacher, tuple(x.shape[1:]))
    cfg = TrainConfig(epochs=epochs, batch_size=BATCH, lr=LR, schedule="constant")
    loader = BatchLoader(x, y, norm, BATCH, shuffle=True, num_classes=10, seed=0)
    fit(distiller, loader, BatchLoader(val_x, val_y, norm, 512), cfg)


def decode_costs(root: Path, n: int = 1000) -> dict[str, float]:
    """Microseconds of CPU per image, one process: kdlens's decode, and the plain arms' loader and
    transforms (without Normalize)."""
    from torchvision import transforms
    from torchvision.datasets.folder import default_loader

    from kdlens.data.images import decode_image

    files = sorted(root.rglob("*.png"))[:n]
    out = {}
    start = time.process_time()
    for f in files:
        decode_image(str(f), str(f), 1, (28, 28))
    out["kdlens_decode_us"] = 1e6 * (time.process_time() - start) / n
    tf = transforms.Compose([transforms.Grayscale(), transforms.ToTensor()])
    start = time.process_time()
    for f in files:
        tf(default_loader(str(f)))
    out["torchvision_default_loader_us"] = 1e6 * (time.process_time() - start) / n
    start = time.process_time()
    for f in files:
        transforms.functional.to_tensor(grey_loader(str(f)))
    out["torchvision_grey_loader_us"] = 1e6 * (time.process_time() - start) / n
    return out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--models", choices=sorted(MODELS), default="small")
    parser.add_argument("--out", default=None)
    args = parser.parse_args()
    torch.set_num_threads(1)
    out = args.out or f"benchmarks/results/streaming_throughput_{args.models}.json"

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "mnist5k_png"
        write_seconds = write_folder(root)
        start = time.perf_counter()
        loaded = create_dataset(f"imagefolder:{root}")
        load_seconds = time.perf_counter() - start
        start = time.perf_counter()
        streamed = create_dataset(f"imagefolder:{root}", max_memory_gb=1e-6, workers=args.workers)
        open_seconds = time.perf_counter() - start
        assert streamed.streaming and not loaded.streaming
        norm = Normalizer.fit(loaded.x)
        val = torch.randperm(len(loaded), generator=torch.Generator().manual_seed(1))[:VAL]
        val_x, val_y = loaded.x[val], loaded.y[val]
        (tname, targs), (sname, sargs) = MODELS[args.models]
        torch.manual_seed(0)
        teacher = create_model(tname, (1, 28, 28), 10, **targs).eval()

        arms = {
            "plain_imagefolder": lambda s: plain_epochs(
                root, teacher, s, norm, val_x, val_y, args.epochs, args.workers, False
            ),
            "plain_imagefolder_grey_loader": lambda s: plain_epochs(
                root, teacher, s, norm, val_x, val_y, args.epochs, args.workers, True
            ),
            "kdlens_streaming": lambda s: kdlens_epochs(
                streamed.x, streamed.y, teacher, s, norm, val_x, val_y, args.epochs
            ),
            "kdlens_in_memory": lambda s: kdlens_epochs(
                loaded.x, loaded.y, teacher, s, norm, val_x, val_y, args.epochs
            ),
        }
        walls: dict[str, list[float]] = {k: [] for k in arms}
        for r in range(args.repeats):
            order = list(arms) if r % 2 == 0 else list(reversed(arms))  # alternate
            for name in order:
                torch.manual_seed(r)
                student = create_model(sname, (1, 28, 28), 10, **sargs)
                start = time.perf_counter()
                arms[name](student)
                walls[name].append(time.perf_counter() - start)
        decode = decode_costs(root)

    images = 5000 * args.epochs
    med = {k: statistics.median(v) for k, v in walls.items()}
    rate = {k: images / v for k, v in med.items()}
    floor = max(rate["plain_imagefolder"], rate["plain_imagefolder_grey_loader"])  # the faster
    result = {
        "date": date.today().isoformat(),
        "models": {"teacher": [tname, targs], "student": [sname, sargs]},
        "workers": args.workers,
        "epochs_per_timing": args.epochs,
        "repeats": args.repeats,
        "clock": "wall time (workers decode in other processes), medians",
        "images_per_second": rate,
        "streaming_over_plain": rate["kdlens_streaming"] / floor,
        "in_memory_over_streaming": rate["kdlens_in_memory"] / rate["kdlens_streaming"],
        "decode_us_per_image": decode,
        "write_pngs_seconds": write_seconds,
        "load_in_memory_seconds": load_seconds,
        "open_streaming_seconds": open_seconds,
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "platform": platform.platform(),
        "wall_seconds": walls,
    }
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    Path(out).write_text(json.dumps(result, indent=2))
    for k, v in rate.items():
        print(f"{k:>29}: {v:8.0f} images/s (median of {args.repeats}, {images} images each)")
    print(f"streaming / faster plain      = {result['streaming_over_plain']:.2f}")
    print(f"in memory / streaming         = {result['in_memory_over_streaming']:.2f}")
    print(
        f"decode (us/image): kdlens {decode['kdlens_decode_us']:.0f}, torchvision default loader "
        f"{decode['torchvision_default_loader_us']:.0f}, grey loader "
        f"{decode['torchvision_grey_loader_us']:.0f}; load into memory {load_seconds:.1f} s, "
        f"open for streaming {open_seconds:.1f} s"
    )
    print(f"wrote {out}")


if __name__ == "__main__":
    np.seterr(all="ignore")
    main()
