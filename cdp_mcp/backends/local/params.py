"""Task parameters the Digdag way: built-ins, `_export`, and store params of earlier tasks.

Merge order (Digdag's): built-ins < attempt params < exports of each ancestor, with the
store params of tasks that ran before (upstream siblings and their children) applied in
between < the task's own keys.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo


def deep_merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    """A new dict: `over` on top of `base`, nested mappings merged key by key."""
    out = dict(base)
    for key, value in over.items():
        old = out.get(key)
        if isinstance(old, dict) and isinstance(value, dict):
            out[key] = deep_merge(old, value)
        else:
            out[key] = copy.deepcopy(value)
    return out


@dataclass
class StoreUpdate:
    """Params a task stores for later tasks; `resets` are key paths replaced, not merged."""

    values: dict[str, Any] = field(default_factory=dict)
    resets: list[tuple[str, ...]] = field(default_factory=list)

    def apply(self, params: dict[str, Any]) -> dict[str, Any]:
        out = dict(params)
        for path in self.resets:
            _remove(out, path)
        return deep_merge(out, self.values)


def _remove(params: dict[str, Any], path: tuple[str, ...]) -> None:
    node: Any = params
    for key in path[:-1]:
        child = node.get(key) if isinstance(node, dict) else None
        if not isinstance(child, dict):
            return
        child = dict(child)  # copy on write: earlier snapshots must not change
        node[key] = child
        node = child
    if isinstance(node, dict):
        node.pop(path[-1], None)


def apply_all(params: dict[str, Any], updates: list[StoreUpdate]) -> dict[str, Any]:
    for update in updates:
        params = update.apply(params)
    return params


def merged_store(updates: list[StoreUpdate]) -> dict[str, Any]:
    """What a list of updates stores, as one mapping (for the Task model)."""
    return apply_all({}, updates)


def session_builtins(
    session_time: datetime,
    timezone: str,
    *,
    session_id: int,
    attempt_id: int,
    session_uuid: str,
    project_id: int,
    retry_attempt_name: str | None,
) -> dict[str, Any]:
    """Digdag's built-in variables for a session, in the workflow's time zone."""
    local = session_time.astimezone(ZoneInfo(timezone))
    offset = local.strftime("%z") or "+0000"
    return {
        "timezone": timezone,
        "session_time": local.isoformat(timespec="seconds"),
        "session_date": local.strftime("%Y-%m-%d"),
        "session_date_compact": local.strftime("%Y%m%d"),
        "session_local_time": local.strftime("%Y-%m-%d %H:%M:%S"),
        "session_tz_offset": offset,
        "session_unixtime": int(session_time.timestamp()),
        "session_uuid": session_uuid,
        "session_id": session_id,
        "attempt_id": attempt_id,
        "project_id": project_id,
        "retry_attempt_name": retry_attempt_name,
    }
