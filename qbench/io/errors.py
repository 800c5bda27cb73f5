"""The errors of qbench's file layer: each message names the file and what to do."""

from __future__ import annotations


class FileFormatError(ValueError):
    """A file cannot be read as what it should be; the message names it and what to do."""


class DiskFullError(OSError):
    """No space (or quota) left where a file was being written; the old file is intact."""


class RunDirError(ValueError):
    """A run directory cannot be used: held by another job, not writable, damaged."""
