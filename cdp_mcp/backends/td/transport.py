"""HTTP to Treasure Data: the `TD1` header, timeouts, bounded retries, errors a person can act on.

Every call has connect/read/write timeouts. Connection errors, timeouts, 5xx, 408 and 429
are retried with exponential backoff and jitter (429/503 wait what `Retry-After` asks),
bounded in tries and in total time; any other 4xx fails at once. These transport retries
are invisible to the pipeline and do not count against its 3-attempt budget per step.

A retried request may have reached TD the first time, so every caller makes a second
delivery harmless instead of treating non-idempotent calls specially:
- PUT /api/projects: same revision name; a 409 is looked up and adopted (digdag.py).
- PUT /api/attempts: keyed by (workflow, session time, retry name), fixed before the first
  try; a 409 carries the attempt the first delivery created, which is adopted.
- POST /v3/job/issue: carries a `domain_key` fixed per query; TD answers a second delivery
  with 409 naming the job (`details.conflicts_with`), which is adopted (apiv3.py).
- POST /v3/database/create: 409 means it exists, which is what was asked.
- POST /api/attempts/{id}/kill: 409 on a finished attempt is resolved by reading it.
- PUT/DELETE secrets: idempotent by key.
- Bulk import (bulk_import.py): a 409 on create for our own `uploading` session is adopted,
  a part uploaded again replaces itself, perform and commit read the session before and
  after a refused delivery and adopt the job or commit already under way; delete's 404 is
  success. The landing table is dropped and created again before each upload, so a whole
  upload repeated after a lost answer still leaves one copy of the range.

The API key is only ever read inside `TDAuth.auth_flow`; messages and logs carry the
method, host and path, never headers, and server text and exception text are scrubbed of
the key in every spelling (`cdp_mcp.core.redact`). A key with whitespace or control characters
is refused before any request: in a header it breaks the request, and httpx's error quotes it.
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
import time
import weakref
from collections.abc import AsyncIterator, Awaitable, Callable, Generator, Iterable
from dataclasses import dataclass, field
from email.utils import parsedate_to_datetime
from typing import Any, TypeVar
from urllib.parse import urlsplit

import anyio
import httpx
from pydantic import SecretStr

from cdp_mcp.backends.base import BackendError, ConflictError, NotFoundError
from cdp_mcp.backends.td.errors import AUTH_HINT, AuthenticationError, TransientError
from cdp_mcp.core import redact
from cdp_mcp.core.apikey import is_junk

log = logging.getLogger("cdp_mcp.td")
T = TypeVar("T")

RETRYABLE_STATUS = frozenset({408, 429, 500, 502, 503, 504})
USER_AGENT = "cdp-mcp"


@dataclass(frozen=True)
class RetryPolicy:
    """Bounds of the transport retries: at most `max_tries` tries within `max_total` seconds."""

    max_tries: int = 6
    base_delay: float = 0.5
    max_delay: float = 10.0
    max_total: float = 90.0

    def backoff(self, retry: int, rng: random.Random) -> float:
        """Exponential with "equal jitter": half the cap plus a random half, so clients that
        failed together do not come back together."""
        cap: float = min(self.max_delay, self.base_delay * 2 ** (retry - 1))
        return cap / 2 + rng.uniform(0, cap / 2)


DEFAULT_TIMEOUT = httpx.Timeout(connect=10.0, read=60.0, write=60.0, pool=10.0)


class TDAuth(httpx.Auth):
    """Adds `Authorization: TD1 <key>`; its repr never shows the key."""

    def __init__(self, api_key: SecretStr) -> None:
        self._key = api_key

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        request.headers["Authorization"] = f"TD1 {self._key.get_secret_value()}"
        yield request

    def __repr__(self) -> str:
        return "TDAuth(key=**********)"


@dataclass
class Reply:
    status: int
    headers: httpx.Headers
    body: bytes = field(repr=False)

    def json(self) -> Any:
        try:
            return json.loads(self.body or b"null")
        except ValueError:
            raise BackendError(
                f"Treasure Data answered HTTP {self.status} with a body that is not JSON"
            ) from None


class _Retry(Exception):
    """A try that failed in a way worth retrying."""

    def __init__(self, reason: str, retry_after: float | None = None) -> None:
        super().__init__(reason)
        self.reason, self.retry_after = reason, retry_after


def server_message(body: bytes) -> str:
    """The human part of an error body: Digdag's `message`, API v3's `message`/`error`/`text`.

    Scrubbed before it is cut short, so a cut never leaves part of a secret behind."""
    text = redact.scrub(body.decode("utf-8", errors="replace").strip())
    try:
        data = json.loads(text)
    except ValueError:
        return text[:300]
    if isinstance(data, dict):
        for key in ("message", "error", "text"):
            value = data.get(key)
            if isinstance(value, str) and value:
                return redact.scrub(value)[:500]
    return text[:300]


def retry_after_seconds(value: str | None) -> float | None:
    """`Retry-After` as seconds (a number, or an HTTP date)."""
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


def _running_loop() -> asyncio.AbstractEventLoop | None:
    try:
        return asyncio.get_running_loop()
    except RuntimeError:  # not asyncio (trio): one client for the caller's lifetime
        return None


def _where(method: str, url: str) -> str:
    """METHOD host/path, without the query string (a `direct` log URL carries a signature)."""
    parts = urlsplit(url)
    return redact.scrub(f"{method} {parts.netloc}{parts.path}")


class Transport:
    """One httpx client plus the retry policy, shared by the Digdag and API v3 clients."""

    def __init__(
        self,
        api_key: SecretStr,
        *,
        policy: RetryPolicy | None = None,
        timeout: httpx.Timeout | float | None = None,
        seed: int | None = None,
    ) -> None:
        redact.register(api_key)
        if any(is_junk(c) for c in api_key.get_secret_value()):
            raise AuthenticationError(
                "the API key contains whitespace or control characters (e.g. a line break "
                f"from a CRLF file), so it was not sent; {AUTH_HINT}"
            )
        self._auth = TDAuth(api_key)
        self.policy = policy or RetryPolicy()
        self.timeout = (
            httpx.Timeout(timeout) if isinstance(timeout, int | float) else timeout
        ) or DEFAULT_TIMEOUT
        self._rng = random.Random(seed)
        self._client: httpx.AsyncClient | None = None
        self._loop: weakref.ref[asyncio.AbstractEventLoop] | None = None

    def __repr__(self) -> str:
        return f"Transport(policy={self.policy!r})"

    def _http(self) -> httpx.AsyncClient:
        # A client's connections belong to the event loop that opened them; a caller that
        # runs several loops in turn (anyio.run per command) gets a fresh client per loop.
        loop = _running_loop()
        if self._client is not None and self._loop is not None and self._loop() is not loop:
            self._client = None
        if self._client is None:
            self._loop = weakref.ref(loop) if loop is not None else None
            self._client = httpx.AsyncClient(
                timeout=self.timeout,
                follow_redirects=False,
                headers={"User-Agent": USER_AGENT, "Accept": "application/json"},
            )
        return self._client

    async def aclose(self) -> None:
        if self._client is not None:
            await self._client.aclose()
            self._client = None

    def scrub(self, text: str) -> str:
        """Remove the key from text that came from elsewhere (server bodies, exceptions)."""
        return redact.scrub(text)

    # public calls

    async def request(
        self,
        method: str,
        url: str,
        *,
        what: str,
        params: dict[str, Any] | None = None,
        json_body: Any = None,
        data: dict[str, Any] | None = None,
        content: bytes | None = None,
        headers: dict[str, str] | None = None,
        accept: Iterable[int] = (),
        authenticated: bool = True,
    ) -> Reply:
        """Send with retries; return a 2xx (or a status in `accept`), raise for the rest."""
        accepted = frozenset(accept)

        async def once() -> Reply:
            response = await self._http().request(
                method,
                url,
                params=params,
                json=json_body,
                data=data,
                content=content,
                headers=headers,
                auth=self._auth if authenticated else None,
            )
            reply = Reply(response.status_code, response.headers, response.content)
            self._check(reply, what, method, url, accepted)
            return reply

        return await self._with_retries(what, method, url, once)

    async def stream(
        self,
        method: str,
        url: str,
        consume: Callable[[AsyncIterator[bytes]], Awaitable[T]],
        *,
        what: str,
        params: dict[str, Any] | None = None,
    ) -> T:
        """Stream a 2xx body into `consume`; a connection lost mid-body retries from the start."""

        async def once() -> T:
            async with self._http().stream(method, url, params=params, auth=self._auth) as resp:
                if not 200 <= resp.status_code < 300:
                    body = await resp.aread()
                    self._check(Reply(resp.status_code, resp.headers, body), what, method, url)
                return await consume(resp.aiter_bytes())

        return await self._with_retries(what, method, url, once)

    # internals

    def _check(
        self, reply: Reply, what: str, method: str, url: str, accepted: frozenset[int] = frozenset()
    ) -> None:
        status = reply.status
        if 200 <= status < 300 or status in accepted:
            return
        message = self.scrub(server_message(reply.body)) or f"HTTP {status}"
        if status in RETRYABLE_STATUS:
            retry_after = retry_after_seconds(reply.headers.get("Retry-After"))
            raise _Retry(f"HTTP {status}: {message}", retry_after)
        host = urlsplit(url).netloc
        if status in (401, 403):
            raise AuthenticationError(
                f"{what}: Treasure Data refused the API key at {host} (HTTP {status}: "
                f"{message}); {AUTH_HINT} (the key must belong to the td_endpoint's site)"
            )
        if status == 404:
            raise NotFoundError(f"{what}: not found ({message})")
        if status == 409:
            raise ConflictError(f"{what}: {message}")
        raise BackendError(f"{what}: {message} (HTTP {status})")

    async def _with_retries(
        self, what: str, method: str, url: str, once: Callable[[], Awaitable[T]]
    ) -> T:
        policy = self.policy
        started = time.monotonic()
        tries = 0
        while True:
            tries += 1
            retry_after: float | None = None
            try:
                t0 = time.monotonic()
                result = await once()
                log.debug("%s -> ok (%.2f s)", _where(method, url), time.monotonic() - t0)
                return result
            except _Retry as e:
                reason, retry_after = e.reason, e.retry_after
            except (httpx.UnsupportedProtocol, httpx.InvalidURL) as e:
                raise BackendError(
                    self.scrub(f"{what}: invalid URL {urlsplit(url).netloc}: {e}")
                ) from None
            except httpx.TransportError as e:
                reason = self.scrub(f"{type(e).__name__}: {e}".rstrip(": "))
            elapsed = time.monotonic() - started
            delay = retry_after if retry_after is not None else policy.backoff(tries, self._rng)
            if tries >= policy.max_tries or elapsed + delay > policy.max_total:
                waited = (
                    f"; TD asked to wait {retry_after:.0f} s more"
                    if retry_after is not None and elapsed + delay > policy.max_total
                    else ""
                )
                raise TransientError(
                    f"{what}: Treasure Data did not answer successfully after {tries} "
                    f"{'try' if tries == 1 else 'tries'} in {elapsed:.1f} s (last: {reason}{waited}). "
                    "TD may be degraded or unreachable: try again later, and check td_endpoint"
                ) from None
            log.warning(
                "%s failed (%s); retry %d/%d in %.2f s",
                _where(method, url),
                reason,
                tries,
                policy.max_tries - 1,
                delay,
            )
            await anyio.sleep(delay)
