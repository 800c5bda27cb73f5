"""The error of a bad config, raised by every task's config and by the device preflight."""

from __future__ import annotations


class ConfigError(ValueError):
    """A config key is unknown or its value is impossible: ``ConfigError(key, problem)`` reads
    ``<key>: <problem>`` and keeps both (the pipeline names the scale key that set ``key``);
    ``ConfigError(message)`` is an error of no single key."""

    def __init__(self, key: str, problem: str | None = None) -> None:
        super().__init__(key if problem is None else f"{key}: {problem}")
        self.key, self.problem = (None, key) if problem is None else (key, problem)
