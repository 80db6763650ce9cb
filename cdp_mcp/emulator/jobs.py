"""API v3 query jobs, run by the local runtime on threads: queued -> running -> success/error."""

from __future__ import annotations

import json
import threading
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import msgpack

from cdp_mcp.backends.base import BackendError, ConflictError, NotFoundError
from cdp_mcp.backends.local.runtime import LocalRuntime
from cdp_mcp.emulator.shapes import v3_time

RESULT_FORMATS = ("json", "msgpack", "msgpack.gz", "csv", "tsv")
_BATCH = 500  # rows per streamed chunk


@dataclass
class Job:
    id: str
    engine: str
    database: str
    query: str
    domain_key: str | None
    status: str = "queued"
    created_at: datetime = field(default_factory=lambda: datetime.now(UTC))
    start_at: datetime | None = None
    end_at: datetime | None = None
    columns: list[str] = field(default_factory=list)
    types: list[str] = field(default_factory=list)
    rows: list[list[Any]] = field(default_factory=list)
    stderr: str = ""

    def duration(self) -> int:
        if self.start_at is None:
            return 0
        end = self.end_at or datetime.now(UTC)
        return int((end - self.start_at).total_seconds())

    def status_json(self) -> dict[str, Any]:
        return {
            "job_id": self.id,
            "status": self.status,
            "num_records": len(self.rows) if self.status == "success" else None,
            "duration": self.duration(),
            "created_at": v3_time(self.created_at),
            "updated_at": v3_time(self.end_at or self.start_at or self.created_at),
            "start_at": v3_time(self.start_at),
            "end_at": v3_time(self.end_at),
            "cpu_time": None,
            "result_size": None,
        }

    def show_json(self) -> dict[str, Any]:
        schema = [[c, t] for c, t in zip(self.columns, self.types, strict=True)]
        return {
            **self.status_json(),
            "type": self.engine,
            "database": self.database,
            "query": self.query,
            "hive_result_schema": json.dumps(schema) if self.status == "success" else None,
            "debug": {"cmdout": "", "stderr": self.stderr},
            "url": "",
            "result": "",
            "priority": 0,
            "retry_limit": 0,
        }


def _sql_type(values: list[Any]) -> str:
    """The Presto type TD would report, from the first non-null value of a column."""
    for v in values:
        if isinstance(v, bool):
            return "boolean"
        if isinstance(v, int):
            return "bigint"
        if isinstance(v, float):
            return "double"
        if v is not None:
            return "varchar"
    return "varchar"


class JobStore:
    def __init__(self, runtime: LocalRuntime) -> None:
        self.runtime = runtime
        self._jobs: dict[str, Job] = {}
        self._by_domain_key: dict[str, str] = {}
        self._lock = threading.Lock()

    def issue(self, engine: str, database: str, query: str, domain_key: str | None) -> Job:
        """A new job running in the background; ConflictError names the job of a reused key."""
        with self._lock:
            if domain_key and domain_key in self._by_domain_key:
                existing = self._by_domain_key[domain_key]
                raise DuplicateDomainKey(existing)
            job = Job(str(len(self._jobs) + 1), engine, database, query, domain_key)
            self._jobs[job.id] = job
            if domain_key:
                self._by_domain_key[domain_key] = job.id
        threading.Thread(
            target=self._run, args=(job,), name=f"td-job-{job.id}", daemon=True
        ).start()
        return job

    def __len__(self) -> int:
        with self._lock:
            return len(self._jobs)

    def get(self, job_id: str) -> Job:
        with self._lock:
            job = self._jobs.get(job_id)
        if job is None:
            raise NotFoundError(f"Job {job_id} not found")
        return job

    def kill(self, job_id: str) -> str:
        job = self.get(job_id)
        with self._lock:
            former = job.status
            if former in ("queued", "running"):
                job.status, job.end_at = "killed", datetime.now(UTC)
        return former

    def _run(self, job: Job) -> None:
        with self._lock:
            if job.status != "queued":
                return
            job.status, job.start_at = "running", datetime.now(UTC)
        engine = "presto" if job.engine == "trino" else job.engine
        try:
            result = self.runtime.query(job.query, job.database, engine, None)
            outcome, error = "success", ""
        except BackendError as e:
            outcome, error = "error", str(e)
        except Exception as e:  # an emulator bug must still end the job
            outcome, error = "error", f"{type(e).__name__}: {e}"
        with self._lock:
            if job.status == "killed":
                return
            if outcome == "success":
                job.columns = result.columns
                job.rows = result.rows
                job.types = [
                    _sql_type([r[i] for r in result.rows]) for i in range(len(result.columns))
                ]
            job.status, job.stderr, job.end_at = outcome, error, datetime.now(UTC)

    # results

    def result_chunks(self, job_id: str, fmt: str) -> Iterator[bytes]:
        job = self.get(job_id)
        if job.status != "success":
            raise ConflictError(f"Job {job_id} has no result: its status is {job.status}")
        if fmt not in RESULT_FORMATS:
            raise ValueError(f"unknown format {fmt!r}; one of {', '.join(RESULT_FORMATS)}")
        return _encode(job.rows, fmt)


class DuplicateDomainKey(ConflictError):
    def __init__(self, job_id: str) -> None:
        super().__init__("Domain key has already been taken")
        self.job_id = job_id


def _encode(rows: list[list[Any]], fmt: str) -> Iterator[bytes]:
    gz = zlib.compressobj(wbits=31) if fmt == "msgpack.gz" else None
    for start in range(0, len(rows), _BATCH):
        batch = rows[start : start + _BATCH]
        if fmt == "json":
            chunk = b"".join(json.dumps(r).encode() + b"\n" for r in batch)
        elif fmt in ("csv", "tsv"):
            sep = "," if fmt == "csv" else "\t"
            chunk = "".join(sep.join(_cell(v, sep) for v in r) + "\n" for r in batch).encode()
        else:
            chunk = b"".join(msgpack.packb(r, use_bin_type=True) for r in batch)
        if gz is not None:
            chunk = gz.compress(chunk)
        if chunk:
            yield chunk
    if gz is not None:
        yield gz.flush()


def _cell(value: Any, sep: str) -> str:
    text = "" if value is None else str(value)
    if sep in text or '"' in text or "\n" in text:
        text = '"' + text.replace('"', '""') + '"'
    return text
