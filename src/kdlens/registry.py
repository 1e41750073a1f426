"""A tiny name -> factory registry, shared by datasets, models and distillation methods."""

from __future__ import annotations

import difflib
import fnmatch
import re
from collections.abc import Callable
from typing import Generic, TypeVar

from kdlens.errors import ConfigError

T = TypeVar("T")


class Registry(Generic[T]):
    """Explicit name -> factory map; loud on duplicates and on unknown names."""

    def __init__(self, kind: str):
        self.kind = kind
        self._factories: dict[str, Callable[..., T]] = {}
        self._help: dict[str, str] = {}

    def register(self, name: str, help: str = "") -> Callable[[Callable[..., T]], Callable[..., T]]:
        def decorator(factory: Callable[..., T]) -> Callable[..., T]:
            if name in self._factories:
                raise ValueError(f"{self.kind} {name!r} is already registered")
            self._factories[name] = factory
            self._help[name] = help or plain_text(first_paragraph(factory.__doc__ or ""))
            return factory

        return decorator

    def get(self, name: str) -> Callable[..., T]:
        if name not in self._factories:
            raise ConfigError(self.unknown_message(name))
        return self._factories[name]

    def unknown_message(self, name: str) -> str:
        close = difflib.get_close_matches(name, list(self._factories), n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        return f"unknown {self.kind} {name!r}{hint} (known: {', '.join(sorted(self._factories))})"

    def names(self, pattern: str = "*") -> list[str]:
        return sorted(n for n in self._factories if fnmatch.fnmatch(n, pattern))

    def describe(self) -> dict[str, str]:
        return {n: self._help[n] for n in self.names()}

    def __contains__(self, name: str) -> bool:
        return name in self._factories


def first_paragraph(doc: str) -> str:
    """A docstring's first paragraph on one line: what ``kdlens list`` shows for an entry."""
    return " ".join(doc.strip().split("\n\n")[0].split())


def plain_text(text: str) -> str:
    """reST inline markup removed: ``x``, `x` and :role:`x` become x (descriptions are read in a
    terminal, not rendered)."""
    text = re.sub(r":[\w.-]+:`~?([^`]*)`", r"\1", text)
    return re.sub(r"`+([^`]*)`+", r"\1", text)
