"""Saving and loading weights as tensors only: safetensors, or ``torch.load(weights_only=True)``.

Below every part that reads or writes weights (models, run, deploy), so it imports none of them.
"""

from __future__ import annotations

import copy
import io
import pickle
import re
import warnings
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save
from torch import nn

from kdlens.errors import CheckpointError
from kdlens.utils import write_bytes_atomic


def save_weights(model: nn.Module, path: str | Path) -> None:
    """Write ``model``'s state dict to ``path`` (safetensors), atomically."""
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    write_bytes_atomic(path, save(state))


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """Tensors from a .safetensors file or a PyTorch file holding a state dict; never runs code."""
    p = _existing_file(path)
    if p.suffix == ".safetensors":
        try:
            return load_file(str(p))
        except (SafetensorError, OSError, ValueError) as e:
            raise CheckpointError(f"checkpoint {p} is corrupt or truncated ({e})") from None
    obj = torch_load_safely(p)
    for key in ("state_dict", "model_state_dict", "model"):
        if isinstance(obj, dict) and isinstance(obj.get(key), dict):
            obj = obj[key]
            break
    if not isinstance(obj, dict) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise CheckpointError(f"checkpoint {p} does not hold a state dict of tensors")
    return obj


def torch_load_safely(path: str | Path):
    """``torch.load(weights_only=True)``: tensors and plain values only; a pickle that would
    import or call anything is refused with a :class:`CheckpointError`."""
    p = _existing_file(path)
    try:
        # A corrupt file can make torch warn about its "pickle protocol" before failing: the
        # one-line error below says it better, so the warning stays off the user's terminal.
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            return torch.load(p, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        raise CheckpointError(_refusal(p, str(e))) from None
    except (RuntimeError, EOFError, OSError, ValueError, KeyError, IndexError) as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        first = first.split(". ")[0]  # torch appends paragraphs of advice
        raise CheckpointError(f"checkpoint {p} is corrupt or truncated ({first})") from None


def _existing_file(path: str | Path) -> Path:
    p = Path(path)
    if p.is_dir():
        raise CheckpointError(f"checkpoint {p} is a folder, not a weights file")
    if not p.is_file():
        raise CheckpointError(f"checkpoint not found: {p}")
    return p


def _refusal(path: Path, error: str) -> str:
    """torch's weights-only error is a page of advice; keep what names the problem."""
    found = re.search(r"Unsupported global: GLOBAL (\S+)", error)
    if found:
        return (
            f"checkpoint {path} was refused: loading it would run code ({found.group(1)}); "
            "only tensors and plain values are loaded"
        )
    found = re.search(r"Unsupported operand \d+", error)
    detail = found.group(0).lower() if found else "not a weights-only file"
    return f"checkpoint {path} is corrupt, truncated or not a plain tensor file; it was not loaded ({detail})"


def load_weights(model: nn.Module, path: str | Path, num_classes: int | None = None) -> nn.Module:
    """Load ``path`` into ``model``; a checkpoint of another architecture or class count is refused."""
    state = read_state_dict(path)
    for key, value in state.items():
        if value.is_floating_point() and not torch.isfinite(value).all():
            raise CheckpointError(f"checkpoint {path} holds NaN or infinite values (in {key})")
    expected = model.state_dict()
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    if missing or unexpected:
        what = f"missing {missing[:3]}" if missing else f"unexpected {unexpected[:3]}"
        raise CheckpointError(f"checkpoint {path} is for another architecture ({what} parameters)")
    keys = list(expected)
    for key in keys:
        if state[key].shape != expected[key].shape:
            if num_classes is not None and _is_output_layer(key, keys, expected):
                raise CheckpointError(
                    f"checkpoint {path} predicts {state[key].shape[0]} classes but the data has {num_classes}"
                )
            if key == next(k for k in keys if k.endswith(".weight")):
                raise CheckpointError(
                    f"checkpoint {path} was made for inputs of another shape: its first layer "
                    f"{key} is {tuple(state[key].shape)}, this data needs {tuple(expected[key].shape)}"
                )
            raise CheckpointError(
                f"checkpoint {path}: {key} has shape {tuple(state[key].shape)}, "
                f"the model expects {tuple(expected[key].shape)}"
            )
    model.load_state_dict(state)
    return model


def _is_output_layer(key: str, keys: list[str], expected: dict[str, torch.Tensor]) -> bool:
    """The last weight/bias pair of the model is its classifier."""
    params = [k for k in keys if k.endswith((".weight", ".bias")) and expected[k].ndim >= 1]
    return key in params[-2:]


# -- int8 students (PyTorch dynamic quantization) ------------------------------------------------


def quantize_dynamic_int8(model: nn.Module) -> nn.Module:
    """A CPU copy of ``model`` with every ``nn.Linear`` replaced by a dynamic int8 one."""
    float_model = copy.deepcopy(model).cpu().eval()
    with warnings.catch_warnings():
        # torch.ao.quantization warns on every call that it moves to torchao; eager dynamic
        # quantization still works and needs no other package.
        warnings.simplefilter("ignore")
        return torch.ao.quantization.quantize_dynamic(float_model, {nn.Linear}, dtype=torch.qint8)


def save_dynamic_int8(model: nn.Module, path: str | Path) -> None:
    """Packed int8 weights are not plain tensors, so this is a ``torch.save`` state dict."""
    buffer = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # quantized tensors still go through TypedStorage
        torch.save(model.state_dict(), buffer)
    write_bytes_atomic(path, buffer.getvalue())


def load_dynamic_int8(float_model: nn.Module, path: str | Path) -> nn.Module:
    """Rebuild a dynamic int8 model from its float architecture and a saved state dict."""
    model = quantize_dynamic_int8(float_model)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            state = torch.load(path, map_location="cpu", weights_only=True)
        model.load_state_dict(state)
    except Exception as e:  # weights_only refuses anything that could run code
        first = (str(e).strip().splitlines() or ["unreadable"])[0]
        raise CheckpointError(f"int8 checkpoint {path} cannot be loaded ({first})") from None
    return model.eval()
