"""Checks a model factory makes of the data it is built for (no registry: any module may use them)."""

from __future__ import annotations

from kdlens.errors import ConfigError


def require_image(name: str, input_shape: tuple[int, ...]) -> None:
    if len(input_shape) != 3:
        raise ConfigError(
            f"model {name!r} needs image input (C, H, W), but the data has shape {tuple(input_shape)}"
        )


def positive_widths(model: str, arg: str, values) -> list[int]:
    """``values`` as a list of layer widths, each a positive integer, or a one-line ConfigError."""
    if isinstance(values, (int, float, str, bool)) or values is None:
        raise ConfigError(f"model {model!r}: {arg} must be a list of layer widths (got {values!r})")
    widths = list(values)
    if any(isinstance(w, bool) or not isinstance(w, int) or w < 1 for w in widths):
        raise ConfigError(
            f"model {model!r}: every {arg} width must be a positive integer (got {widths})"
        )
    return widths
