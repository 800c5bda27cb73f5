"""The files of a run directory, named once: the classification trainer and the detection
runner write them, the FP cache copies them, the report and the pipeline's rules read them."""

CONFIG = "config.yaml"  # the resolved run config
ENV = "env.json"  # versions, device, seed, world size
CHECKPOINT = "checkpoint.pt"  # the resumable training state
EXPORT = "model_hard.pt"  # the quantized model as integer codes (QuantMethod.export)
PREDICTIONS = "predictions.npz"  # per-image predictions of the final evaluation (the claims' intervals)
MAP_PSEUDO = "map_pseudo.npz"  # detection: per-scene jackknife pseudo-values of the mAP
LOG = "train.log"
METRICS = "metrics.json"  # written last: its presence marks a finished run
INPUTS = "inputs.json"  # the pipeline's record of a run's inputs (qbench.workflow.run_inputs)
DATA_FILES = "data_files.json"  # the data files a run read, checked when it resumes

# what a run writes; the cache copies them in this order, so a copy is complete once METRICS is there
CACHED = (CONFIG, ENV, CHECKPOINT, EXPORT, PREDICTIONS, MAP_PSEUDO, LOG, METRICS)
# the names a run directory holds (the sweep of stale temporary files recognises theirs)
RUN_DIR = (CONFIG, ENV, CHECKPOINT, EXPORT, PREDICTIONS, LOG, METRICS, INPUTS, DATA_FILES)
