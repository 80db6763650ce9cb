"""Pipeline state: one JSON file in the workspace, written atomically after every change.

A restarted server or a new agent conversation reads it and continues where the last one
stopped. Writes go to a temp file that is fsynced and renamed over the old one, under an
exclusive file lock, so two tool calls at once cannot interleave, and a crash leaves either
the old state or the new one, never half of each. A file that is not ours, or is corrupt,
is reported and left untouched.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import tempfile
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from typing import IO, Any

import anyio
from pydantic import BaseModel, Field, ValidationError

from cdp_mcp.phases import ORDER, Phase
from cdp_mcp.pipeline.models import PipelineError

SCHEMA_VERSION = 1
STATE_KIND = "cdp-mcp/pipeline-state"
MAX_ATTEMPTS = 3
# A state file is a few hundred KB after many runs; anything far larger is not ours.
MAX_STATE_BYTES = 64 * 2**20
LOCK_POLL_SECONDS = 0.05


def now() -> datetime:
    return datetime.now(UTC)


class StateError(PipelineError):
    """The state file cannot be used; the message says what to do."""


class StepStatus(StrEnum):
    PENDING = "pending"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    TIMED_OUT = "timed_out"
    SKIPPED = "skipped"


class PhaseStatus(StrEnum):
    PENDING = "pending"
    IN_PROGRESS = "in_progress"
    PASSED = "passed"  # validated PASS
    WARNED = "warned"  # validated WARN, not (yet) accepted
    ACCEPTED = "accepted"  # validated WARN, accepted with accept_warnings=true
    FAILED = "failed"  # validated FAIL or a step out of attempts
    SKIPPED = "skipped"


class StepState(BaseModel):
    name: str
    status: StepStatus = StepStatus.PENDING
    attempts: int = 0
    started_at: datetime | None = None
    finished_at: datetime | None = None
    last_error: str | None = None
    session_id: str | None = None
    attempt_id: str | None = None
    details: dict[str, Any] = Field(default_factory=dict)


class PhaseState(BaseModel):
    phase: Phase
    status: PhaseStatus = PhaseStatus.PENDING
    steps: dict[str, StepState] = Field(default_factory=dict)
    files: list[str] = Field(default_factory=list)
    workflows: list[str] = Field(default_factory=list)
    secrets: list[str] = Field(default_factory=list)
    project_id: str | None = None
    revision: str | None = None
    verdict: str | None = None
    validation: dict[str, Any] | None = None
    config_hash: str | None = None

    def validation_warnings(self) -> list[str]:
        return list((self.validation or {}).get("warnings", []))

    def step(self, name: str) -> StepState:
        if name not in self.steps:
            self.steps[name] = StepState(name=name)
        return self.steps[name]


class PipelineState(BaseModel):
    kind: str = STATE_KIND
    schema_version: int = SCHEMA_VERSION
    config_path: str
    config_hash: str
    client: str
    backend: str
    created_at: datetime = Field(default_factory=now)
    updated_at: datetime = Field(default_factory=now)
    run: int = 1  # a finished pipeline started again by init_pipeline is run 2, ...
    aborted: bool = False
    abort_reason: str | None = None
    history: list[dict[str, Any]] = Field(default_factory=list)  # summaries of earlier runs
    phases: dict[Phase, PhaseState] = Field(
        default_factory=lambda: {p: PhaseState(phase=p) for p in ORDER}
    )

    def phase(self, phase: Phase) -> PhaseState:
        return self.phases[phase]


class StateStore:
    """Reads and writes `{workspace}/.cdp_state/state.json` under a file lock."""

    def __init__(self, workspace: Path) -> None:
        self.directory = workspace / ".cdp_state"
        self.path = self.directory / "state.json"
        self._lock_path = self.directory / "state.lock"

    def _lock_file(self) -> IO[str]:
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
            return open(self._lock_path, "a+")
        except OSError as e:
            raise StateError(
                f"the pipeline state folder {self.directory} cannot be used "
                f"({e.strerror or e}): check global.workspace"
            ) from None

    @contextlib.contextmanager
    def locked(self) -> Iterator[None]:
        """Hold the pipeline's exclusive lock (blocks while another call holds it)."""
        with self._lock_file() as fh:
            fcntl.flock(fh, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(fh, fcntl.LOCK_UN)

    @contextlib.asynccontextmanager
    async def alocked(self) -> AsyncIterator[None]:
        """locked() for a coroutine: waits for the lock without blocking the event loop.

        A blocking flock there would stop every other tool call of the server, and
        deadlock one that holds the lock across an await in the same process.
        """
        with self._lock_file() as fh:
            while True:
                try:
                    fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    await anyio.sleep(LOCK_POLL_SECONDS)
            try:
                yield
            finally:
                fcntl.flock(fh, fcntl.LOCK_UN)

    def exists(self) -> bool:
        return self.path.is_file()

    def load(self) -> PipelineState:
        try:
            with self.path.open("rb") as fh:
                data = fh.read(MAX_STATE_BYTES + 1)
        except FileNotFoundError:
            raise StateError(
                f"no pipeline state at {self.path}: call init_pipeline first"
            ) from None
        except OSError as e:
            raise StateError(
                f"state file {self.path} cannot be read ({e.strerror or e}); it was left as it is"
            ) from None
        if len(data) > MAX_STATE_BYTES:
            raise self._corrupt(f"larger than {MAX_STATE_BYTES // 2**20} MiB")
        try:
            doc = json.loads(data.decode("utf-8"))
        except UnicodeDecodeError as e:
            raise self._corrupt(
                f"not UTF-8 text: byte 0x{data[e.start]:02x} at offset {e.start}"
            ) from None
        except json.JSONDecodeError as e:
            raise self._corrupt(f"{e.msg} at line {e.lineno}") from None
        except (ValueError, RecursionError) as e:  # an integer of 5,000 digits; [[[[...
            raise self._corrupt(f"not JSON this reader takes: {type(e).__name__}") from None
        if not isinstance(doc, dict) or doc.get("kind") != STATE_KIND:
            raise StateError(
                f"{self.path} is not a cdp-mcp state file; it was left untouched: point "
                "global.workspace at another folder or move the file away"
            )
        version = doc.get("schema_version")
        if version != SCHEMA_VERSION:
            raise StateError(
                f"state file {self.path} has schema version {str(version)[:20]}, this cdp-mcp reads "
                f"version {SCHEMA_VERSION}; use the matching cdp-mcp version or move it aside"
            )
        try:
            return PipelineState.model_validate(doc)
        except ValidationError as e:
            raise StateError(
                f"state file {self.path} does not match its schema ({e.error_count()} "
                "problems); it was left as it is: move it aside and call init_pipeline"
            ) from None

    def _corrupt(self, why: str) -> StateError:
        return StateError(
            f"state file {self.path} is corrupt ({why}); it was left as it is: move it aside "
            "and call init_pipeline to start the state afresh"
        )

    def save(self, state: PipelineState) -> None:
        state.updated_at = now()
        self.directory.mkdir(parents=True, exist_ok=True)
        text = state.model_dump_json(indent=2)
        fd, tmp = tempfile.mkstemp(prefix=".state-", suffix=".json", dir=self.directory)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as fh:
                fh.write(text)
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, self.path)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
            raise
        dir_fd = os.open(self.directory, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
