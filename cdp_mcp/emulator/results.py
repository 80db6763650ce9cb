"""A job's result in TD's formats, and byte ranges of it.

`GET /v3/job/result/{id}?format=F`:
- json: one JSON array per line; msgpack: a stream of arrays; msgpack.gz: the same, gzipped;
- csv (RFC 4180 quoting) and tsv (tab-separated, quoted the same way); `header=true` puts
  the column names first in these two. A null is an empty field.
msgpack.gz is encoded once when the job succeeds: its size is the job's `result_size`, and
td-client-python downloads it in `Range` requests of that size (`download_job_result`).
"""

from __future__ import annotations

import csv
import gzip
import io
import json
import re
from collections.abc import Iterator
from typing import Any

import msgpack

from cdp_mcp.emulator.errors import RequestError

FORMATS = ("json", "msgpack", "msgpack.gz", "csv", "tsv")
MEDIA = {
    "json": "application/json",
    "msgpack": "application/x-msgpack",
    "msgpack.gz": "application/octet-stream",
    "csv": "text/csv",
    "tsv": "text/tab-separated-values",
}
_BATCH = 500  # rows per streamed chunk
_RANGE = re.compile(r"^bytes=(\d*)-(\d*)$")


def packed_gz(rows: list[list[Any]]) -> bytes:
    buf = io.BytesIO()
    with gzip.GzipFile(fileobj=buf, mode="wb", mtime=0) as gz:
        packer = msgpack.Packer(use_bin_type=True)
        for row in rows:
            gz.write(packer.pack(row))
    return buf.getvalue()


def encode(rows: list[list[Any]], columns: list[str], fmt: str, header: bool) -> Iterator[bytes]:
    if fmt not in FORMATS or fmt == "msgpack.gz":
        raise RequestError(f"unknown format {fmt!r}; one of {', '.join(FORMATS)}")
    if fmt in ("csv", "tsv"):
        yield from _delimited(rows, columns, "," if fmt == "csv" else "\t", header)
        return
    for start in range(0, len(rows), _BATCH):
        batch = rows[start : start + _BATCH]
        if fmt == "json":
            yield b"".join(json.dumps(r).encode() + b"\n" for r in batch)
        else:
            yield b"".join(msgpack.packb(r, use_bin_type=True) for r in batch)


def _delimited(
    rows: list[list[Any]], columns: list[str], sep: str, header: bool
) -> Iterator[bytes]:
    out = io.StringIO()
    writer = csv.writer(out, delimiter=sep, lineterminator="\n")
    if header:
        writer.writerow(columns)
    for start in range(0, len(rows), _BATCH):
        writer.writerows([_cell(v) for v in r] for r in rows[start : start + _BATCH])
        yield out.getvalue().encode()
        out.seek(0)
        out.truncate()
    if out.tell():
        yield out.getvalue().encode()


def _cell(value: Any) -> Any:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list | dict):
        return json.dumps(value)
    return value


def flag(value: str | None) -> bool:
    """A boolean query parameter as clients send it: true/false in any case, 1/0."""
    return (value or "").strip().lower() in ("true", "1", "yes")


class Unsatisfiable(Exception):
    """A range that starts past the end (answered 416)."""


def byte_range(header: str, size: int) -> tuple[int, int] | None:
    """(first, last) of a single `Range: bytes=a-b`; None when it is not one (whole body)."""
    found = _RANGE.match(header.strip())
    if not found or not (found.group(1) or found.group(2)):
        return None
    first_text, last_text = found.groups()
    if not first_text:  # a suffix: the last N bytes
        length = int(last_text)
        if not length or not size:
            raise Unsatisfiable
        return max(0, size - length), size - 1
    first = int(first_text)
    last = min(int(last_text), size - 1) if last_text else size - 1
    if first >= size:
        raise Unsatisfiable
    if first > last:
        return None
    return first, last
