"""Datasets for the classification runs: Fashion-MNIST (mini/smoke), ImageNet (paper), fake (tests)."""

from .common import DataBundle, DatasetError, stratified_subset
from .loaders import DATASETS, build_data
from .fashion_mnist import find_fashion_mnist, read_idx

__all__ = ["DATASETS", "DataBundle", "DatasetError", "build_data", "find_fashion_mnist", "read_idx",
           "stratified_subset"]
