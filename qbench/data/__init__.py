"""Datasets for the classification runs: Fashion-MNIST (mini/smoke), ImageNet (paper), fake (tests)."""

from .common import DataBundle, DatasetError, stratified_subset
from .loaders import build_data
from .fashion_mnist import find_fashion_mnist, read_idx
from .registry import DATASETS, DATASETS_BY_TASK, DETECTION_DATASETS, DETECTION_NUM_CLASSES

__all__ = ["DATASETS", "DATASETS_BY_TASK", "DETECTION_DATASETS", "DETECTION_NUM_CLASSES", "DataBundle",
           "DatasetError", "build_data", "find_fashion_mnist", "read_idx", "stratified_subset"]
