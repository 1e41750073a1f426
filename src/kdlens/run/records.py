"""What each model of a run is, in fields rather than in its name.

Stages add a :class:`ModelRecord` for every model they make; the report, deploy, sweeps and
``load_run`` select models by ``role``, ``family``, ``trained_with`` and ``derived_from``, and
rebuild them from ``spec``. The records are saved as ``models.json`` in the run folder.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any, Literal

Role = Literal["teacher", "student", "readable", "deployed"]
Source = Literal["trained", "loaded", "fitted", "derived"]


@dataclass
class ModelRecord:
    """One model of a run.

    ``role``: teacher, student (the core scratch/kd pair), readable (soft trees, surrogates) or
    deployed (pruned and int8 copies). ``family``: the architecture (``cnn``, ``mlp``,
    ``soft_tree``, ``tree``...). ``trained_with``: ``teacher`` (distilled) or ``labels`` (its
    hard-label twin); None for the teacher and for derived models. ``twin``: the model it is
    judged against (a distilled model's hard-label twin, a deployed model's source).
    ``spec``: ``{"model": ..., "model_args": ...}`` to rebuild a torch model, None otherwise.
    ``weights``: its file relative to the run folder; ``format``: how that file is read.
    """

    name: str
    role: Role
    family: str
    trained_with: Literal["teacher", "labels"] | None = None
    derived_from: str | None = None
    twin: str | None = None
    spec: dict[str, Any] | None = None
    weights: str | None = None
    format: Literal["safetensors", "torch_int8", "onnx"] | None = None
    source: Source = "trained"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ModelRecord:
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})

    def summary(self) -> dict[str, Any]:
        """The fields metrics.json carries for each model."""
        return {
            "role": self.role,
            "family": self.family,
            "trained_with": self.trained_with,
            "derived_from": self.derived_from,
            "twin": self.twin,
        }


def family_of(spec: dict[str, Any] | None) -> str:
    """``cnn`` for ``{"model": "cnn"}``, ``timm`` for ``timm:resnet18``, ``import`` for factories."""
    if not spec:
        return "unknown"
    name = str(spec.get("model", "unknown"))
    return name.split(":", 1)[0]


def select(records: dict[str, ModelRecord], **wanted: Any) -> list[str]:
    """Names of the records whose fields equal every ``wanted`` value, in insertion order."""
    return [
        name
        for name, r in records.items()
        if all(getattr(r, key) == value for key, value in wanted.items())
    ]
