"""API v3 bulk import on the `api` host: records from this machine into a TD table.

The protocol td-client-python's BulkImportAPI and BulkImport model drive (tdclient 1.7.0):
create a session for (database, table) -> upload parts (msgpack.gz: a gzip stream of
msgpack maps, each record with an integer `time`) -> freeze -> perform (a job of type
`bulk_import` that validates the parts) -> wait for the job -> check the session's error
records -> commit (TD commits asynchronously: poll until `committed`) -> delete.

A retried request may have reached TD the first time (transport.py), so every step makes
a second delivery harmless:
- create: a 409 for our own session name, still `uploading` for the same table, is adopted.
- upload_part: a part uploaded again under the same name replaces the first.
- freeze: freezing a frozen session is a no-op.
- perform: the session is read first, and again when a second delivery is refused, so a
  perform that already started its job is adopted instead of started twice.
- commit: refused because it was already committing/committed -> read and adopted.
- delete: a 404 means it is gone, which is what was asked.
"""

from __future__ import annotations

import gzip
import time
from collections.abc import Iterable, Iterator
from contextlib import suppress
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import anyio
import msgpack

from cdp_mcp.backends.base import BackendError, ConflictError, NotFoundError
from cdp_mcp.backends.td.apiv3 import APIv3
from cdp_mcp.backends.td.transport import Transport

PART_RECORDS = 50_000  # records per part: a part is one PUT (pytd sends 10,000)
_PERFORMED = ("performing", "ready", "committing", "committed")


def _seg(value: str) -> str:
    return quote(str(value), safe="")


def pack_part(records: Iterable[dict[str, Any]]) -> bytes:
    """Records as one msgpack.gz part (mtime 0: the same records give the same bytes)."""
    packer = msgpack.Packer(use_bin_type=True)
    return gzip.compress(b"".join(packer.pack(r) for r in records), mtime=0)


def parts_of(records: Iterable[dict[str, Any]], size: int = PART_RECORDS) -> Iterator[bytes]:
    batch: list[dict[str, Any]] = []
    for record in records:
        batch.append(record)
        if len(batch) >= size:
            yield pack_part(batch)
            batch = []
    if batch:
        yield pack_part(batch)


@dataclass(frozen=True)
class ImportResult:
    session: str
    job_id: str | None
    valid_records: int
    parts: int


class BulkImportClient:
    def __init__(self, transport: Transport, api: APIv3) -> None:
        self.http = transport
        self.api = api

    def _url(self, path: str) -> str:
        return f"{self.api.origin}/v3/bulk_import/{path}"

    async def show(self, name: str) -> dict[str, Any]:
        reply = await self.http.request(
            "GET", self._url(f"show/{_seg(name)}"), what=f"show bulk import {name}"
        )
        data = reply.json()
        if not isinstance(data, dict) or "status" not in data:
            raise BackendError(f"show bulk import {name}: TD answered without a status")
        return data

    async def sessions(self) -> list[dict[str, Any]]:
        reply = await self.http.request("GET", self._url("list"), what="list bulk imports")
        data = reply.json()
        found = data.get("bulk_imports") if isinstance(data, dict) else None
        return [s for s in found or [] if isinstance(s, dict)]

    async def create(self, name: str, database: str, table: str) -> None:
        what = f"create bulk import {name} for {database}.{table}"
        reply = await self.http.request(
            "POST",
            self._url(f"create/{_seg(name)}/{_seg(database)}/{_seg(table)}"),
            what=what,
            accept=(409,),
        )
        if reply.status != 409:
            return
        found = await self.show(name)  # our own earlier delivery?
        if (
            found.get("database") == database
            and found.get("table") == table
            and found.get("status") == "uploading"
            and not found.get("upload_frozen")
        ):
            return
        raise ConflictError(f"{what}: a session of that name exists ({found.get('status')})")

    async def upload_part(self, name: str, part: str, data: bytes) -> None:
        await self.http.request(
            "PUT",
            self._url(f"upload_part/{_seg(name)}/{_seg(part)}"),
            what=f"upload part {part} of bulk import {name}",
            content=data,
            headers={"Content-Type": "application/octet-stream"},
        )

    async def freeze(self, name: str) -> None:
        await self.http.request(
            "POST", self._url(f"freeze/{_seg(name)}"), what=f"freeze bulk import {name}", data={}
        )

    async def perform(self, name: str) -> str:
        """Start the session's perform job (or adopt the one already started); its id."""
        found = await self.show(name)
        if found.get("status") in _PERFORMED and found.get("job_id"):
            return str(found["job_id"])
        try:
            reply = await self.http.request(
                "POST",
                self._url(f"perform/{_seg(name)}"),
                what=f"perform bulk import {name}",
                data={},
            )
        except BackendError:
            found = await self.show(name)
            if found.get("status") in _PERFORMED and found.get("job_id"):
                return str(found["job_id"])
            raise
        data = reply.json()
        job = data.get("job_id") if isinstance(data, dict) else None
        if job in (None, ""):
            raise BackendError(f"perform bulk import {name}: TD answered without a job id")
        return str(job)

    async def commit(self, name: str, timeout: float) -> None:
        """Commit and wait until TD reports the session `committed`."""
        try:
            await self.http.request(
                "POST",
                self._url(f"commit/{_seg(name)}"),
                what=f"commit bulk import {name}",
                data={},
            )
        except BackendError:
            if (await self.show(name)).get("status") not in ("committing", "committed"):
                raise
        deadline = time.monotonic() + timeout
        pause = self.api.poll.first
        while (status := (await self.show(name)).get("status")) != "committed":
            if status not in ("committing", "ready"):
                raise BackendError(f"commit bulk import {name}: the session is {status}")
            if time.monotonic() >= deadline:
                raise BackendError(
                    f"commit bulk import {name}: not committed after {timeout:.0f} s"
                )
            await anyio.sleep(pause)
            pause = min(pause * self.api.poll.factor, self.api.poll.longest)

    async def delete(self, name: str) -> None:
        with suppress(NotFoundError):
            await self.http.request(
                "POST",
                self._url(f"delete/{_seg(name)}"),
                what=f"delete bulk import {name}",
                data={},
            )

    async def error_records(self, name: str, limit: int = 3) -> list[Any]:
        reply = await self.http.request(
            "GET", self._url(f"error_records/{_seg(name)}"), what=f"error records of {name}"
        )
        unpacker = msgpack.Unpacker(raw=False, strict_map_key=False)
        unpacker.feed(gzip.decompress(reply.body) if reply.body else b"")
        out = []
        for record in unpacker:
            out.append(record)
            if len(out) >= limit:
                break
        return out

    async def run(
        self,
        name: str,
        database: str,
        table: str,
        parts: Iterable[bytes],
        timeout: float = 3600.0,
    ) -> ImportResult:
        """The whole session: upload `parts`, perform, check, commit, delete.

        Nothing is committed unless every record was valid; the session is deleted whether
        or not the import succeeded."""
        await self.create(name, database, table)
        try:
            count = 0
            for count, data in enumerate(parts, start=1):
                await self.upload_part(name, f"part{count:05d}", data)
            await self.freeze(name)
            job_id = await self.perform(name)
            status = await self.api.wait(job_id, timeout)
            if status != "success":
                raise BackendError(await self.api.failure(job_id, status))
            shown = await self.show(name)
            errors = int(shown.get("error_records") or 0) + int(shown.get("error_parts") or 0)
            if errors:
                sample = await self.error_records(name)
                raise BackendError(
                    f"bulk import {name}: TD refused {shown.get('error_records') or 0} records "
                    f"and {shown.get('error_parts') or 0} parts (e.g. {sample!r}); nothing "
                    "was committed"
                )
            await self.commit(name, timeout)
            return ImportResult(name, job_id, int(shown.get("valid_records") or 0), count)
        finally:
            # A leftover session holds nothing committed (TD expires it after 30 days).
            with anyio.CancelScope(shield=True), suppress(BackendError):
                await self.delete(name)
