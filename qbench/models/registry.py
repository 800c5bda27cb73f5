"""The one registry of architectures: ``@register_model(name, task=...)`` on a builder.

A classification builder takes ``(num_classes, in_channels, width, stem)`` and returns a
randomly initialised ``nn.Module`` (``qbench.models.build_model`` checks those arguments once
for every architecture); a detection builder takes the run's ``DetectRunConfig``. The pipeline,
the configs, the paper's cells and the report read the names from here.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from torch import nn

TASKS = ("classify", "detect")
# the first conv of a classification builder (``qbench.models.build_model``)
STEMS = ("imagenet", "small")


@dataclass(frozen=True)
class ModelEntry:
    """One registered architecture: its name (``model.arch``), task and builder."""

    name: str
    task: str
    build: Callable[..., nn.Module]


_MODELS: dict[str, ModelEntry] = {}


def register_model(name: str, task: str = "classify") -> Callable[[Callable[..., nn.Module]], Callable[..., nn.Module]]:
    """Decorator: register a builder as architecture ``name`` of ``task``."""
    if not isinstance(name, str) or not name.isidentifier():
        raise ValueError(f"model name must be an identifier, got {name!r}")
    if task not in TASKS:
        raise ValueError(f"model {name!r}: task must be one of {TASKS}, got {task!r}")

    def register(build: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        old = _MODELS.get(name)
        if old is not None and old.build.__qualname__ != build.__qualname__:
            raise ValueError(f"model {name!r} is already registered ({old.build.__module__}.{old.build.__qualname__})")
        _MODELS[name] = ModelEntry(name, task, build)
        return build

    return register


def available_models(task: str | None = None) -> tuple[str, ...]:
    """Registered names (of one task, or all), in registration order."""
    return tuple(name for name, entry in _MODELS.items() if task is None or entry.task == task)


def get_model(name: str) -> ModelEntry:
    """The entry registered as ``name``."""
    try:
        return _MODELS[name]
    except (KeyError, TypeError):
        raise ValueError(f"model.arch must be one of {available_models()}, got {name!r}") from None
