"""Fault mode: a share of requests fail the way a busy TD does, deterministically by seed.

Kinds, drawn with equal odds for a faulty request:
- `error`: 500 with TD's error body, before the request is handled.
- `throttle`: 429 with `Retry-After`, before the request is handled.
- `drop`: the request IS handled, then the connection is closed after the headers, so the
  client never learns the outcome (what makes retried non-idempotent calls dangerous).
- `slow`: the answer comes `slow_seconds` late.
The draws come from one seeded generator, so a run with the same seed and the same order of
requests meets the same faults. `only` limits faults to requests whose "METHOD /path"
starts with one of its prefixes; `limit` caps how many are injected (per prefix of `only`).
"""

from __future__ import annotations

import json
import logging
import random
import threading
from dataclasses import dataclass
from typing import Any

import anyio
from starlette.types import ASGIApp, Message, Receive, Scope, Send

KINDS = ("error", "throttle", "drop", "slow")
_UVICORN_DROP_MESSAGE = "ASGI callable returned without completing response."


@dataclass(frozen=True)
class FaultPlan:
    rate: float = 0.0
    seed: int = 0
    kinds: tuple[str, ...] = KINDS
    retry_after: float = 1.0  # seconds a 429 asks to wait (the emulator allows fractions)
    slow_seconds: float = 0.5
    only: tuple[str, ...] = ()  # e.g. ("PUT /api/attempts",); empty: every request
    limit: int | None = None  # per prefix of `only` (else in all)

    def __post_init__(self) -> None:
        if not 0.0 <= self.rate <= 1.0:
            raise ValueError(f"fault rate must be between 0 and 1, got {self.rate}")
        unknown = set(self.kinds) - set(KINDS)
        if unknown or not self.kinds:
            raise ValueError(f"fault kinds must be among {', '.join(KINDS)}")


class FaultDraw:
    def __init__(self, plan: FaultPlan) -> None:
        self.plan = plan
        self._rng = random.Random(plan.seed)
        self._lock = threading.Lock()
        self.injected: dict[str, int] = dict.fromkeys(plan.kinds, 0)
        self._per_group: dict[str, int] = {}

    def next(self, method: str, path: str) -> str | None:
        plan = self.plan
        request = f"{method} {path}"
        group = next((p for p in plan.only if request.startswith(p)), "") if plan.only else "*"
        if not group:
            return None
        with self._lock:
            if plan.limit is not None and self._per_group.get(group, 0) >= plan.limit:
                return None
            if self._rng.random() >= plan.rate:
                return None
            kind = plan.kinds[self._rng.randrange(len(plan.kinds))]
            self.injected[kind] += 1
            self._per_group[group] = self._per_group.get(group, 0) + 1
            return kind


async def _send_json(send: Send, status: int, body: dict[str, Any], headers: list[Any]) -> None:
    data = json.dumps(body).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(data)).encode()),
                *headers,
            ],
        }
    )
    await send({"type": "http.response.body", "body": data})


class FaultInjector:
    """ASGI middleware in front of the whole app (faults happen before authentication)."""

    def __init__(self, app: ASGIApp, draw: FaultDraw) -> None:
        self.app = app
        self.draw = draw

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = self.draw.next(scope["method"], scope["path"]) if scope["type"] == "http" else None
        plan = self.draw.plan
        if kind == "error":
            await _send_json(
                send, 500, {"message": "injected fault: internal error", "status": 500}, []
            )
        elif kind == "throttle":
            retry_after = f"{plan.retry_after:g}".encode()
            body = {"message": "injected fault: too many requests", "status": 429}
            await _send_json(send, 429, body, [(b"retry-after", retry_after)])
        elif kind == "drop":
            await self._drop_after_handling(scope, receive, send)
        else:
            if kind == "slow":
                await anyio.sleep(plan.slow_seconds)
            await self.app(scope, receive, send)

    async def _drop_after_handling(self, scope: Scope, receive: Receive, send: Send) -> None:
        start: Message | None = None
        size = 0

        async def swallow(message: Message) -> None:
            nonlocal start, size
            if message["type"] == "http.response.start":
                start = message
            elif message["type"] == "http.response.body":
                size += len(message.get("body", b""))

        await self.app(scope, receive, swallow)
        if start is None:
            return
        # Headers announcing a body (at least one byte, so a 204 is lost too) and no body:
        # returning now makes uvicorn close the connection mid-response.
        headers = [(k, v) for k, v in start["headers"] if k.lower() != b"content-length"]
        await send(
            {
                "type": "http.response.start",
                "status": 200 if start["status"] in (204, 304) else start["status"],
                "headers": [*headers, (b"content-length", str(max(size, 1)).encode())],
            }
        )


class _QuietDrops(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return record.getMessage() != _UVICORN_DROP_MESSAGE


def silence_drop_reports() -> None:
    """uvicorn logs every dropped response as an error; injected drops are expected."""
    logger = logging.getLogger("uvicorn.error")
    if not any(isinstance(f, _QuietDrops) for f in logger.filters):
        logger.addFilter(_QuietDrops())
