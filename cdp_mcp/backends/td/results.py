"""Job results read as a stream: JSON lines or msgpack(.gz), stopping one row past `limit`.

`GET /v3/job/result/{id}` has no paging; a result of millions of rows is read only as far as
the caller needs (limit + 1 rows tells `truncated`), and the connection is then dropped.
"""

from __future__ import annotations

import json
import zlib
from collections.abc import AsyncIterator
from typing import Any, Protocol

import msgpack

from cdp_mcp.backends.base import BackendError

FORMATS = ("json", "msgpack", "msgpack.gz")


class RowDecoder(Protocol):
    def feed(self, chunk: bytes) -> list[Any]: ...

    def close(self) -> list[Any]: ...


class JsonLinesDecoder:
    """One JSON array per line."""

    def __init__(self) -> None:
        self._pending = b""

    def feed(self, chunk: bytes) -> list[Any]:
        *lines, self._pending = (self._pending + chunk).split(b"\n")
        return [json.loads(line) for line in lines if line.strip()]

    def close(self) -> list[Any]:
        rest, self._pending = self._pending, b""
        return [json.loads(rest)] if rest.strip() else []


class MsgpackDecoder:
    """A stream of msgpack arrays, optionally gzip-compressed (possibly several gzip members)."""

    def __init__(self, gzipped: bool) -> None:
        self._gzipped = gzipped
        self._inflate = zlib.decompressobj(16 + zlib.MAX_WBITS) if gzipped else None
        self._unpacker = msgpack.Unpacker(raw=False, strict_map_key=False)

    def _inflated(self, chunk: bytes) -> bytes:
        if self._inflate is None:
            return chunk
        out = b""
        while chunk:
            out += self._inflate.decompress(chunk)
            chunk = self._inflate.unused_data
            if chunk:  # the next gzip member
                self._inflate = zlib.decompressobj(16 + zlib.MAX_WBITS)
        return out

    def feed(self, chunk: bytes) -> list[Any]:
        self._unpacker.feed(self._inflated(chunk))
        return list(self._unpacker)

    def close(self) -> list[Any]:
        if self._inflate is not None:
            self._unpacker.feed(self._inflate.flush())
        return list(self._unpacker)


def decoder(fmt: str) -> RowDecoder:
    if fmt == "json":
        return JsonLinesDecoder()
    if fmt in ("msgpack", "msgpack.gz"):
        return MsgpackDecoder(gzipped=fmt == "msgpack.gz")
    raise BackendError(f"unknown result format {fmt!r}; use one of {', '.join(FORMATS)}")


async def read_rows(
    chunks: AsyncIterator[bytes], fmt: str, limit: int | None
) -> tuple[list[list[Any]], bool]:
    """(rows, truncated): at most `limit` rows; truncated when there was at least one more."""
    rows: list[list[Any]] = []
    decode = decoder(fmt)
    try:
        async for chunk in chunks:
            rows.extend(decode.feed(chunk))
            if limit is not None and len(rows) > limit:
                return [list(r) for r in rows[:limit]], True
        rows.extend(decode.close())
    except (ValueError, zlib.error, msgpack.ExtraData, msgpack.FormatError) as e:
        raise BackendError(f"could not decode the job result ({fmt}): {e}") from None
    if limit is not None and len(rows) > limit:
        return [list(r) for r in rows[:limit]], True
    return [list(r) for r in rows], False
