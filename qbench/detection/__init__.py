"""Table 4: SSD300-VGG16 with mmdet + mmengine (qbench train for ``task: detect``)."""
