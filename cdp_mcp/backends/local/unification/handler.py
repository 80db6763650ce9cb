"""The local backend's answer to TD's `unifications/workflow_call` (`http_call>`).

Registered as the local runtime's default unification handler. The engine (numpy, scipy)
is imported on the first call, so starting a backend stays cheap.
"""

from __future__ import annotations

import time
from typing import Any

from cdp_mcp.backends.local.hooks import UnificationCall
from cdp_mcp.backends.local.unification.spec import (
    UnificationError,
    parse_request,
)

THRESHOLD_PARAM = "over_merge_threshold"  # optional workflow param (e.g. in `_export`)
LOGGED_WARNINGS = 5


def handle_unification_call(call: UnificationCall) -> dict[str, Any] | None:
    # Deferred for its cost (numpy, scipy), not to break a cycle: the engine imports
    # nothing of the runtime (tests/test_local_package.py imports each first).
    from cdp_mcp.backends.local.unification.engine import unify

    if call.method != "POST":
        raise UnificationError(f"TD's unification API takes POST, not {call.method}")
    request = parse_request(call.content)
    summaries = unify(
        call.cursor,
        request,
        run_time=int(time.time()),
        over_merge_threshold=_threshold(call.task_config),
        log=call.log,
        cancelled=call.cancel_requested,
    )
    for s in summaries:
        call.log(s.line())
        for w in s.report.over_merge_warnings[:LOGGED_WARNINGS]:
            call.log(f"over-merge: {w.message}")
        for c in s.report.split_clusters[:LOGGED_WARNINGS]:
            call.log(
                f"left split: {c.values} values kept as {len(c.unified_ids)} profiles "
                f"({', '.join(c.unified_ids[:5])}): merge_iterations reached"
            )
    return None


def _threshold(params: dict[str, Any]) -> int | None:
    """The param as set, or None: a threshold scaled with the data (report.py)."""
    value = params.get(THRESHOLD_PARAM)
    if value is None:
        return None
    try:
        threshold = int(value)
    except (TypeError, ValueError):
        raise UnificationError(f"{THRESHOLD_PARAM} must be a whole number, got {value!r}") from None
    if threshold < 1:
        raise UnificationError(f"{THRESHOLD_PARAM} must be at least 1, got {threshold}")
    return threshold
