"""Table 4: SSD300-VGG16 with mmdet + mmengine (qbench train for ``task: detect``)."""

# a detection run's grouped-jackknife pseudo-values of its hard mAP (qbench.detection.evaluate),
# read by the claims for the mAP's test-sampling error
MAP_PSEUDO_FILE = "map_pseudo.npz"
