"""API v3 on the `api` host: databases, tables and query jobs (issue, poll, stream the result)."""

from __future__ import annotations

import json
import time
import uuid
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import anyio

from cdp_mcp.backends.base import (
    BackendError,
    ConflictError,
    NotFoundError,
    QueryError,
    QueryResult,
    TableInfo,
)
from cdp_mcp.backends.td import mapping
from cdp_mcp.backends.td.results import FORMATS, read_rows
from cdp_mcp.backends.td.transport import Reply, Transport

ENGINES = ("presto", "hive", "trino")
_JOB_DONE = ("success", "error", "killed")


@dataclass(frozen=True)
class PollPolicy:
    """How often a running job is polled: from `first` seconds, growing to `longest`."""

    first: float = 0.5
    factor: float = 1.5
    longest: float = 5.0


def _seg(value: str) -> str:
    return quote(str(value), safe="")


def _conflicting_job(reply: Reply) -> str | None:
    """The job a 409 for a duplicate `domain_key` names (`details.conflicts_with`)."""
    try:
        data = json.loads(reply.body or b"{}")
    except ValueError:
        return None
    if not isinstance(data, dict):
        return None
    details = data.get("details")
    found = details.get("conflicts_with") if isinstance(details, dict) else None
    found = found or data.get("job_id")
    return str(found) if found else None


class APIv3:
    def __init__(self, transport: Transport, origin: str, poll: PollPolicy | None = None) -> None:
        self.http = transport
        self.origin = origin
        self.poll = poll or PollPolicy()

    def _url(self, path: str) -> str:
        return f"{self.origin}{path}"

    # databases and tables

    async def database_names(self) -> list[str]:
        reply = await self.http.request(
            "GET", self._url("/v3/database/list"), what="list databases"
        )
        return [str(d.get("name")) for d in mapping.collection(reply.json(), "databases")]

    async def create_database(self, name: str) -> bool:
        """Create `name`; False when it already existed (409, also after a retried delivery)."""
        reply = await self.http.request(
            "POST",
            self._url(f"/v3/database/create/{_seg(name)}"),
            what=f"create database {name}",
            accept=(409,),
        )
        return reply.status != 409

    async def tables(self, database: str) -> list[TableInfo]:
        try:
            reply = await self.http.request(
                "GET",
                self._url(f"/v3/table/list/{_seg(database)}"),
                what=f"list tables of {database}",
            )
        except NotFoundError:
            raise NotFoundError(f"database {database!r} does not exist on Treasure Data") from None
        return [mapping.table(t) for t in mapping.collection(reply.json(), "tables")]

    async def delete_table(self, database: str, table: str) -> bool:
        """Delete a table; False when there was none (404, also after a retried delivery)."""
        try:
            await self.http.request(
                "POST",
                self._url(f"/v3/table/delete/{_seg(database)}/{_seg(table)}"),
                what=f"delete table {database}.{table}",
            )
        except NotFoundError:
            return False
        return True

    # jobs

    async def issue(self, sql: str, database: str, engine: str) -> str:
        """Issue a query job. A fixed `domain_key` makes a retried delivery name the same job."""
        domain_key = f"cdp-mcp-{uuid.uuid4().hex}"
        reply = await self.http.request(
            "POST",
            self._url(f"/v3/job/issue/{_seg(engine)}/{_seg(database)}"),
            what=f"issue a {engine} query on {database}",
            data={"query": sql, "domain_key": domain_key, "priority": "0"},
            accept=(409,),
        )
        if reply.status == 409:
            job = _conflicting_job(reply)
            if job is None:
                raise ConflictError(
                    f"issue a query on {database}: TD reports the job exists but does not name it"
                )
            return job
        data = reply.json()
        job_id = (data.get("job_id") or data.get("job")) if isinstance(data, dict) else None
        if not job_id:
            raise BackendError("issue a query: Treasure Data answered without a job id")
        return str(job_id)

    async def status(self, job_id: str) -> dict[str, Any]:
        reply = await self.http.request(
            "GET", self._url(f"/v3/job/status/{_seg(job_id)}"), what=f"status of job {job_id}"
        )
        data = reply.json()
        return data if isinstance(data, dict) else {}

    async def show(self, job_id: str) -> dict[str, Any]:
        reply = await self.http.request(
            "GET", self._url(f"/v3/job/show/{_seg(job_id)}"), what=f"show job {job_id}"
        )
        data = reply.json()
        return data if isinstance(data, dict) else {}

    async def kill(self, job_id: str) -> None:
        await self.http.request(
            "POST",
            self._url(f"/v3/job/kill/{_seg(job_id)}"),
            what=f"kill job {job_id}",
            accept=(409,),
        )

    async def wait(self, job_id: str, timeout: float) -> str:
        """Poll until the job is done; kill it and raise QueryError past `timeout` seconds."""
        deadline = time.monotonic() + timeout
        pause = self.poll.first
        while True:
            status = str((await self.status(job_id)).get("status", "")).lower()
            if status in _JOB_DONE:
                return status
            if time.monotonic() >= deadline:
                await self.kill(job_id)
                raise QueryError(f"job {job_id} did not finish within {timeout:.0f} s; killed it")
            await anyio.sleep(min(pause, max(0.0, deadline - time.monotonic())))
            pause = min(pause * self.poll.factor, self.poll.longest)

    async def result(
        self, job_id: str, fmt: str, limit: int | None
    ) -> tuple[list[list[Any]], bool]:
        if fmt not in FORMATS:
            raise BackendError(f"unknown result format {fmt!r}; use one of {', '.join(FORMATS)}")
        return await self.http.stream(
            "GET",
            self._url(f"/v3/job/result/{_seg(job_id)}"),
            lambda chunks: read_rows(chunks, fmt, limit),
            what=f"result of job {job_id}",
            params={"format": fmt},
        )

    async def query(
        self,
        sql: str,
        database: str,
        engine: str = "presto",
        limit: int | None = None,
        fmt: str = "msgpack.gz",
        timeout: float = 1800.0,
    ) -> QueryResult:
        engine = engine.lower()
        if engine not in ENGINES:
            raise QueryError(f"unknown engine {engine!r}; use presto or hive")
        if not sql.strip():
            raise QueryError("no SQL statement to run")
        job_id = await self.issue(sql, database, engine)
        status = await self.wait(job_id, timeout)
        if status != "success":
            raise QueryError(await self.failure(job_id, status))
        shown = await self.show(job_id)
        columns = [c.name for c in mapping.schema_columns(shown.get("hive_result_schema"))]
        rows, truncated = await self.result(job_id, fmt, limit)
        return QueryResult(columns=columns, rows=rows, truncated=truncated)

    async def failure(self, job_id: str, status: str) -> str:
        """The engine's own words for a failed job (`debug.stderr`, else `cmdout`)."""
        debug = (await self.show(job_id)).get("debug")
        text = ""
        if isinstance(debug, dict):
            text = str(debug.get("stderr") or debug.get("cmdout") or "").strip()
        if status == "killed":
            return f"job {job_id} was killed" + (f": {text}" if text else "")
        return f"job {job_id} failed: {text or 'no error detail from the engine'}"
