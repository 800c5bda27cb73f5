"""The one registry of datasets: ``@register_dataset(name)`` on a classification builder, and
``register_dataset(name, task="detect", num_classes=n)`` for a detection set.

A classification builder takes ``(root, image_size, in_channels, num_classes, train_size,
test_size, subset_seed, workers)`` and returns a ``DataBundle`` (``qbench.data.build_data``
calls it); a detection set's mmdet config is built by ``qbench.detection.datasets``. The
pipeline, the configs and the paper's cells read the names from here.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from qbench import registry


@dataclass(frozen=True)
class DatasetEntry:
    """One registered dataset: its name (``data.dataset``), task, builder (classification) and
    number of classes (detection; a classification set checks ``model.num_classes`` itself)."""

    name: str
    task: str
    build: Callable | None = None
    num_classes: int | None = None


_DATASETS: dict[str, DatasetEntry] = {}


def register_dataset(name: str, task: str = "classify", num_classes: int | None = None) -> Callable:
    """Register ``name``: as a decorator on a classification builder, or called with
    ``task="detect", num_classes=n`` for a detection set (returns None then)."""
    registry.check_name("dataset", name, task)
    if task == "detect":
        if not isinstance(num_classes, int) or num_classes < 1:
            raise ValueError(f"detection dataset {name!r} needs num_classes >= 1, got {num_classes!r}")
        registry.add(_DATASETS, "dataset", DatasetEntry(name, task, None, num_classes))
        return None

    def register(build: Callable) -> Callable:
        registry.add(_DATASETS, "dataset", DatasetEntry(name, task, build, None))
        return build

    return register


def available_datasets(task: str | None = None) -> tuple[str, ...]:
    """Registered names (of one task, or all), in registration order."""
    return registry.names(_DATASETS, task)


def get_dataset(name: str) -> DatasetEntry:
    """The entry registered as ``name``."""
    return registry.lookup(_DATASETS, "data.dataset", name)


# detection sets: their mmdet configs are built by qbench.detection.datasets
register_dataset("voc", task="detect", num_classes=20)
register_dataset("fmnist_voc", task="detect", num_classes=10)
