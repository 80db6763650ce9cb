"""Extension points of the local backend that other packages fill in.

ID unification on TD is an HTTP call to `https://api-cdp.<site>/unifications/workflow_call`
made by the generated `id_unification.dig`. Locally, `http_call>` hands that call to the
handler registered with `LocalBackend.set_unification_handler(...)`, which builds the same
output tables in the warehouse.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import duckdb


@dataclass
class UnificationCall:
    url: str
    method: str
    content: Any  # the request body (the generated JSON: run_*, unification: {...})
    task_config: dict[str, Any]  # the http_call> task's evaluated params
    session_time: datetime
    cursor: duckdb.DuckDBPyConnection  # warehouse connection (UTC); a kill interrupts it
    log: Callable[[str], None]  # writes a line to the task's log
    cancel_requested: Callable[[], bool]


# Returns params to store for later tasks (or None). Raise an exception with a clear
# message to fail the task.
UnificationHandler = Callable[[UnificationCall], dict[str, Any] | None]

UNIFICATION_NOT_INSTALLED = (
    "http_call> to TD's unification API: this local runtime has no unification handler "
    "(LocalBackend.set_unification_handler registers one; by default it is the local engine)"
)
