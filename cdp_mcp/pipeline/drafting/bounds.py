"""The sample's bounds: the tools' schemas state them, so the server reads them at startup
(a module of its own, free of DuckDB)."""

from __future__ import annotations

DEFAULT_SAMPLE_ROWS = 5_000
MAX_SAMPLE_ROWS = 100_000
