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

TASKS = ("classify", "detect")


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
    if not isinstance(name, str) or not name.isidentifier():
        raise ValueError(f"dataset name must be an identifier, got {name!r}")
    if task not in TASKS:
        raise ValueError(f"dataset {name!r}: task must be one of {TASKS}, got {task!r}")

    def add(entry: DatasetEntry) -> None:
        old = _DATASETS.get(name)
        if old is not None and (old.task, old.num_classes, getattr(old.build, "__qualname__", None)) != (
                entry.task, entry.num_classes, getattr(entry.build, "__qualname__", None)):
            raise ValueError(f"dataset {name!r} is already registered")
        _DATASETS[name] = entry

    if task == "detect":
        if not isinstance(num_classes, int) or num_classes < 1:
            raise ValueError(f"detection dataset {name!r} needs num_classes >= 1, got {num_classes!r}")
        add(DatasetEntry(name, task, None, num_classes))
        return None

    def register(build: Callable) -> Callable:
        add(DatasetEntry(name, task, build, None))
        return build

    return register


def available_datasets(task: str | None = None) -> tuple[str, ...]:
    """Registered names (of one task, or all), in registration order."""
    return tuple(name for name, entry in _DATASETS.items() if task is None or entry.task == task)


def get_dataset(name: str) -> DatasetEntry:
    """The entry registered as ``name``."""
    try:
        return _DATASETS[name]
    except (KeyError, TypeError):
        raise ValueError(f"data.dataset must be one of {available_datasets()}, got {name!r}") from None


# detection sets: their mmdet configs are built by qbench.detection.datasets
register_dataset("voc", task="detect", num_classes=20)
register_dataset("fmnist_voc", task="detect", num_classes=10)
