"""The order a reader meets models in: by their records, never by their names."""

from __future__ import annotations

from typing import Any

ROLES = ("teacher", "student", "readable", "deployed")


def reading_order(models: dict[str, dict[str, Any]]) -> list[str]:
    """Model names by record: teacher, students, each readable family (in the order the run made
    them), deployed models; within a group the distilled model before its hard-label twin. Models
    without a role keep their order, last."""
    families = list(dict.fromkeys(m.get("family") for m in models.values()))

    def key(item: tuple[int, tuple[str, dict[str, Any]]]) -> tuple:
        i, (_, m) = item
        role = m.get("role")
        rank = ROLES.index(role) if role in ROLES else len(ROLES)
        family = families.index(m.get("family")) if role == "readable" else 0
        return (rank, family, m.get("trained_with") == "labels", i)

    return [name for _, (name, _) in sorted(enumerate(models.items()), key=key)]


def summary_rows(models: dict[str, dict[str, Any]]) -> list[tuple[str, dict[str, Any]]]:
    """The summary table's rows in :func:`reading_order`; a model this run did not train (a
    loaded teacher, an int8 copy: 0 seconds) shows no training time rather than 0."""
    return [
        (n, {**models[n], "train_seconds": models[n].get("train_seconds") or None})
        for n in reading_order(models)
    ]


def ordered_items(d: dict[str, Any], models: dict[str, dict[str, Any]]) -> list[tuple[str, Any]]:
    """``d``'s items with its models in :func:`reading_order`, any others after them."""
    order = [n for n in reading_order(models) if n in d]
    return [(n, d[n]) for n in order + [n for n in d if n not in order]]
