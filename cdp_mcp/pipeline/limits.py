"""The bounds a tool's arguments are held to: the orchestrator clamps to them and the tool
schemas state them (a module of its own, so the server lists its tools without importing
the orchestrator and the backends behind it)."""

from __future__ import annotations

MAX_WAIT_SECONDS = 600.0
MAX_QUERY_ROWS = 1_000
