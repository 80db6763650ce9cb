"""API v3 jobs, run on threads: queued -> running -> success | error | killed.

A query job runs its SQL on its own warehouse cursor (job_sql.py), so a kill interrupts the
statement running then. Other jobs (a bulk import's perform) run a function instead. The
JSON follows TD's answers as TD's clients read them: ids are strings, times are API v3's
`2026-01-01 00:00:00 UTC`, `hive_result_schema` is a JSON-encoded string.
"""

from __future__ import annotations

import contextlib
import json
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import duckdb

from cdp_mcp.backends.base import BackendError, ConflictError, NotFoundError
from cdp_mcp.backends.local import Warehouse, prepare_td_functions
from cdp_mcp.emulator import results
from cdp_mcp.emulator.job_sql import Outcome, Stopped, run_job_sql
from cdp_mcp.emulator.shapes import v3_time

log = logging.getLogger("cdp_mcp.emulator")
QUERY_TYPES = ("presto", "trino", "hive")
FINISHED = ("success", "error", "killed")
STATUSES = ("queued", "booting", "running", *FINISHED)
Work = Callable[["Job"], Outcome]


@dataclass
class Job:
    id: str
    type: str
    database: str
    query: str | None
    domain_key: str | None = None
    priority: int = 0
    retry_limit: int = 0
    result_url: str = ""
    scheduled_time: int | None = None  # TD_SCHEDULED_TIME(); Digdag's td> sends the session time
    status: str = "queued"
    created_at: datetime = field(default_factory=lambda: datetime.now(UTC))
    start_at: datetime | None = None
    end_at: datetime | None = None
    outcome: Outcome = field(default_factory=Outcome)
    packed: bytes | None = None  # the result as msgpack.gz, once it succeeded
    cmdout: str = ""
    stderr: str = ""
    cursor: duckdb.DuckDBPyConnection | None = None

    def duration(self) -> int:
        if self.start_at is None:
            return 0
        end = self.end_at or datetime.now(UTC)
        return int((end - self.start_at).total_seconds())

    def status_json(self) -> dict[str, Any]:
        done = self.status == "success"
        return {
            "job_id": self.id,
            "status": self.status,
            "created_at": v3_time(self.created_at),
            "updated_at": v3_time(self.end_at or self.start_at or self.created_at),
            "start_at": v3_time(self.start_at),
            "end_at": v3_time(self.end_at),
            "duration": self.duration(),
            "cpu_time": None,
            "result_size": len(self.packed) if done and self.packed is not None else None,
            "num_records": len(self.outcome.rows) if done else None,
        }

    def summary_json(self) -> dict[str, Any]:
        """A job as `GET /v3/job/list` lists it (show without `debug`)."""
        o = self.outcome
        schema = [[c, t] for c, t in zip(o.columns, o.types, strict=True)]
        return {
            **self.status_json(),
            "type": self.type,
            "database": self.database,
            "query": self.query,
            "hive_result_schema": json.dumps(schema) if self.status == "success" else None,
            "url": "",
            "result": self.result_url,
            "result_url": self.result_url or None,
            "priority": self.priority,
            "retry_limit": self.retry_limit,
            "user_name": "emulator",
            "organization": None,
            "linked_result_export_job_id": None,
            "result_export_target_job_id": None,
        }

    def show_json(self) -> dict[str, Any]:
        return {**self.summary_json(), "debug": {"cmdout": self.cmdout, "stderr": self.stderr}}


class DuplicateDomainKey(ConflictError):
    def __init__(self, job_id: str) -> None:
        super().__init__("Domain key has already been taken")
        self.job_id = job_id


class JobStore:
    def __init__(self, warehouse: Warehouse) -> None:
        self.warehouse = warehouse
        self._jobs: dict[str, Job] = {}
        self._by_domain_key: dict[str, str] = {}
        self._lock = threading.Lock()

    def __len__(self) -> int:
        with self._lock:
            return len(self._jobs)

    def issue(
        self,
        engine: str,
        database: str,
        query: str,
        domain_key: str | None = None,
        **options: Any,
    ) -> Job:
        """A query job running in the background; a reused domain key names its job (409)."""
        if engine not in QUERY_TYPES:
            raise ValueError(f"unknown job type {engine!r}; one of {', '.join(QUERY_TYPES)}")
        return self._start(Job("", engine, database, query, domain_key, **options), self._query)

    def start_work(self, kind: str, database: str, work: Work) -> Job:
        return self._start(Job("", kind, database, None), work)

    def _start(self, job: Job, work: Work) -> Job:
        with self._lock:
            if job.domain_key and job.domain_key in self._by_domain_key:
                raise DuplicateDomainKey(self._by_domain_key[job.domain_key])
            job.id = str(len(self._jobs) + 1)
            self._jobs[job.id] = job
            if job.domain_key:
                self._by_domain_key[job.domain_key] = job.id
        threading.Thread(
            target=self._run, args=(job, work), name=f"td-job-{job.id}", daemon=True
        ).start()
        return job

    def get(self, job_id: str) -> Job:
        with self._lock:
            job = self._jobs.get(job_id)
        if job is None:
            raise NotFoundError(f"Job {job_id} not found")
        return job

    def list(self, first: int, last: int | None, status: str | None) -> list[Job]:
        """Newest first, positions `first` to `last` (inclusive; 20 jobs when not given)."""
        with self._lock:
            jobs = sorted(self._jobs.values(), key=lambda j: int(j.id), reverse=True)
        if status:
            jobs = [j for j in jobs if j.status == status]
        end = first + 20 if last is None else last + 1
        return jobs[max(first, 0) : max(end, 0)]

    def kill(self, job_id: str) -> str:
        """The status before the kill; a running query is interrupted."""
        job = self.get(job_id)
        with self._lock:
            former = job.status
            if former in FINISHED:
                return former
            job.status, job.end_at = "killed", datetime.now(UTC)
            cursor = job.cursor
        if cursor is not None:
            with contextlib.suppress(duckdb.Error):  # the statement just ended
                cursor.interrupt()
        return former

    def result(self, job_id: str) -> Job:
        job = self.get(job_id)
        if job.status != "success":
            raise ConflictError(f"Job {job_id} has no result: its status is {job.status}")
        return job

    # running

    def _run(self, job: Job, work: Work) -> None:
        with self._lock:
            if job.status != "queued":
                return
            job.status, job.start_at = "running", datetime.now(UTC)
        try:
            outcome = work(job)
            packed = results.packed_gz(outcome.rows)
            status, error = "success", ""
        except Stopped:
            return
        except BackendError as e:
            status, error = "error", str(e)
        except Exception as e:  # an emulator bug must still end the job
            log.exception("job %s failed", job.id)
            status, error = "error", f"{type(e).__name__}: {e}"
        with self._lock:
            job.cursor = None
            if job.status == "killed":
                return
            if status == "success":
                job.outcome, job.packed = outcome, packed
            job.status, job.stderr, job.end_at = status, error, datetime.now(UTC)

    def _query(self, job: Job) -> Outcome:
        assert job.query is not None
        engine = job.type
        with self.warehouse.cursor(job.database) as cur:
            with self._lock:
                if job.status == "killed":
                    raise Stopped
                job.cursor = cur
            job.cmdout = f"started at {v3_time(job.start_at)}\nexecuting query: {job.query}\n"
            scheduled = job.scheduled_time
            prepare_td_functions(
                cur, job.query, int(job.created_at.timestamp()) if scheduled is None else scheduled
            )
            return run_job_sql(
                cur, job.query, job.database, engine, stopped=lambda: job.status == "killed"
            )
