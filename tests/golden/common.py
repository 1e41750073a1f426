"""Fixed inputs shared by the golden scripts (which run a peer's code) and tests/test_golden.py.

Only kdlens-independent tensor code lives here: no peer is imported, and kdlens's tests import it
to rebuild exactly the inputs a script gave the peer.
"""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent
B, K = 8, 10  # examples, classes
D_S, D_T = 12, 20  # student and teacher feature widths

# Peers, as fetched (github:<repo>); the commit is recorded in every JSON written.
PEERS = {
    "mdistiller": "megvii-research/mdistiller",
    "torchdistill": "yoshitomo-matsubara/torchdistill",
    "sun": "sunshangquan/logit-standardization-KD",
    "ctkd": "zhengli97/CTKD",
    "huang": "hunto/image_classification_sota",
    "repdistiller": "HobbitLong/RepDistiller",
}


def logits(seed: int = 0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Student logits (leaf, requires grad), teacher logits and labels; float64, spread ~N(0, 3)."""
    g = torch.Generator().manual_seed(seed)
    student = (3 * torch.randn(B, K, generator=g, dtype=torch.float64)).requires_grad_()
    teacher = 3 * torch.randn(B, K, generator=g, dtype=torch.float64)
    labels = torch.randint(0, K, (B,), generator=g)
    return student, teacher, labels


def features(
    seed: int = 0, student_shape: tuple[int, ...] = (D_S,), teacher_shape: tuple[int, ...] = (D_T,)
) -> tuple[torch.Tensor, torch.Tensor]:
    """Student features (leaf, requires grad) and teacher features, float64, (B, *shape)."""
    g = torch.Generator().manual_seed(seed)
    student = torch.randn(B, *student_shape, generator=g, dtype=torch.float64).requires_grad_()
    teacher = torch.randn(B, *teacher_shape, generator=g, dtype=torch.float64)
    return student, teacher


def result(loss: torch.Tensor, *leaves: torch.Tensor) -> dict:
    """The loss and its gradient w.r.t. each leaf (flattened), as plain floats."""
    grads = torch.autograd.grad(loss, leaves)
    return {"loss": float(loss.detach()), "grads": [g.detach().flatten().tolist() for g in grads]}


def _commit(checkout: Path) -> str:
    marker = checkout / "COMMIT"
    if marker.exists():
        return marker.read_text().strip()
    out = subprocess.run(
        ["git", "-C", str(checkout), "rev-parse", "HEAD"], capture_output=True, text=True
    )
    return out.stdout.strip() or "unknown"


def write(name: str, peer: str, checkout: str, cases: dict[str, dict], note: str = "") -> Path:
    """tests/golden/<name>.json: the peer, its commit, and each case's loss and gradients."""
    path = HERE / f"{name}.json"
    payload = {
        "peer": PEERS[peer],
        "commit": _commit(Path(checkout)),
        "script": f"tests/golden/{name}.py",
        "torch": torch.__version__,
        "note": note,
        "cases": cases,
    }
    text = json.dumps(payload, indent=1)
    text = re.sub(r"\[\s+([^\[\]{}]*?)\s+\]", lambda m: "[" + re.sub(r"\s+", " ", m[1]) + "]", text)
    path.write_text(text + "\n")
    return path


def load(name: str) -> dict:
    return json.loads((HERE / f"{name}.json").read_text())


def peer_checkout(peer: str) -> str:
    """Where the peer's checkout is: $KDLENS_PEERS/<name> (default /work/peers/<name>)."""
    import os

    root = Path(os.environ.get("KDLENS_PEERS", "/work/peers"))
    folder = {"sun": "logit-standardization-KD", "ctkd": "CTKD", "huang": "image_classification_sota",
              "repdistiller": "RepDistiller"}.get(peer, peer)  # fmt: skip
    return str(root / folder)
