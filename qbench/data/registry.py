"""The one list of datasets, per task (the pipeline, the configs and the paper's cells read it)."""

from __future__ import annotations

DATASETS = ("fashion_mnist", "imagenet", "fake")  # classification, loaded by qbench.data.build_data
# detection sets (qbench.detection.datasets) and their number of classes
DETECTION_NUM_CLASSES = {"voc": 20, "fmnist_voc": 10}
DETECTION_DATASETS = tuple(DETECTION_NUM_CLASSES)
DATASETS_BY_TASK = {"classify": DATASETS, "detect": DETECTION_DATASETS}
