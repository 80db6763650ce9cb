"""API v3 bulk import sessions that really load into the warehouse table.

The life of a session, as TD's clients drive it (td-client-python's BulkImport, pytd's
bulk_import writer, td-client-java's testBulkImport run against TD):

    create (uploading) -> upload_part* -> freeze -> perform (performing -> ready)
    -> commit (committed) -> delete

- A part is msgpack.gz: a gzip stream of msgpack maps, one per record.
- perform is a job of type `bulk_import`. A record is valid when it is a map with string
  keys and an integer `time` (unix seconds); anything else is an error record, returned by
  `error_records` as msgpack.gz. A part that does not decode is an error part and gives no
  records. A part with error records is still a valid part.
- commit appends the valid records to the table by column name and adds the columns it
  lacks (strings -> string, integers -> long, floats -> double, booleans -> boolean, nested
  values -> their JSON text; mixed numbers -> double, other mixes -> string). A value that
  does not fit an existing column's type is stored as null, as TD reads it.
Sessions and parts live under `{workspace}/.cdp_emulator/bulk_import/{name}/`, written
atomically, so a restarted emulator keeps them (a perform cut short can be run again).
"""

from __future__ import annotations

import gzip
import json
import logging
import math
import os
import re
import shutil
import tempfile
import threading
import zlib
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import msgpack

from cdp_mcp.backends.base import BackendError, ConflictError, NotFoundError
from cdp_mcp.backends.local import Warehouse, append_by_name, qualified
from cdp_mcp.core.files import write_text_atomic
from cdp_mcp.core.schema import duckdb_type
from cdp_mcp.core.sqltext import quote_ident
from cdp_mcp.emulator.catalog import Catalog
from cdp_mcp.emulator.errors import RequestError
from cdp_mcp.emulator.job_sql import Outcome
from cdp_mcp.emulator.jobs import Job, JobStore

log = logging.getLogger("cdp_mcp.emulator")
SESSION_NAME = re.compile(r"^[A-Za-z0-9_\-]{1,255}$")
_INT64 = (-(2**63), 2**63 - 1)


@dataclass
class Session:
    name: str
    database: str
    table: str
    status: str = "uploading"
    upload_frozen: bool = False
    job_id: str | None = None
    valid_records: int | None = None
    error_records: int | None = None
    valid_parts: int | None = None
    error_parts: int | None = None
    parts: list[str] = field(default_factory=list)
    columns: dict[str, str] = field(default_factory=dict)  # staged column -> TD type
    params: dict[str, str] = field(default_factory=dict)

    def json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "database": self.database,
            "table": self.table,
            "status": self.status,
            "upload_frozen": self.upload_frozen,
            "job_id": self.job_id,
            "valid_records": self.valid_records,
            "error_records": self.error_records,
            "valid_parts": self.valid_parts,
            "error_parts": self.error_parts,
        }


def check_part_name(part: str) -> None:
    if not part or len(part) > 255 or "/" in part or part.count(".") > 1:
        raise RequestError(
            f"part name must be 1 to 255 characters without '/' and with at most one '.': {part!r}"
        )


class BulkImports:
    def __init__(self, root: Path, catalog: Catalog, jobs: JobStore, warehouse: Warehouse):
        self.root = root
        self.catalog = catalog
        self.jobs = jobs
        self.warehouse = warehouse
        self._lock = threading.RLock()
        self._sessions: dict[str, Session] = {}
        for found in sorted(root.glob("*/session.json")) if root.is_dir() else []:
            session = Session(**json.loads(found.read_text(encoding="utf-8")))
            if session.status == "performing":  # its job ended with the last emulator
                session.status = "uploading"
            if session.status == "committing":  # the load was one transaction: not applied
                session.status = "ready"
            self._sessions[session.name] = session

    # sessions

    def create(self, name: str, database: str, table: str, params: dict[str, str]) -> None:
        if not SESSION_NAME.match(name):
            raise RequestError(
                f"bulk import name must be 1 to 255 letters, digits, '_' or '-': {name!r}"
            )
        self.catalog.require_table(database, table)
        with self._lock:
            if name in self._sessions:
                raise ConflictError(f"Bulk import session '{name}' already exists")
            session = Session(name, database, table, params=dict(params))
            self._sessions[name] = session
            self._save(session)

    def show(self, name: str) -> dict[str, Any]:
        with self._lock:
            return self._get(name).json()

    def sessions(self) -> list[dict[str, Any]]:
        with self._lock:
            return [s.json() for _, s in sorted(self._sessions.items())]

    def delete(self, name: str) -> None:
        with self._lock:
            self._get(name)
            del self._sessions[name]
            shutil.rmtree(self._dir(name), ignore_errors=True)

    def freeze(self, name: str, frozen: bool) -> None:
        with self._lock:
            session = self._get(name)
            if session.status not in ("uploading", "ready"):
                raise RequestError(
                    f"Bulk import session '{name}' is {session.status}; it cannot be "
                    f"{'frozen' if frozen else 'unfrozen'} now"
                )
            session.upload_frozen = frozen
            self._save(session)

    # parts

    def parts(self, name: str) -> list[str]:
        with self._lock:
            return list(self._get(name).parts)

    def check_uploadable(self, name: str) -> None:
        with self._lock:
            session = self._get(name)
            if session.upload_frozen or session.status != "uploading":
                raise RequestError(
                    f"Bulk import session '{name}' is frozen or already performed; "
                    "unfreeze it to upload parts"
                )

    def part_tempfile(self, name: str) -> Path:
        """A fresh file in the session's folder for an upload in progress."""
        folder = self._dir(name) / "parts"
        folder.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".upload-", dir=folder)
        os.close(fd)
        return Path(tmp)

    def add_part(self, name: str, part: str, uploaded: Path) -> None:
        """Adopt an uploaded file as `part` (a part uploaded again replaces the old one)."""
        check_part_name(part)
        with self._lock:
            try:
                self.check_uploadable(name)
            except BackendError:
                uploaded.unlink(missing_ok=True)
                raise
            session = self._get(name)
            os.replace(uploaded, self._part_path(name, part))
            if part not in session.parts:
                session.parts.append(part)
            self._save(session)

    def delete_part(self, name: str, part: str) -> None:
        check_part_name(part)
        with self._lock:
            self.check_uploadable(name)
            session = self._get(name)
            if part not in session.parts:
                raise NotFoundError(f"Bulk import session '{name}' has no part '{part}'")
            session.parts.remove(part)
            self._part_path(name, part).unlink(missing_ok=True)
            self._save(session)

    # perform and commit

    def perform(self, name: str) -> str:
        with self._lock:
            session = self._get(name)
            if not session.upload_frozen:
                raise RequestError(f"Bulk import session '{name}' is not frozen; freeze it first")
            if session.status not in ("uploading", "ready"):
                raise RequestError(f"Bulk import session '{name}' is {session.status}")
            session.status = "performing"
            job = self.jobs.start_work(
                "bulk_import", session.database, lambda job: self._perform(name, job)
            )
            session.job_id = job.id
            self._save(session)
            return job.id

    def commit(self, name: str) -> None:
        with self._lock:
            session = self._get(name)
            if session.status == "committed":
                return
            if session.status != "ready":
                raise RequestError(
                    f"Bulk import session '{name}' is {session.status}; perform it first"
                )
            session.status = "committing"
            self._save(session)
        try:
            self._load(session)
        except BaseException:
            with self._lock:
                session.status = "ready"
                self._save(session)
            raise
        with self._lock:
            session.status = "committed"
            self._save(session)

    def error_records(self, name: str) -> bytes:
        with self._lock:
            self._get(name)
            path = self._dir(name) / "errors.msgpack.gz"
            return path.read_bytes() if path.is_file() else gzip.compress(b"", mtime=0)

    # helpers

    def _get(self, name: str) -> Session:
        session = self._sessions.get(name)
        if session is None:
            raise NotFoundError(f"Bulk import session '{name}' does not exist")
        return session

    def _dir(self, name: str) -> Path:
        return self.root / name

    def _part_path(self, name: str, part: str) -> Path:
        return self._dir(name) / "parts" / part.encode("utf-8").hex()

    def _save(self, session: Session) -> None:
        write_text_atomic(self._dir(session.name) / "session.json", json.dumps(asdict(session)))

    def _perform(self, name: str, job: Job) -> Outcome:
        with self._lock:
            session = self._get(name)
            parts = list(session.parts)
        folder = self._dir(name)
        columns: dict[str, None] = {"time": None}  # in the order records name them
        counts = {"valid_records": 0, "error_records": 0, "valid_parts": 0, "error_parts": 0}
        staged_tmp, errors_tmp = folder / ".staged.json.tmp", folder / ".errors.msgpack.gz.tmp"
        try:
            # The staged records are one JSON array: DuckDB reads it at commit.
            with (
                staged_tmp.open("w", encoding="utf-8") as staged,
                gzip.open(errors_tmp, "wb") as errors,
            ):
                staged.write("[")
                packer = msgpack.Packer(use_bin_type=True)
                for part in parts:
                    try:
                        records = _read_part(self._part_path(name, part))
                    except (OSError, EOFError, ValueError, zlib.error) as e:
                        counts["error_parts"] += 1
                        job.cmdout += f"part {part}: not msgpack.gz ({e}); skipped\n"
                        continue
                    counts["valid_parts"] += 1
                    rows = []
                    for record in records:
                        row = _valid_row(record)
                        if row is None:
                            errors.write(packer.pack(record))
                        else:
                            rows.append(row)
                            columns.update(dict.fromkeys(row))
                    counts["error_records"] += len(records) - len(rows)
                    if rows:
                        staged.write("," if counts["valid_records"] else "")
                        staged.write(json.dumps(rows, allow_nan=False)[1:-1])
                        counts["valid_records"] += len(rows)
                staged.write("]")
            kinds = self._kinds(staged_tmp, list(columns)) if counts["valid_records"] else {}
            os.replace(staged_tmp, folder / "staged.json")
            os.replace(errors_tmp, folder / "errors.msgpack.gz")
        except BaseException:
            with self._lock:
                if name in self._sessions:
                    self._sessions[name].status = "uploading"
                    self._save(self._sessions[name])
            for tmp in (staged_tmp, errors_tmp):
                tmp.unlink(missing_ok=True)
            raise
        job.cmdout += (
            f"{counts['valid_records']} valid records, {counts['error_records']} error records "
            f"in {counts['valid_parts']} parts ({counts['error_parts']} error parts)\n"
        )
        with self._lock:
            if name not in self._sessions:
                raise BackendError(f"bulk import session '{name}' was deleted while performing")
            session = self._sessions[name]
            for key, value in counts.items():
                setattr(session, key, value)
            session.columns = kinds
            session.status = "ready"
            self._save(session)
        return Outcome()

    def _kinds(self, staged: Path, columns: list[str]) -> dict[str, str]:
        """Each staged column's TD type, from the JSON types of its values."""
        as_json = ", ".join(f"{_literal(c)}: 'JSON'" for c in columns)
        seen = ", ".join(f"list(DISTINCT json_type({quote_ident(c)}))" for c in columns)
        with self.warehouse.cursor() as cur:
            row = cur.execute(
                f"SELECT {seen} FROM read_json({_literal(str(staged))}, format = 'array', "
                f"columns = {{{as_json}}})"
            ).fetchone()
        assert row is not None
        return {
            c: _resolve({_JSON_KINDS.get(t, "string") for t in types if t})
            for c, types in zip(columns, row, strict=True)
        }

    def _load(self, session: Session) -> int:
        """Append the staged records to the table in one transaction; rows appended."""
        staged = self._dir(session.name) / "staged.json"
        if not session.valid_records or not staged.is_file():
            self.catalog.require_table(session.database, session.table)
            return 0
        with self.warehouse.cursor(session.database) as cur:
            self.catalog.require_table(session.database, session.table)
            described = cur.execute(
                f"DESCRIBE {qualified(session.database, session.table)}"
            ).fetchall()
            existing = {str(r[0]): str(r[1]) for r in described}
            as_text = ", ".join(
                f"{_literal(c)}: 'VARCHAR'" for c in session.columns
            )  # every value read as text, then cast to the column's type
            selects = []
            for column, td in session.columns.items():
                target = existing.get(column)
                cast = (
                    f"TRY_CAST({quote_ident(column)} AS {target})"
                    if target
                    else (f"CAST({quote_ident(column)} AS {duckdb_type(td)})")
                )
                selects.append(f"{cast} AS {quote_ident(column)}")
            select = (
                f"SELECT {', '.join(selects)} FROM read_json({_literal(str(staged))}, "
                f"format = 'array', columns = {{{as_text}}})"
            )
            return append_by_name(cur, session.database, session.table, select)


def _read_part(path: Path) -> list[Any]:
    """Every object of a msgpack.gz part (several gzip members are read as one stream).

    Read whole: a part is one upload (pytd sends 10,000 records a part), and unpacking from
    memory is several times faster than from a gzip stream.
    """
    data = gzip.decompress(path.read_bytes())
    unpacker = msgpack.Unpacker(raw=False, strict_map_key=False, max_buffer_size=len(data) or 1)
    unpacker.feed(data)
    return list(unpacker)


def _valid_row(record: Any) -> dict[str, Any] | None:
    """The record as staged JSON values, or None for an error record."""
    if type(record) is not dict:
        return None
    time_value = record.get("time")
    if type(time_value) is not int or not _INT64[0] <= time_value <= _INT64[1]:
        return None
    row = {}
    for key, value in record.items():
        if type(key) is not str or not key:
            return None
        kind = type(value)
        if kind is str or value is None or kind is bool:
            row[key] = value
        elif kind is int:
            row[key] = value if _INT64[0] <= value <= _INT64[1] else str(value)
        elif kind is float:
            row[key] = value if math.isfinite(value) else None
        else:
            row[key] = _value(value)
    return row


def _value(value: Any) -> Any:
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace")
    if isinstance(value, list | dict):
        return json.dumps(_plain(value), separators=(",", ":"))
    return str(value)


def _plain(value: Any) -> Any:
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace")
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, list):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {str(_plain(k)): _plain(v) for k, v in value.items()}
    return value


_JSON_KINDS = {"BIGINT": "long", "UBIGINT": "long", "DOUBLE": "double", "BOOLEAN": "boolean"}


def _resolve(kinds: set[str]) -> str:
    if not kinds:  # only nulls
        return "string"
    if kinds == {"long"}:
        return "long"
    if kinds <= {"long", "double"}:
        return "double"
    if kinds == {"boolean"}:
        return "boolean"
    return "string"


def _literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"
