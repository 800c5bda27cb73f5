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

from qbench import registry
from qbench.registry import TASKS  # noqa: F401  (the tasks a model serves)

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
    registry.check_name("model", name, task)

    def register(build: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        registry.add(_MODELS, "model", ModelEntry(name, task, build))
        return build

    return register


def available_models(task: str | None = None) -> tuple[str, ...]:
    """Registered names (of one task, or all), in registration order."""
    return registry.names(_MODELS, task)


def get_model(name: str) -> ModelEntry:
    """The entry registered as ``name``."""
    return registry.lookup(_MODELS, "model.arch", name)
