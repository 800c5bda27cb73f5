"""Classification training: config, trainer, run-directory files."""

from .config import Config, ConfigError, load_raw, set_dotted
from .trainer import TrainingError, evaluate, lr_at, run

__all__ = ["Config", "ConfigError", "TrainingError", "evaluate", "load_raw", "lr_at", "run", "set_dotted"]
