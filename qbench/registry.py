"""What the name registries (models, datasets) share: a name per task in a dict, checked the
same way. Each registry keeps its own dict of entries (``name``, ``task``, ``build``, ...) and
calls these with it."""

from __future__ import annotations

from typing import Any

TASKS = ("classify", "detect")


def check_name(kind: str, name: Any, task: str) -> None:
    """ValueError unless ``name`` is an identifier and ``task`` one of ``TASKS``."""
    if not isinstance(name, str) or not name.isidentifier():
        raise ValueError(f"{kind} name must be an identifier, got {name!r}")
    if task not in TASKS:
        raise ValueError(f"{kind} {name!r}: task must be one of {TASKS}, got {task!r}")


def _identity(entry: Any) -> tuple:
    # a module imported again registers the same entry again; anything else is a second entry
    build = getattr(entry, "build", None)
    return entry.task, getattr(entry, "num_classes", None), getattr(build, "__qualname__", None)


def add(entries: dict, kind: str, entry: Any) -> None:
    """Store ``entry`` under its name; ValueError when the name holds another entry."""
    old = entries.get(entry.name)
    if old is not None and _identity(old) != _identity(entry):
        where = f" ({old.build.__module__}.{old.build.__qualname__})" if getattr(old, "build", None) else ""
        raise ValueError(f"{kind} {entry.name!r} is already registered{where}")
    entries[entry.name] = entry


def names(entries: dict, task: str | None = None) -> tuple[str, ...]:
    """Registered names (of one task, or all), in registration order."""
    return tuple(name for name, entry in entries.items() if task is None or entry.task == task)


def lookup(entries: dict, key: str, name: Any) -> Any:
    """The entry registered as ``name``; ValueError naming the config ``key`` and the choices."""
    try:
        return entries[name]
    except (KeyError, TypeError):
        raise ValueError(f"{key} must be one of {names(entries)}, got {name!r}") from None
