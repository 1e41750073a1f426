"""What a search varies: ``--space KEY=SPEC`` (a tune) and ``--grid KEY=V1,V2`` (a sweep), parsed,
checked against :class:`kdlens.config.RunConfig` before anything runs, and applied to a config.

SPEC is ``float:LOW:HIGH``, ``log:LOW:HIGH`` (a float drawn on a log scale), ``int:LOW:HIGH``
or ``choice:V1,V2,...`` (values read as YAML).
"""

from __future__ import annotations

import copy
import json
from dataclasses import dataclass
from typing import Any

import yaml

from kdlens.config import RunConfig, config_from_dict, set_value
from kdlens.errors import ConfigError

KINDS = ("float", "log", "int", "choice")
# Set by the search itself, never searched: the seed (--seeds) and the shared teacher.
RESERVED = ("seed", "teacher.checkpoint")
Scalar = str | int | float | bool | None


@dataclass(frozen=True)
class Param:
    """One searched config field: a range (``float``, ``log``, ``int``) or a list of values."""

    key: str
    kind: str
    low: float | None = None
    high: float | None = None
    choices: tuple[Scalar, ...] = ()

    @property
    def spec(self) -> str:
        """The canonical SPEC text (recorded in the study: a rerun must search the same space)."""
        if self.kind == "choice":
            return "choice:" + ",".join(json.dumps(c) for c in self.choices)
        return f"{self.kind}:{self.low!r}:{self.high!r}"

    def distribution(self):
        """The Optuna distribution of this parameter."""
        from optuna.distributions import (
            CategoricalDistribution,
            FloatDistribution,
            IntDistribution,
        )

        if self.kind == "choice":
            return CategoricalDistribution(list(self.choices))
        if self.kind == "int":
            return IntDistribution(int(self.low), int(self.high))
        return FloatDistribution(self.low, self.high, log=self.kind == "log")

    def suggest(self, trial) -> Scalar:
        """This parameter's value for an Optuna trial (a fixed one when the trial was enqueued)."""
        if self.kind == "choice":
            return trial.suggest_categorical(self.key, list(self.choices))
        if self.kind == "int":
            return trial.suggest_int(self.key, int(self.low), int(self.high))
        return trial.suggest_float(self.key, self.low, self.high, log=self.kind == "log")

    def probes(self) -> list[Scalar]:
        """Values whose configs must all be valid: both bounds and a value between them (so a
        float range on an integer field is caught), or every choice."""
        if self.kind == "choice":
            return list(self.choices)
        if self.kind == "int":
            return [int(self.low), int(self.high)]
        inside = self.low * (self.high / self.low) ** 0.37 if self.kind == "log" else None
        inside = inside if inside is not None else self.low + 0.37 * (self.high - self.low)
        return [self.low, self.high, inside]


def _split(item: str, flag: str, form: str) -> tuple[str, str]:
    if "=" not in item:
        raise ConfigError(f"{flag} {item!r}: expected {form}")
    key, raw = (s.strip() for s in item.split("=", 1))
    if not key or not raw:
        raise ConfigError(f"{flag} {item!r}: expected {form}")
    if key in RESERVED:
        raise ConfigError(f"{flag} {key}: set by the search itself (use --seeds)")
    return key, raw


def _values(text: str, where: str) -> tuple[Scalar, ...]:
    """``a,b,1`` -> ("a", "b", 1): YAML scalars; an empty or non-scalar value is refused."""
    values = []
    for part in text.split(","):
        if not part.strip():
            raise ConfigError(f"{where}: an empty value (two commas, or one at an end)")
        try:
            value = yaml.safe_load(part)
        except yaml.YAMLError:
            raise ConfigError(f"{where}: {part.strip()!r} is not valid YAML") from None
        if not isinstance(value, str | int | float | bool | type(None)):
            raise ConfigError(
                f"{where}: {part.strip()!r} is a {type(value).__name__}; a searched value must "
                "be a number, a string, true/false or null"
            )
        values.append(value)
    if len(set(map(json.dumps, values))) < len(values):
        raise ConfigError(f"{where}: a value is given twice")
    return tuple(values)


def _number(text: str, where: str, integer: bool) -> float:
    try:
        value = yaml.safe_load(text)
        if isinstance(value, bool) or not isinstance(value, int | float):
            value = float(text)  # YAML reads 1e-3 as a string; Python does not
    except (yaml.YAMLError, ValueError):
        raise ConfigError(f"{where}: {text!r} is not a number") from None
    if integer and value != int(value):
        raise ConfigError(f"{where}: {text!r} is not an integer")
    return int(value) if integer else float(value)


def parse_param(item: str) -> Param:
    """``distill.temperature=log:1:32`` -> Param; a malformed SPEC is one line naming it."""
    key, spec = _split(item, "--space", "KEY=SPEC (SPEC: float:LOW:HIGH, log:LOW:HIGH, ...)")
    return param_from_spec(key, spec, f"--space {item!r}")


def param_from_spec(key: str, spec: str, where: str = "") -> Param:
    """``("distill.alpha", "float:0:1")`` -> Param (also how a worker reads a study's space)."""
    where = where or f"{key}={spec}"
    kind, _, rest = spec.partition(":")
    if kind not in KINDS:
        raise ConfigError(f"{where}: unknown kind {kind!r} (known: {', '.join(KINDS)})")
    if kind == "choice":
        if not rest.strip():
            raise ConfigError(f"{where}: choice needs at least one value, e.g. choice:kd,dkd")
        return Param(key, kind, choices=_values(rest, where))
    bounds = rest.split(":")
    if len(bounds) != 2:
        raise ConfigError(f"{where}: expected {kind}:LOW:HIGH")
    low, high = (_number(b.strip(), where, kind == "int") for b in bounds)
    if low >= high:
        raise ConfigError(f"{where}: LOW must be below HIGH")
    if kind == "log" and low <= 0:
        raise ConfigError(f"{where}: a log scale needs bounds above 0")
    return Param(key, kind, low=low, high=high)


def parse_space(items: list[str]) -> dict[str, Param]:
    """Every ``--space`` item, by key; at least one, each key once."""
    space: dict[str, Param] = {}
    for item in items:
        param = parse_param(item)
        if param.key in space:
            raise ConfigError(f"--space {param.key}: given twice")
        space[param.key] = param
    if not space:
        raise ConfigError("tune: give at least one --space KEY=SPEC")
    return space


def parse_grid(items: list[str]) -> dict[str, list[Scalar]]:
    """``["distill.method=kd,dkd", "distill.alpha=0,0.5"]`` -> {key: [values]}; values are YAML."""
    grid: dict[str, list[Scalar]] = {}
    for item in items:
        key, raw = _split(item, "--grid", "KEY=v1,v2,...")
        if key in grid:
            raise ConfigError(f"--grid {key}: given twice")
        grid[key] = list(_values(raw, f"--grid {item!r}"))
    if not grid:
        raise ConfigError("sweep: give at least one --grid KEY=v1,v2,...")
    return grid


def grid_space(grid: dict[str, list[Scalar]]) -> dict[str, Param]:
    """A grid as a space of choices (what the study records and the trials suggest)."""
    return {key: Param(key, "choice", choices=tuple(values)) for key, values in grid.items()}


def with_values(base: RunConfig, values: dict[str, Any], where: str = "") -> RunConfig:
    """``base`` with each dotted key set to its value; a value the config refuses is one line."""
    raw = copy.deepcopy(base.model_dump(mode="json"))
    for key, value in values.items():
        set_value(raw, key, value)
    try:
        return config_from_dict(raw)
    except ConfigError as e:
        raise ConfigError(f"{where}{e}") from None


def check_space(base: RunConfig, space: dict[str, Param], flag: str = "--space") -> None:
    """Every probe value of every parameter gives a valid config (unknown keys, values out of a
    field's range or of the wrong type are refused before anything runs)."""
    for param in space.values():
        for value in param.probes():
            with_values(base, {param.key: value}, f"{flag} {param.key}={value!r}: ")
