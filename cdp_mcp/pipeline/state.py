"""Pipeline state: one JSON file in the workspace, written atomically after every change.

A restarted server or a new agent conversation reads it and continues where the last one
stopped. Writes go to a temp file that is fsynced and renamed over the old one, under an
exclusive file lock, so two tool calls at once cannot interleave, and a crash leaves either
the old state or the new one, never half of each. A file that is not ours, or is corrupt,
is reported and left untouched.

A stage is one phase of one source (ingestion, hist_union, staging) or unification; the
state keys each by `stage_key` (`ingestion:shop`, `unification`). A version-1 file (one
stage per phase, before sources) is migrated on load when the config has one source.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import socket
import tempfile
import time
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from typing import IO, Any

import anyio
from pydantic import BaseModel, Field, ValidationError, model_validator

from cdp_mcp.core import redact
from cdp_mcp.core.phases import ORDER, PER_SOURCE, Phase, per_source
from cdp_mcp.pipeline.models import PipelineError

SCHEMA_VERSION = 2
V1_PHASE_KEYS = tuple(p.value for p in ORDER)
STATE_KIND = "cdp-mcp/pipeline-state"
MAX_ATTEMPTS = 3
# How long a call waits for another call's step on the same pipeline before answering busy.
OPERATION_WAIT_SECONDS = 5.0
# A state file is a few hundred KB after many runs; anything far larger is not ours.
MAX_STATE_BYTES = 64 * 2**20
LOCK_POLL_SECONDS = 0.05


def now() -> datetime:
    return datetime.now(UTC)


class StateError(PipelineError):
    """The state file cannot be used; the message says what to do."""


class BusyError(StateError):
    """Another call (in this process or another) is working on the pipeline right now."""


class StepStatus(StrEnum):
    PENDING = "pending"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    TIMED_OUT = "timed_out"
    SKIPPED = "skipped"
    # The backend does not know the step's attempt (e.g. the local warehouse was reset):
    # neither a success nor a failure of the workflow; a person decides what to do.
    LOST = "lost"


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
    # Set while a call is starting the step's workflow and cleared once the backend's
    # attempt is recorded: a crash in between leaves it, so the next call can adopt the
    # attempt that start may have created instead of counting (or running) a second one.
    starting: dict[str, Any] | None = None


def stage_key(phase: Phase, source: str | None) -> str:
    """The state's key of a stage: `ingestion:shop`, or `unification`."""
    return phase.value if source is None else f"{phase.value}:{source}"


def stage_label(phase: Phase, source: str | None, several: bool) -> str:
    """A stage as a person reads it on a board: `ingestion:shop` when the pipeline has
    several sources, the phase alone when it has one."""
    return stage_key(phase, source) if several else phase.value


class PhaseState(BaseModel):
    """One stage: a per-source phase of `source`, or unification (`source` None)."""

    phase: Phase
    source: str | None = None
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
    # Unification re-opened because sources were added: the sources it had unified and the
    # profiles it had found then, so its next validation says what the added ones brought.
    before_added: dict[str, Any] | None = None

    @property
    def key(self) -> str:
        return stage_key(self.phase, self.source)

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
    # When this run's report was written once it was finished (or aborted): from then on
    # nothing runs on its own, and the next action is the person's decision.
    reported_at: datetime | None = None
    # When a version-1 file was migrated on load (see migrate_v1).
    migrated_from: dict[str, Any] | None = None
    history: list[dict[str, Any]] = Field(default_factory=list)  # summaries of earlier runs
    # Budgets re-opened on the person's word after a fix outside the config (init_pipeline
    # retry_after_fix=true): when, in which run, which steps.
    retries: list[dict[str, Any]] = Field(default_factory=list)
    # The config's sources in its order: each has a stage per PER_SOURCE phase.
    sources: list[str] = Field(default_factory=list)
    stages: dict[str, PhaseState] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _every_stage(self) -> PipelineState:
        self.plan_stages()
        return self

    def plan_stages(self) -> None:
        """A stage for each source's phases and unification (pending until they run)."""
        for source in self.sources:
            for p in PER_SOURCE:
                self.stages.setdefault(stage_key(p, source), PhaseState(phase=p, source=source))
        self.stages.setdefault(Phase.UNIFICATION.value, PhaseState(phase=Phase.UNIFICATION))

    def phase(self, phase: Phase, source: str | None = None) -> PhaseState:
        """The stage of `phase` (and `source`); a pipeline of one source needs no source."""
        if per_source(phase) and source is None:
            if len(self.sources) != 1:
                raise StateError(
                    f"{phase.value} is a phase of each source; name one of: "
                    f"{', '.join(self.sources)}"
                )
            source = self.sources[0]
        ps = self.stages.get(stage_key(phase, source if per_source(phase) else None))
        if ps is None:
            raise StateError(
                f"this pipeline has no source {source!r}; its sources: {', '.join(self.sources)}"
            )
        return ps

    def ordered(self) -> list[PhaseState]:
        """Every stage in run order: each source's phases in config order, then unification."""
        out = [self.stages[stage_key(p, s)] for s in self.sources for p in PER_SOURCE]
        return [*out, self.stages[Phase.UNIFICATION.value]]

    def of_phase(self, phase: Phase) -> list[PhaseState]:
        """The stages of one phase (one per source, or unification's one)."""
        return [ps for ps in self.ordered() if ps.phase is phase]


def _regenerate_renamed(state: PipelineState) -> None:
    """A migrated stage that is not done renders again: its project now has the source in
    its name and folder (`{client}_{source}_{phase}`); a finished one is kept as it ran."""
    done = (PhaseStatus.PASSED, PhaseStatus.ACCEPTED, PhaseStatus.SKIPPED)
    for ps in state.ordered():
        gen = ps.steps.get("generate")
        running = any(s.status is StepStatus.RUNNING for s in ps.steps.values())
        if ps.source is None or ps.status in done or gen is None or running:
            continue
        if gen.status is StepStatus.SUCCEEDED:
            gen.status = StepStatus.PENDING
            gen.last_error = (
                f"projects are per source now ({ps.source}_{ps.phase.value}): generate the "
                "phase again"
            )
        deploy = ps.steps.get("deploy")
        if deploy is not None and deploy.status is StepStatus.SUCCEEDED:
            deploy.status = StepStatus.PENDING


def migrate_v1(doc: dict[str, Any], sources: list[str]) -> dict[str, Any] | None:
    """A version-1 state (one stage per phase, keyed by phase) as version 2, for a config
    of one source; None when it cannot be migrated (several sources: whose were they?)."""
    phases = doc.get("phases")
    if len(sources) != 1 or not isinstance(phases, dict):
        return None
    if not set(phases) <= set(V1_PHASE_KEYS):
        return None
    (source,) = sources
    stages: dict[str, Any] = {}
    for name, ps in phases.items():
        if not isinstance(ps, dict):
            return None
        phase = Phase(name)
        own = source if per_source(phase) else None
        stages[stage_key(phase, own)] = {**ps, "source": own}
    out = {k: v for k, v in doc.items() if k != "phases"}
    out.update(schema_version=SCHEMA_VERSION, sources=[source], stages=stages)
    out["migrated_from"] = {"schema_version": 1, "at": now().isoformat(timespec="seconds")}
    return out


class StateStore:
    """Reads and writes `{workspace}/.cdp_state/state.json` under a file lock."""

    def __init__(self, workspace: Path) -> None:
        self.directory = workspace / ".cdp_state"
        self.path = self.directory / "state.json"
        self._lock_path = self.directory / "state.lock"
        self._operation_path = self.directory / "operation.lock"

    def acquire_operation(self, what: str, wait: float = OPERATION_WAIT_SECONDS) -> int:
        """Take the pipeline's operation lock for one whole step (generate, push, start, ...);
        returns the descriptor to pass to `release_operation`.

        One step at a time per pipeline, across threads and processes: a second server on
        the same workspace, or a second call of this one, gets BusyError naming who holds
        it, instead of racing. The kernel drops a flock when its process dies, so while a
        caller holds this lock, a step still marked running without a live attempt was
        left by a crash.
        """
        self.directory.mkdir(parents=True, exist_ok=True)
        fd = os.open(self._operation_path, os.O_RDWR | os.O_CREAT, 0o644)
        deadline = time.monotonic() + wait
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    message = self._busy_message(fd)
                    os.close(fd)
                    raise BusyError(message) from None
                time.sleep(0.05)
        holder = {"pid": os.getpid(), "host": socket.gethostname(), "doing": what}
        holder["since"] = now().isoformat(timespec="seconds")
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps(holder).encode(), 0)
        return fd

    @staticmethod
    def release_operation(fd: int) -> None:
        try:
            os.ftruncate(fd, 0)
            fcntl.flock(fd, fcntl.LOCK_UN)
        finally:
            os.close(fd)

    @contextlib.contextmanager
    def operation(self, what: str, wait: float = OPERATION_WAIT_SECONDS) -> Iterator[None]:
        fd = self.acquire_operation(what, wait)
        try:
            yield
        finally:
            self.release_operation(fd)

    @staticmethod
    def _busy_message(fd: int) -> str:
        try:
            holder = json.loads(os.pread(fd, 4096, 0) or b"{}")
        except (OSError, ValueError):
            holder = {}
        who = (
            f"{holder.get('doing')} (pid {holder.get('pid')} on {holder.get('host')}, since "
            f"{holder.get('since')})"
            if holder.get("doing")
            else "another call"
        )
        return (
            f"busy: {who} is working on this pipeline right now; nothing was changed. Wait "
            "for it to finish, then call again (pipeline_status shows progress meanwhile)"
        )

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

    def load(self, sources: list[str] | None = None) -> PipelineState:
        """The state; `sources`: the config's, which a version-1 file is migrated to."""
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
        if version == 1:
            return self._migrated(doc, sources)
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

    def _migrated(self, doc: dict[str, Any], sources: list[str] | None) -> PipelineState:
        """A version-1 file, migrated and written back atomically (the caller holds the lock)."""
        migrated = migrate_v1(doc, sources or [])
        if migrated is None:
            raise StateError(
                f"state file {self.path} has schema version 1 (one stage per phase, from "
                f"before pipelines had several sources); the config names "
                f"{len(sources or [])} sources ({', '.join(sources or []) or 'none'}), so its "
                "stages cannot be given to one: it was left as it is. Use the config it was "
                "made with (one source), or move it aside and call init_pipeline"
            )
        try:
            state = PipelineState.model_validate(migrated)
        except ValidationError as e:
            raise StateError(
                f"state file {self.path} (schema version 1) does not match its schema "
                f"({e.error_count()} problems); it was left as it is: move it aside and call "
                "init_pipeline"
            ) from None
        _regenerate_renamed(state)
        self.save(state)
        return state

    def _corrupt(self, why: str) -> StateError:
        return StateError(
            f"state file {self.path} is corrupt ({why}); it was left as it is: move it aside "
            "and call init_pipeline to start the state afresh"
        )

    def save(self, state: PipelineState) -> None:
        state.updated_at = now()
        self.directory.mkdir(parents=True, exist_ok=True)
        # Error texts from a backend land in the state: no secret is written, in any spelling.
        doc = redact.scrub_data(state.model_dump(mode="json"))
        text = json.dumps(doc, indent=2, ensure_ascii=False)
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
