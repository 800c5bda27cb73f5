"""qbench: a reproducibility benchmark suite for *Quantization Networks* (Yang et al., CVPR 2019)."""

__version__ = "0.1.0"
