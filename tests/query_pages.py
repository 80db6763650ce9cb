"""Every row of a read-only query through the pipeline's `query` (the tool's own path, on
either backend), page after page as its next_action would read them."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import anyio

from cdp_mcp.pipeline.orchestrator import Pipeline


def all_rows(config: Path, sql: str) -> list[list[Any]]:
    async def read() -> list[list[Any]]:
        p = Pipeline(config)
        rows: list[list[Any]] = []
        try:
            while True:
                page = await p.query(sql, limit=1_000, offset=len(rows))
                rows += page.rows
                if not page.truncated:
                    return rows
        finally:
            await p.aclose()

    return anyio.run(read)
