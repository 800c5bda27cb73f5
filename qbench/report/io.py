"""Pipeline outputs (tables, figures, aggregates): the project's one atomic writer, ``qbench.io``."""

from __future__ import annotations

from qbench.io import read_json, save_figure, write_bytes, write_json, write_text

# the names the report modules use
write_bytes_atomic = write_bytes
write_text_atomic = write_text
write_json_atomic = write_json
save_figure_atomic = save_figure

__all__ = ["read_json", "save_figure_atomic", "write_bytes_atomic", "write_json_atomic", "write_text_atomic"]
