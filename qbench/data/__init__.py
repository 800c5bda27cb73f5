"""Datasets, one registry (``registry.register_dataset``): Fashion-MNIST (mini/smoke), ImageNet
(paper), fake (tests) for classification; VOC and the generated fmnist_voc scenes for detection.

A new classification dataset is one module with a ``@register_dataset`` builder plus its import
below (docs/extending.md)."""

from .common import DataBundle, DatasetError, stratified_subset
from .loaders import build_data
from .fashion_mnist import find_fashion_mnist, read_idx
from .registry import DatasetEntry, available_datasets, get_dataset, register_dataset

__all__ = ["DataBundle", "DatasetEntry", "DatasetError", "available_datasets", "build_data", "find_fashion_mnist",
           "get_dataset", "read_idx", "register_dataset", "stratified_subset"]
