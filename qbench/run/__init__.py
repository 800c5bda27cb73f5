"""What every run has, whatever its task: its device, its process group, its hard and soft
evaluation and its metrics record.

The classification trainer (``qbench.train.trainer``) and the detection runner
(``qbench.detection.runner``) both build on these; the run directory itself (file names,
adoption or resume check, lock, log, environment record) is ``qbench.io.rundir``,
``qbench.run_files`` and ``qbench.io.provenance``.
"""

from .device import resolve_device
from .evaluation import hard_and_soft
from .process import DistInfo, join_process_group, leave_process_group
from .record import metrics_record, peak_memory_mb

__all__ = ["DistInfo", "hard_and_soft", "join_process_group", "leave_process_group", "metrics_record",
           "peak_memory_mb", "resolve_device"]
