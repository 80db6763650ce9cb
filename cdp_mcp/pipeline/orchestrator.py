"""The pipeline as a state machine over phases and steps, enforcing the rules itself.

Rules (not left to the prompt): a phase's generate/push/start is refused until the previous
phase validated PASS (or WARN accepted, or was skipped); deploy, each workflow's execution
and validate have at most MAX_ATTEMPTS attempts each; state is saved atomically after every
change, under a file lock, so a restarted server continues where it stopped.

Every method returns a pydantic model (the tool's structured output) or raises
PipelineError with a message that says what to do next.
"""

from __future__ import annotations

import functools
import hashlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Concatenate, NoReturn, ParamSpec, TypeVar

import anyio

from cdp_mcp.backends.base import (
    DONE_TASK_STATES,
    Attempt,
    Backend,
    BackendError,
    ConflictError,
    NotFoundError,
    ProjectRejectedError,
    UnavailableError,
)
from cdp_mcp.backends.factory import make_backend
from cdp_mcp.backends.readonly import ReadOnlyError
from cdp_mcp.core import connectors
from cdp_mcp.core.config import ConfigError, PipelineConfig, load_config
from cdp_mcp.core.file_source import SourceError, find_object_file, select_sql
from cdp_mcp.core.manifest import FileConflictError
from cdp_mcp.core.phases import (
    ORDER,
    Phase,
    expected_tables,
    parse_phase,
    previous,
    project_name,
    workflows,
)
from cdp_mcp.core.roots import OutsideRootsError, Roots
from cdp_mcp.core.tools import ToolName
from cdp_mcp.core.workspace import WorkspaceError, check_workspace, claim_workspace
from cdp_mcp.generate import GenerationError, generate
from cdp_mcp.generate.check import check_project
from cdp_mcp.generate.ingestion import check_incremental_field, load_mode
from cdp_mcp.generate.schemas import predicted_schemas
from cdp_mcp.pipeline import table_check
from cdp_mcp.pipeline.file_upload import ObjectUpload, upload_problems, upload_ranges
from cdp_mcp.pipeline.models import (
    DecisionResult,
    FailedTask,
    GenerateResult,
    InitResult,
    LogsResult,
    PhasePlan,
    PhaseView,
    PipelineError,
    PushResult,
    QueryOutput,
    ReportResult,
    SecretsResult,
    SessionProgress,
    SessionResult,
    StartResult,
    StatusResult,
    StepView,
    ValidationResult,
)
from cdp_mcp.pipeline.nextstep import (
    DONE,
    execute_step,
    format_call,
    next_action,
    out_of_attempts,
)
from cdp_mcp.pipeline.reports import report as report_mod
from cdp_mcp.pipeline.runlogs import write_run_log
from cdp_mcp.pipeline.schemas import phase_schemas
from cdp_mcp.pipeline.secrets import missing_secrets, upload_secrets
from cdp_mcp.pipeline.state import (
    MAX_ATTEMPTS,
    BusyError,
    PhaseState,
    PhaseStatus,
    PipelineState,
    StateError,
    StateStore,
    StepState,
    StepStatus,
    now,
)
from cdp_mcp.pipeline.validate import validate_phase

log = logging.getLogger(__name__)

LOG_PAGE_CHARS = 12_000  # with the JSON around it, a page stays under ~20 KB
LOG_TAIL_LINES = 15
KILL_WAIT_SECONDS = 30.0
MAX_WAIT_SECONDS = 600.0
MAX_QUERY_ROWS = 1_000
NOT_COUNTED = "not counted against the step's attempts"
ProgressFn = Callable[[float, float | None, str], Awaitable[None]]
WatchFn = Callable[[SessionProgress], Awaitable[None]]


def config_hash(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()[:16]


def _files_hash(directory: Path, files: list[str]) -> str:
    digest = hashlib.sha256()
    for rel in sorted(files):
        digest.update(rel.encode() + b"\0" + (directory / rel).read_bytes() + b"\0")
    return digest.hexdigest()[:16]


_P = ParamSpec("_P")
_R = TypeVar("_R")


def _one_step(
    what: str,
) -> Callable[
    [Callable[Concatenate[Pipeline, _P], Awaitable[_R]]],
    Callable[Concatenate[Pipeline, _P], Awaitable[_R]],
]:
    """Run the method under the pipeline's operation lock (one step at a time)."""

    def wrap(
        method: Callable[Concatenate[Pipeline, _P], Awaitable[_R]],
    ) -> Callable[Concatenate[Pipeline, _P], Awaitable[_R]]:
        @functools.wraps(method)
        async def locked(self: Pipeline, /, *args: _P.args, **kwargs: _P.kwargs) -> _R:
            async with self._step_lock(what):
                return await method(self, *args, **kwargs)

        return locked

    return wrap


class Pipeline:
    """One pipeline (one config file); cheap to create per tool call."""

    def __init__(
        self,
        config_path: str | Path,
        backend: Backend | None = None,
        monitor_deadline: float | None = None,
        roots: Roots | None = None,
    ) -> None:
        """`roots`: the folders an MCP client may reach (cdp_mcp/core/roots.py); None for the CLI."""
        try:
            self.config_path = Path(config_path).expanduser().resolve()
        except (OSError, RuntimeError, ValueError) as e:  # a NUL, ~nobody, a symlink loop
            raise PipelineError(
                f"config_path {str(config_path)[:200]!r} is not a usable path ({e})"
            ) from None
        try:
            if roots is not None:
                roots.check(self.config_path, "the config file")
            self.cfg: PipelineConfig = load_config(self.config_path)
            if roots is not None:
                roots.check(self.cfg.workspace, "global.workspace")
                if self.cfg.source_dir is not None:
                    roots.check(self.cfg.source_dir, "ingestion.source_path")
            check_workspace(self.cfg.workspace)
        except ConfigError as e:
            raise PipelineError(
                f"{e}\nFix the config file, then call init_pipeline again."
            ) from None
        except (OutsideRootsError, WorkspaceError) as e:
            raise PipelineError(str(e)) from None
        self.store = StateStore(self.cfg.workspace)
        self._backend = backend
        # seconds; the config's global.monitor_deadline_minutes unless a caller overrides it
        self.monitor_deadline = (
            monitor_deadline
            if monitor_deadline is not None
            else self.cfg.global_.monitor_deadline_minutes * 60
        )

    # -- plumbing --------------------------------------------------------------------
    @property
    def backend(self) -> Backend:
        if self._backend is None:
            self._backend = make_backend(self.cfg)
        return self._backend

    async def aclose(self) -> None:
        """Release the backend's connections (the TD client holds an HTTP pool)."""
        if self._backend is not None:
            await self._backend.aclose()

    def _load(self) -> PipelineState:
        """The state of this config's pipeline (not of another config sharing the workspace)."""
        try:
            state = self.store.load()
        except StateError as e:
            raise PipelineError(str(e)) from None
        if state.config_path != str(self.config_path):
            raise PipelineError(
                f"the workspace {self.cfg.workspace} belongs to the pipeline of "
                f"{state.config_path}; give this config its own global.workspace"
            )
        return state

    @asynccontextmanager
    async def _locked_state(self) -> AsyncIterator[PipelineState]:
        """Load, let the caller change, save: under the pipeline's lock."""
        async with self.store.alocked():
            state = self._load()
            yield state
            self.store.save(state)

    @asynccontextmanager
    async def _step_lock(self, what: str) -> AsyncIterator[None]:
        """One step at a time on this pipeline (see StateStore.acquire_operation); first
        settle what a crashed call left behind, which only the lock's holder can judge."""
        try:
            fd = await anyio.to_thread.run_sync(self.store.acquire_operation, what)
        except BusyError as e:
            raise PipelineError(str(e)) from None
        try:
            if self.store.exists():
                async with self.store.alocked():
                    state = self._load()
                    if state.config_path == str(self.config_path) and _recover_interrupted(state):
                        self.store.save(state)
            yield
        finally:
            self.store.release_operation(fd)

    def _check_runnable(self, state: PipelineState) -> None:
        if state.aborted:
            raise PipelineError(
                "the pipeline was aborted; call final_report for where it stopped, or "
                "init_pipeline(config_path, new_run=true) to start a new run (the person "
                "decides)"
            )
        if state.config_hash != config_hash(self.config_path):
            raise PipelineError(
                f"{self.config_path.name} changed since init_pipeline read it; call "
                "init_pipeline again so the plan and budgets match the file"
            )

    def _gate(self, state: PipelineState, phase: Phase) -> None:
        """Refuse work on a phase until the phase before it is done."""
        self._check_runnable(state)
        prev = previous(phase)
        if prev is None:
            return
        ps = state.phase(prev)
        if ps.status not in DONE:
            hint = {
                PhaseStatus.WARNED: "a person accepts the warnings, or fixes the cause",
                PhaseStatus.FAILED: f"fix {prev.value}, or skip_phase(config_path, "
                f"'{prev.value}', confirm=true)",
            }.get(ps.status, f"finish {prev.value}: generate, push, run, then validate_tables")
            action = next_action(self.cfg, state)
            raise PipelineError(
                f"{phase.value} is locked: {prev.value} has not validated PASS "
                f"(status: {ps.status.value}); {hint}. Next call: {format_call(action)}."
            )

    @staticmethod
    def _begin(step: StepState, what: str, phase: Phase) -> StepStatus:
        """Count an attempt, refusing the one past the budget; returns the status before."""
        if out_of_attempts(step):
            raise PipelineError(
                f"{what} already failed {step.attempts} times (the limit is {MAX_ATTEMPTS}); "
                f"last error: {step.last_error or 'unknown'}. A person chooses: fix the cause "
                "in the config and call init_pipeline(config_path) (then generate_phase "
                f"again), skip_phase(config_path, '{phase.value}', confirm=true), or "
                "abort_pipeline(config_path)."
            )
        prior = step.status
        step.attempts += 1
        step.status = StepStatus.RUNNING
        step.started_at, step.finished_at, step.last_error = now(), None, None
        return prior

    @staticmethod
    def _finish(step: StepState, ok: bool, error: str | None = None) -> None:
        step.status = StepStatus.SUCCEEDED if ok else StepStatus.FAILED
        step.finished_at = now()
        step.last_error = error

    @staticmethod
    def _refund(step: StepState, prior: StepStatus, error: str) -> None:
        """The attempt never reached the backend (it did not answer, or was busy): give it
        back, as the README promises for transport errors, and say so."""
        step.attempts = max(0, step.attempts - 1)
        step.status = prior if prior is not StepStatus.RUNNING else StepStatus.PENDING
        step.finished_at, step.starting = now(), None
        step.last_error = f"{error} ({NOT_COUNTED}: call again once the backend answers)"

    async def _give_back(
        self, phase: Phase, step_name: str, prior: StepStatus, error: str
    ) -> NoReturn:
        """Refund the step's attempt (see `_refund`) and refuse with what happened."""
        async with self._locked_state() as state:
            step = state.phase(phase).step(step_name)
            self._refund(step, prior, error)
            message = step.last_error
        raise PipelineError(str(message))

    def _reset_from(self, state: PipelineState, phase: Phase) -> list[str]:
        """Forget `phase` and every later phase (a new project invalidates what follows)."""
        reset = []
        for p in ORDER[ORDER.index(phase) :]:
            ps = state.phase(p)
            if ps.steps or ps.status is not PhaseStatus.PENDING:
                reset.append(p.value)
            state.phases[p] = PhaseState(phase=p)
        return reset

    # -- init --------------------------------------------------------------------------
    async def init(self, new_run: bool = False) -> InitResult:
        """Create or load the state. A finished (or aborted) pipeline stays as it is unless
        `new_run` says the person wants to start it over: a run is never discarded on its own."""
        chash = config_hash(self.config_path)
        try:
            claim_workspace(self.cfg.workspace)  # before the backend creates anything in it
        except WorkspaceError as e:
            raise PipelineError(str(e)) from None
        preflight = await self._preflight()
        async with self._step_lock(ToolName.INIT_PIPELINE), self.store.alocked():
            resumed, started_new, reset_steps = self.store.exists(), False, []
            if resumed:
                state = self._load()
                if state.config_path != str(self.config_path):
                    raise PipelineError(
                        f"the workspace {self.cfg.workspace} holds the pipeline of "
                        f"{state.config_path}; give this config its own global.workspace"
                    )
                if new_run:
                    running = _running_steps(state)
                    if running:
                        raise PipelineError(
                            f"cannot start a new run while {', '.join(running)} is "
                            "running: wait for it with get_session, or abort_pipeline"
                        )
                    report_mod.archive_reports(self.cfg, state.run)
                    state = self._new_run(state, chash)
                    started_new = True
                elif _finished(state):
                    if state.config_hash != chash:
                        preflight.append(
                            f"{self.config_path.name} changed since run {state.run} "
                            "finished; the finished run is kept as it was. To run the "
                            "new config, the person agrees to a new run: "
                            "init_pipeline(config_path, new_run=true)"
                        )
                elif state.config_hash != chash:
                    reset_steps = self._config_changed(state)
                    state.config_hash = chash
            else:
                state = PipelineState(
                    config_path=str(self.config_path),
                    config_hash=chash,
                    client=self.cfg.client,
                    backend=self.cfg.global_.backend,
                )
            state.backend = self.cfg.global_.backend
            self.store.save(state)
        return InitResult(
            config_path=str(self.config_path),
            client=self.cfg.client,
            backend=self.cfg.global_.backend,
            workspace=str(self.cfg.workspace),
            run=state.run,
            resumed=resumed and not started_new,
            new_run=started_new,
            finished=_finished(state),
            reset_steps=reset_steps,
            phases=await anyio.to_thread.run_sync(self._plan, state),
            preflight=preflight,
            next_action=next_action(self.cfg, state),
        )

    def _new_run(self, old: PipelineState, chash: str) -> PipelineState:
        summary = {
            "run": old.run,
            "aborted": old.aborted,
            "finished_at": old.updated_at.isoformat(),
            "phases": {p.value: old.phase(p).status.value for p in ORDER},
        }
        return PipelineState(
            config_path=old.config_path,
            config_hash=chash,
            client=self.cfg.client,
            backend=self.cfg.global_.backend,
            run=old.run + 1,
            history=[*old.history, summary],
        )

    def _config_changed(self, state: PipelineState) -> list[str]:
        """A fixed config re-opens the budgets of the steps that ran out or failed."""
        reset = []
        for p in ORDER:
            ps = state.phase(p)
            if ps.status is PhaseStatus.FAILED:
                ps.status = PhaseStatus.IN_PROGRESS
            for step in ps.steps.values():
                if step.status in (StepStatus.FAILED, StepStatus.TIMED_OUT) or out_of_attempts(
                    step
                ):
                    step.attempts, step.status = 0, StepStatus.PENDING
                    reset.append(f"{p.value}.{step.name}")
            # The project of an unfinished phase was rendered from the old file: it must be
            # generated again before it is pushed or run (an unchanged render keeps the steps).
            gen = ps.steps.get("generate")
            running = any(s.status is StepStatus.RUNNING for s in ps.steps.values())
            if ps.status not in DONE and gen is not None and not running:
                gen.status = StepStatus.PENDING
                gen.last_error = "the config changed: generate the phase again"
                reset.append(f"{p.value}.generate")
        return reset

    async def _preflight(self) -> list[str]:
        """What was checked before anything is generated, in words a person reads."""
        notes = []
        if self.cfg.ingestion.connector == "file" and self.cfg.source_dir is not None:
            try:
                schemas = await anyio.to_thread.run_sync(predicted_schemas, self.cfg)
                check_incremental_field(self.cfg, schemas)
            except SourceError as e:
                raise PipelineError(f"ingestion.source_path: {e}") from None
            except GenerationError as e:
                raise PipelineError(
                    f"{e}\nFix the config file, then call init_pipeline again."
                ) from None
            notes.append(
                f"source files readable: {', '.join(self.cfg.ingestion.objects)} "
                f"({sum(1 for k in schemas if k.endswith('_hist'))} objects)"
            )
            if load_mode(self.cfg) == "upload":
                problems = upload_problems(self.cfg)
                if problems:
                    raise PipelineError("\n".join(problems))
                notes.append(
                    "Treasure Data cannot read these files: each ingestion run uploads its "
                    "range of them with TD's bulk import into a landing table "
                    f"({self.cfg.src_db}.<table>_landing), which the workflow appends from"
                )
        else:
            notes.extend(self._connector_preflight())
        if self.cfg.global_.backend == "treasuredata":
            notes.extend(await self._td_preflight())
        else:
            notes.append(f"local backend: warehouse in {self.cfg.workspace / '.cdp_local'}")
        return notes

    def _connector_preflight(self) -> list[str]:
        """A TD connector: on the local backend it dry-runs on extracts, which must exist."""
        conn = connectors.get(self.cfg.ingestion.connector)
        if conn is None:  # the config refuses this
            return []
        if self.cfg.global_.backend == "treasuredata":
            return [f"TD's {conn.title} connector ({conn.type}) loads each object on TD"]
        folder = self.cfg.source_dir
        if folder is None:
            raise PipelineError(
                f"ingestion.source_path: the local backend dry-runs TD's {conn.type} connector "
                "on extracts of each object, shaped as the connector delivers them; give the "
                "folder holding "
                + "; ".join(
                    f"{o}.{'|'.join(conn.extract_formats)} ({conn.shape(o, self.cfg.ingestion.connector_settings)})"
                    for o in self.cfg.ingestion.objects
                )
                + ", or set global.backend: treasuredata to load from the real source"
            )
        missing = []
        for obj in self.cfg.ingestion.objects:
            try:
                select_sql(find_object_file(folder, obj, conn.extract_formats), names_as="lower")
            except SourceError as e:
                missing.append(f"- {e} ({conn.shape(obj, self.cfg.ingestion.connector_settings)})")
        if missing:
            raise PipelineError(
                f"ingestion.source_path: the local dry run of TD's {conn.type} connector "
                "needs an extract per object:\n" + "\n".join(missing)
            )
        return [f"dry run of TD's {conn.title} connector ({conn.type}) on the extracts in {folder}"]

    async def _td_preflight(self) -> list[str]:
        try:
            await self.backend.check_auth()  # the key works on the API and the workflow host
            dbs = set(await self.backend.databases())
            try:
                known = predicted_schemas(self.cfg)
            except SourceError:
                known = {}
            written = table_check.written_tables(self.cfg, known)
            on_td = {w.database for w in written} & dbs
            existing = await table_check.existing_tables(self.backend, on_td)
        except BackendError as e:
            raise PipelineError(f"Treasure Data preflight failed: {e}") from None
        tables = table_check.check(self.cfg, written, existing)
        if tables.problems:
            listing = "\n".join(f"- {p}" for p in tables.problems)
            raise PipelineError(
                "tables already in the account do not take what the pipeline writes into "
                f"them; nothing was created or run:\n{listing}"
            )
        wanted = [self.cfg.src_db, self.cfg.stg_db, self.cfg.config_db]
        missing = [d for d in wanted if d not in dbs]
        notes = [f"API key accepted by {self.cfg.global_.td_endpoint}"]
        if missing:
            notes.append(
                f"databases the workflows will create: {', '.join(missing)} (confirm with the "
                "person before the first run; the key needs permission to create databases)"
            )
        else:
            notes.append(f"databases exist: {', '.join(wanted)}")
        return notes + tables.notes

    def _plan(self, state: PipelineState) -> list[PhasePlan]:
        try:
            schemas = predicted_schemas(self.cfg)
        except SourceError:
            schemas = {}
        plans = []
        for p in ORDER:
            try:
                tables = [t.qualified for t in expected_tables(self.cfg, p, schemas)]
            except (ConfigError, GenerationError):
                tables = []  # unification tables are known once staging columns are
            plans.append(
                PhasePlan(
                    phase=p.value,
                    status=state.phase(p).status.value,
                    project=project_name(self.cfg, p),
                    workflows=workflows(self.cfg, p),
                    tables=tables,
                )
            )
        return plans

    # -- generate / push ---------------------------------------------------------------
    @_one_step(ToolName.GENERATE_PHASE)
    async def generate_phase(self, phase_name: str) -> GenerateResult:
        phase = self._phase(phase_name)
        schemas = await phase_schemas(self.cfg, self.backend, phase)
        async with self._locked_state() as state:
            self._gate(state, phase)
            ps = state.phase(phase)
            for step in ps.steps.values():
                if out_of_attempts(step):
                    raise PipelineError(
                        f"{phase.value}: step {step.name} is out of attempts; regenerating the "
                        "same config would not change that. Fix the config and call "
                        "init_pipeline, or skip_phase / abort_pipeline."
                    )
            try:
                project = await anyio.to_thread.run_sync(generate, self.cfg, phase, schemas)
            except (GenerationError, ConfigError, SourceError) as e:
                raise PipelineError(f"generating {phase.value} failed: {e}") from None
            problems = await anyio.to_thread.run_sync(check_project, project.directory)
            if problems:
                listing = "\n".join(f"- {p}" for p in problems[:20])
                raise PipelineError(
                    f"the generated {phase.value} project failed its structural check:\n{listing}"
                )
            fhash = _files_hash(project.directory, project.files)
            changed = ps.config_hash != fhash
            reset: list[str] = []
            if changed:
                reset = [p for p in self._reset_from(state, phase) if p != phase.value]
                ps = state.phase(phase)
            ps.config_hash = fhash
            if changed or ps.status is PhaseStatus.PENDING:
                ps.status = PhaseStatus.IN_PROGRESS  # an unchanged render keeps its verdict
            ps.files, ps.workflows, ps.secrets = project.files, project.workflows, project.secrets
            gen = ps.step("generate")
            gen.attempts += 1
            self._finish(gen, True)
            gen.details = {"directory": str(project.directory)}
            action = next_action(self.cfg, state)
        return GenerateResult(
            phase=phase.value,
            directory=str(project.directory),
            files=project.files,
            workflows=project.workflows,
            secrets=project.secrets,
            changed=changed,
            reset_phases=reset,
            next_action=action,
        )

    @_one_step(ToolName.PUSH_PROJECT)
    async def push_project(self, phase_name: str) -> PushResult:
        phase = self._phase(phase_name)
        async with self._locked_state() as state:
            self._gate(state, phase)
            ps = state.phase(phase)
            gen = ps.steps.get("generate")
            if gen is None or gen.status is not StepStatus.SUCCEEDED:
                raise PipelineError(
                    f"generate {phase.value} first: generate_phase(config_path, '{phase.value}')"
                )
            step = ps.step("deploy")
            prior = self._begin(step, f"deploying {phase.value}", phase)
        name = project_name(self.cfg, phase)
        directory = self.cfg.workspace / phase.value
        error: str | None = None
        project = None
        try:
            project = await self.backend.push(name, directory)
        except ProjectRejectedError as e:
            where = f" ({e.file}:{e.line})" if e.file else ""
            error = f"the project was rejected{where}: {e}"
        except UnavailableError as e:
            await self._give_back(phase, "deploy", prior, f"push failed: {e}")
        except BackendError as e:
            error = f"push failed: {e}"
        except Exception as e:  # a bug must not leave the step running forever
            error = _internal(e, f"pushing {phase.value}")
        missing: list[str] = []
        if project is not None:
            async with self.store.alocked():
                wanted = self._load().phase(phase).secrets
            missing = await missing_secrets(self.backend, name, wanted)
        async with self._locked_state() as state:
            ps = state.phase(phase)
            step = ps.step("deploy")
            self._finish(step, project is not None, error)
            step.details["missing_secrets"] = missing
            if project is not None:
                ps.project_id, ps.revision = project.id, project.revision
                # A new revision means the workflows run anew.
                for wf in workflows(self.cfg, phase):
                    ex = ps.steps.get(execute_step(wf))
                    if ex is not None and ex.details.get("revision") != project.revision:
                        ps.steps[execute_step(wf)] = StepState(name=execute_step(wf))
            action = next_action(self.cfg, state)
            attempts = step.attempts
        if project is None:
            raise PipelineError(
                f"{error}. Attempt {attempts} of {MAX_ATTEMPTS}. Fix the cause (regenerate after a "
                "config change) and call push_project again, or skip/abort."
            )
        return PushResult(
            phase=phase.value,
            project=name,
            project_id=project.id,
            revision=project.revision,
            attempt=attempts,
            missing_secrets=missing,
            next_action=action,
        )

    @_one_step(ToolName.SET_SECRETS)
    async def set_secrets(self, phase_name: str, names: list[str]) -> SecretsResult:
        """Upload project secrets from the server's environment (values never pass here)."""
        phase = self._phase(phase_name)
        async with self._locked_state() as state:
            self._gate(state, phase)
            deploy = state.phase(phase).steps.get("deploy")
            if deploy is None or deploy.status is not StepStatus.SUCCEEDED:
                raise PipelineError(
                    f"push {phase.value} first (secrets belong to the pushed project): "
                    f"push_project(config_path, '{phase.value}')"
                )
            wanted = state.phase(phase).secrets
        unknown = [n for n in names if n not in wanted]
        if unknown:
            raise PipelineError(
                f"the {phase.value} project does not reference {', '.join(unknown)}; it uses: "
                f"{', '.join(wanted) or 'no secrets'}"
            )
        project = project_name(self.cfg, phase)
        done, missing_env = await upload_secrets(self.cfg, self.backend, project, names)
        still = await missing_secrets(self.backend, project, wanted)
        async with self._locked_state() as state:
            state.phase(phase).step("deploy").details["missing_secrets"] = still
            action = next_action(self.cfg, state)
        return SecretsResult(
            phase=phase.value,
            project=project,
            set=done,
            missing_env=missing_env,
            still_missing=still,
            next_action=action,
        )

    # -- execute / monitor -------------------------------------------------------------
    @_one_step(ToolName.START_WORKFLOW)
    async def start_workflow(self, phase_name: str, workflow: str | None = None) -> StartResult:
        phase = self._phase(phase_name)
        names = workflows(self.cfg, phase)
        async with self._locked_state() as state:
            self._gate(state, phase)
            ps = state.phase(phase)
            gen = ps.steps.get("generate")
            if gen is None or gen.status is not StepStatus.SUCCEEDED:
                raise PipelineError(
                    f"generate {phase.value} first"
                    + (f" ({gen.last_error})" if gen is not None and gen.last_error else "")
                    + f": generate_phase(config_path, '{phase.value}'), then push_project"
                )
            deploy = ps.steps.get("deploy")
            if deploy is None or deploy.status is not StepStatus.SUCCEEDED:
                raise PipelineError(
                    f"deploy {phase.value} first: push_project(config_path, '{phase.value}')"
                )
            recorded_missing = list(deploy.details.get("missing_secrets") or [])
            wf = workflow or self._next_workflow(ps, names)
            if wf not in names:
                raise PipelineError(
                    f"{phase.value} has no workflow {wf!r}; its workflows, in run order: {', '.join(names)}"
                )
            earlier = names[: names.index(wf)]
            pending = [
                w for w in earlier if ps.step(execute_step(w)).status is not StepStatus.SUCCEEDED
            ]
            if pending:
                raise PipelineError(
                    f"run {', '.join(pending)} before {wf} (workflows run in order: {', '.join(names)})"
                )
            step = ps.step(execute_step(wf))
            if step.status is StepStatus.RUNNING:
                raise PipelineError(
                    f"{wf} is already running (attempt {step.attempt_id}); call "
                    f"get_session(config_path, '{step.session_id}', wait_seconds=60)"
                )
            if step.status is StepStatus.SUCCEEDED:
                raise PipelineError(
                    f"{wf} already succeeded in this run; to run the phase again, call "
                    f"generate_phase(config_path, '{phase.value}') after changing the config, or "
                    "init_pipeline once the pipeline is finished to start a new run"
                )
            resume_from = (
                step.attempt_id
                if step.status in (StepStatus.FAILED, StepStatus.TIMED_OUT)
                else None
            )
            if recorded_missing:
                # Set since (e.g. with `td wf secrets`)? Ask the backend before refusing.
                still = await missing_secrets(
                    self.backend, project_name(self.cfg, phase), recorded_missing
                )
                deploy.details["missing_secrets"] = still
                if still:
                    raise PipelineError(
                        f"{wf} would fail: the project lacks secrets {', '.join(still)}. Set "
                        "them from the server's environment with set_secrets(config_path, "
                        f"'{phase.value}', names={still}) (see README: secrets)"
                    )
            # An earlier start that a crash interrupted may have created its session: ask for
            # that same session time first, and adopt what it made (see _recover_interrupted).
            interrupted_start = step.details.get("interrupted_start") or {}
            asked = now()
            session_time = (
                interrupted_start.get("session_time")
                if resume_from is None and interrupted_start.get("session_time")
                else asked.replace(microsecond=0).isoformat()
            )
            prior = self._begin(step, f"running {wf}", phase)
            step.starting = {
                "session_time": session_time,
                "asked_at": interrupted_start.get("asked_at") or asked.isoformat(),
                "resume_from": resume_from,
            }
            revision = ps.revision
            starting = dict(step.starting)
        uploads: list[ObjectUpload] = []
        try:
            if resume_from is not None:
                await self._end_timed_out(resume_from)
                if self._uploads_files(phase):
                    resumed = await self.backend.attempt(resume_from)
                    uploads = await upload_ranges(self.cfg, self.backend, wf, resumed.session_time)
                attempt = await self.backend.retry(resume_from, resume_failed=True)
            else:
                if self._uploads_files(phase):
                    # The range the attempt will read, at the session time it will have (a
                    # start that finds the second taken moves one second on; only a start
                    # at a month's last second would see another default split point).
                    uploads = await upload_ranges(
                        self.cfg, self.backend, wf, datetime.fromisoformat(starting["session_time"])
                    )
                attempt = await self._start_new_session(
                    project_name(self.cfg, phase),
                    wf,
                    datetime.fromisoformat(starting["session_time"]),
                    datetime.fromisoformat(starting["asked_at"]),
                )
        except UnavailableError as e:
            await self._give_back(phase, execute_step(wf), prior, f"starting {wf} failed: {e}")
        except Exception as e:
            error = f"starting {wf} failed: {e}"
            if not isinstance(e, BackendError):  # a bug must not leave the step running
                error = _internal(e, f"starting {wf}")
            async with self._locked_state() as state:
                failed = state.phase(phase).step(execute_step(wf))
                self._finish(failed, False, error)
                failed.starting = None
            raise PipelineError(error) from None
        async with self._locked_state() as state:
            step = state.phase(phase).step(execute_step(wf))
            step.session_id, step.attempt_id = attempt.session_id, attempt.id
            step.starting = None
            interruptions = step.details.get("interruptions", 0)
            step.details = {"revision": revision, "started_by": "retry" if resume_from else "start"}
            if uploads:
                step.details["uploaded"] = {u.object: u.rows for u in uploads}
            if interruptions:
                step.details["interruptions"] = interruptions
            attempts = step.attempts
            action = next_action(self.cfg, state)
        return StartResult(
            phase=phase.value,
            workflow=wf,
            session_id=attempt.session_id,
            attempt_id=attempt.id,
            resumed_failed_tasks=resume_from is not None,
            attempt=attempts,
            next_action=action,
        )

    def _uploads_files(self, phase: Phase) -> bool:
        """Connector `file` on Treasure Data: cdp-mcp uploads each range before the run."""
        return phase is Phase.INGESTION and load_mode(self.cfg) == "upload"

    async def _start_new_session(
        self, project: str, workflow: str, when: datetime, asked: datetime
    ) -> Attempt:
        """Start a session of its own at `when` or just after: a session time already used
        (two starts within one second) hands back that session's old attempt, as Digdag's
        409 does; one created since `asked` is this start's own (or an interrupted earlier
        try of it), and is adopted."""
        for _ in range(30):
            attempt = await self.backend.start(project, workflow, session_time=when)
            if not (attempt.done and attempt.created_at < asked):
                return attempt
            when += timedelta(seconds=1)
        raise PipelineError(f"could not find a free session time for {workflow}")

    async def _end_timed_out(self, attempt_id: str) -> None:
        """A retry after the monitor deadline first kills the attempt still running."""
        current = await self.backend.attempt(attempt_id)
        if current.done:
            return
        try:
            await self.backend.kill(attempt_id)
        except ConflictError:
            return  # it ended meanwhile
        current = await self.backend.wait(attempt_id, timeout=KILL_WAIT_SECONDS)
        if not current.done:
            raise BackendError(
                f"attempt {attempt_id} did not stop within {KILL_WAIT_SECONDS:.0f}s of the kill "
                "request; wait with get_session, then retry"
            )

    @staticmethod
    def _next_workflow(ps: PhaseState, names: list[str]) -> str:
        for wf in names:
            if ps.step(execute_step(wf)).status is not StepStatus.SUCCEEDED:
                return wf
        raise PipelineError(
            f"every workflow of {ps.phase.value} already succeeded; next: "
            f"validate_tables(config_path, '{ps.phase.value}')"
        )

    def _find_step(self, state: PipelineState, session_id: str | None) -> tuple[Phase, StepState]:
        candidates = [
            (p, s)
            for p in ORDER
            for s in state.phase(p).steps.values()
            if s.name.startswith("execute:") and s.session_id
        ]
        if session_id is not None:
            for p, s in candidates:
                if s.session_id == session_id:
                    return p, s
            raise PipelineError(
                f"session {session_id} is not one of this pipeline's; pipeline_status lists them"
            )
        running = [c for c in candidates if c[1].status is StepStatus.RUNNING]
        pool = running or candidates
        if not pool:
            raise PipelineError("no workflow was started yet; start_workflow first")
        return max(pool, key=lambda c: c[1].started_at or datetime.min.replace(tzinfo=UTC))

    async def get_session(
        self,
        session_id: str | None = None,
        wait_seconds: float = 0,
        progress: ProgressFn | None = None,
        watch: WatchFn | None = None,
    ) -> SessionResult:
        async with self.store.alocked():
            state = self._load()
            phase, step = self._find_step(state, session_id)
        assert step.attempt_id is not None and step.session_id is not None
        wait_seconds = max(0.0, min(float(wait_seconds), MAX_WAIT_SECONDS))
        deadline = anyio.current_time() + wait_seconds
        started = step.started_at or now()
        pause = 0.05
        reported = -1.0
        while True:
            attempt, tasks = await self._attempt_and_tasks(step.attempt_id, phase, step.name)
            elapsed = (now() - started).total_seconds()
            done = sum(1 for t in tasks if t.state in DONE_TASK_STATES)
            # MCP progress must increase with every notification: report each new task done.
            if progress is not None and done > reported:
                reported = done
                await progress(
                    done,
                    len(tasks) or None,
                    f"{attempt.workflow}: {done}/{len(tasks)} tasks, {elapsed:.0f}s",
                )
            if watch is not None:  # every poll: the tasks running now, for a live display
                running = [t for t in tasks if t.state == "running" and not t.is_group]
                running.sort(
                    key=lambda t: t.started_at.timestamp() if t.started_at else 0.0, reverse=True
                )
                await watch(
                    SessionProgress(
                        session_id=step.session_id,
                        attempt_id=attempt.id,
                        phase=phase.value,
                        workflow=attempt.workflow,
                        elapsed_seconds=round(elapsed, 1),
                        tasks_total=len(tasks),
                        tasks_done=done,
                        running_tasks=[t.full_name for t in running],
                    )
                )
            if attempt.done or anyio.current_time() >= deadline:
                break
            if step.status is StepStatus.RUNNING and elapsed > self.monitor_deadline:
                break  # past the monitor deadline: the person decides, not the wait
            # Poll often at first (short tasks end fast), then once a second.
            await anyio.sleep(min(pause, max(0.0, deadline - anyio.current_time())))
            pause = min(pause * 1.5, 1.0)
        return await self._record_session(phase, step.name, attempt, tasks)

    async def _attempt_and_tasks(
        self, attempt_id: str, phase: Phase | None = None, step_name: str | None = None
    ) -> tuple[Attempt, list]:
        try:
            return await self.backend.attempt(attempt_id), await self.backend.tasks(attempt_id)
        except NotFoundError as e:
            if phase is not None and step_name is not None:
                await self._mark_lost(phase, step_name, attempt_id, str(e))
            raise PipelineError(f"reading attempt {attempt_id} failed: {e}") from None
        except BackendError as e:
            raise PipelineError(f"reading attempt {attempt_id} failed: {e}") from None

    async def _mark_lost(
        self, phase: Phase, step_name: str, attempt_id: str, error: str
    ) -> NoReturn:
        """The backend does not know the step's attempt: waiting for it would never end."""
        async with self._locked_state() as state:
            step = state.phase(phase).step(step_name)
            open_states = (StepStatus.RUNNING, StepStatus.TIMED_OUT)
            if step.attempt_id == attempt_id and step.status in open_states:
                step.status, step.finished_at = StepStatus.LOST, now()
                step.attempts = max(0, step.attempts - 1)
                step.last_error = (
                    f"the backend does not know attempt {attempt_id} ({error}): it was lost, "
                    "e.g. the workspace's .cdp_local folder was removed or the project was "
                    f"deleted on the server; {NOT_COUNTED}"
                )
            message = step.last_error or error
            action = next_action(self.cfg, state)
        choices = "\n".join(f"- {c}" for c in action.choices)
        raise PipelineError(f"{message}. A person decides:\n{choices}")

    async def _record_session(
        self, phase: Phase, step_name: str, attempt: Attempt, tasks: list
    ) -> SessionResult:
        await write_run_log(self.cfg.workspace, phase.value, attempt, tasks, self.backend)
        failed = [t for t in tasks if t.state in ("error",) and not t.is_group]
        failed_out = [
            FailedTask(
                name=t.full_name,
                error=t.error,
                log_tail=await self._log_tail(attempt.id, t.full_name),
            )
            for t in failed[:5]
        ]
        by_state: dict[str, int] = {}
        for t in tasks:
            by_state[t.state] = by_state.get(t.state, 0) + 1
        timed_out = False
        async with self._locked_state() as state:
            step = state.phase(phase).step(step_name)
            # A timed-out attempt that ended later still counts for what it did.
            open_states = (StepStatus.RUNNING, StepStatus.TIMED_OUT)
            # While a start is in flight (step.starting), its call records the outcome.
            recordable = step.starting is None and step.attempt_id == attempt.id
            if recordable and step.status in open_states:
                if attempt.done and attempt.interrupted:
                    self._interrupted_run(step)
                elif attempt.done:
                    errors = (
                        "; ".join(f"{t.full_name}: {t.error}" for t in failed[:3]) or attempt.status
                    )
                    self._finish(
                        step, attempt.status == "success", None if attempt.success else errors
                    )
                elif (
                    step.status is StepStatus.RUNNING
                    and step.started_at
                    and (now() - step.started_at).total_seconds() > self.monitor_deadline
                ):
                    step.status, step.finished_at = StepStatus.TIMED_OUT, now()
                    step.last_error = (
                        f"still running after {_duration(self.monitor_deadline)} (the monitor "
                        "deadline); kill and retry it with start_workflow, or wait longer with "
                        "get_session"
                    )
                    timed_out = True
            timed_out = timed_out or step.status is StepStatus.TIMED_OUT
            action = next_action(self.cfg, state)
        started = step.started_at or attempt.created_at
        end = attempt.finished_at or now()
        return SessionResult(
            session_id=attempt.session_id,
            attempt_id=attempt.id,
            phase=phase.value,
            workflow=attempt.workflow,
            status=attempt.status,
            elapsed_seconds=round((end - started).total_seconds(), 1),
            tasks_total=len(tasks),
            tasks_done=sum(
                1 for t in tasks if t.state in ("success", "error", "group_error", "canceled")
            ),
            tasks_by_state=by_state,
            failed_tasks=failed_out,
            timed_out=timed_out,
            next_action=action,
        )

    @staticmethod
    def _interrupted_run(step: StepState) -> None:
        """The runner running the attempt stopped (its process exited): not the workflow's
        failure, so the attempt is given back and start_workflow resumes its failed tasks."""
        step.attempts = max(0, step.attempts - 1)
        step.status, step.finished_at = StepStatus.FAILED, now()
        step.details["interruptions"] = step.details.get("interruptions", 0) + 1
        step.details["interrupted"] = True  # until the next attempt starts
        step.last_error = (
            "the runner stopped while the workflow ran (its process exited: a restart, a "
            f"kill or a crash); {NOT_COUNTED}: start_workflow resumes the tasks that did "
            "not finish"
        )

    async def _log_tail(self, attempt_id: str, task: str) -> str:
        try:
            files = await self.backend.log_files(attempt_id, task)
            own = [f for f in files if f.task_name == task] or files
            if not own:
                return ""
            text = await self.backend.read_log(attempt_id, own[-1].file_name)
        except BackendError:
            return ""
        return "\n".join(text.rstrip().splitlines()[-LOG_TAIL_LINES:])

    async def get_logs(
        self, attempt_id: str, task: str | None = None, offset: int = 0
    ) -> LogsResult:
        try:
            files = await self.backend.log_files(attempt_id, task)
            texts = [await self.backend.read_log(attempt_id, f.file_name) for f in files]
        except BackendError as e:
            raise PipelineError(f"reading logs of attempt {attempt_id} failed: {e}") from None
        full = "".join(texts)
        offset = max(0, offset)
        page = full[offset : offset + LOG_PAGE_CHARS]
        end = offset + len(page)
        # Name only the files this page's text comes from: an attempt of a big phase has
        # hundreds of log files, and the page must stay small.
        on_page, start = [], 0
        for f, text in zip(files, texts, strict=True):
            if start < end and start + len(text) > offset:
                on_page.append(f.file_name)
            start += len(text)
        return LogsResult(
            attempt_id=attempt_id,
            task=task,
            files=on_page,
            offset=offset,
            next_offset=end if end < len(full) else None,
            text=page,
        )

    # -- validate ----------------------------------------------------------------------
    @_one_step(ToolName.VALIDATE_TABLES)
    async def validate_tables(
        self, phase_name: str, accept_warnings: bool = False
    ) -> ValidationResult:
        phase = self._phase(phase_name)
        async with self._locked_state() as state:
            self._gate(state, phase)
            ps = state.phase(phase)
            not_run = [
                wf
                for wf in workflows(self.cfg, phase)
                if ps.step(execute_step(wf)).status is not StepStatus.SUCCEEDED
            ]
            if not_run:
                raise PipelineError(
                    f"{phase.value} cannot be validated before its workflows succeed; not yet: "
                    f"{', '.join(not_run)}. Next: start_workflow(config_path, '{phase.value}')"
                )
            # Accepting the warnings of the validation already done is a decision, not a new attempt.
            if accept_warnings and ps.status is PhaseStatus.WARNED:
                ps.status = PhaseStatus.ACCEPTED
                ps.step("validate").details["accepted_warnings"] = True
                return self._validation_result(state, ps, accepted=True)
            prior = self._begin(ps.step("validate"), f"validating {phase.value}", phase)
        try:
            schemas = await phase_schemas(self.cfg, self.backend, phase, for_validation=True)
            findings = await validate_phase(self.cfg, phase, self.backend, schemas)
        except UnavailableError as e:
            await self._give_back(phase, "validate", prior, f"validating {phase.value} failed: {e}")
        except (BackendError, ConfigError, PipelineError) as e:
            async with self._locked_state() as state:
                self._finish(state.phase(phase).step("validate"), False, str(e))
            raise PipelineError(f"validating {phase.value} failed: {e}") from None
        except Exception as e:  # a bug must not leave the step running forever
            error = _internal(e, f"validating {phase.value}")
            async with self._locked_state() as state:
                self._finish(state.phase(phase).step("validate"), False, error)
            raise PipelineError(error) from None
        async with self._locked_state() as state:
            ps = state.phase(phase)
            step = ps.step("validate")
            verdict = findings.verdict
            ps.verdict = verdict
            ps.validation = findings.model_dump(mode="json")
            if verdict == "PASS":
                ps.status = PhaseStatus.PASSED
                self._finish(step, True)
            elif verdict == "WARN":
                ps.status = PhaseStatus.ACCEPTED if accept_warnings else PhaseStatus.WARNED
                self._finish(step, True)
                step.details["accepted_warnings"] = accept_warnings
            else:
                self._finish(step, False, "; ".join(findings.failures[:3]))
                ps.status = PhaseStatus.FAILED if out_of_attempts(step) else PhaseStatus.IN_PROGRESS
            return self._validation_result(
                state, ps, accepted=accept_warnings and verdict == "WARN"
            )

    def _validation_result(
        self, state: PipelineState, ps: PhaseState, accepted: bool
    ) -> ValidationResult:
        v = ps.validation or {}
        return ValidationResult(
            phase=ps.phase.value,
            verdict=ps.verdict or "FAIL",  # type: ignore[arg-type]
            accepted_warnings=accepted,
            attempt=ps.step("validate").attempts,
            tables=v.get("tables", []),
            metrics=v.get("metrics", {}),
            warnings=v.get("warnings", []),
            failures=v.get("failures", []),
            next_action=next_action(self.cfg, state),
        )

    # -- query / status ----------------------------------------------------------------
    async def query(self, sql: str, limit: int = 100) -> QueryOutput:
        limit = max(1, min(int(limit), MAX_QUERY_ROWS))
        try:
            result = await self.backend.read_query(sql, self.cfg.src_db, limit=limit)
        except ReadOnlyError as e:
            raise PipelineError(str(e)) from None
        except BackendError as e:
            raise PipelineError(f"the query failed: {e}") from None
        rows = [list(r) for r in result.rows]
        return QueryOutput(
            columns=result.columns, rows=rows, row_count=len(rows), truncated=result.truncated
        )

    def status(self) -> StatusResult:
        with self.store.locked():
            state = self._load()
        phases = [
            PhaseView(
                phase=p.value,
                status=state.phase(p).status.value,
                verdict=state.phase(p).verdict,
                project_id=state.phase(p).project_id,
                revision=state.phase(p).revision,
                steps=[
                    StepView(
                        name=s.name,
                        status=s.status.value,
                        attempts=s.attempts,
                        started_at=s.started_at,
                        finished_at=s.finished_at,
                        session_id=s.session_id,
                        attempt_id=s.attempt_id,
                        last_error=s.last_error,
                    )
                    for s in state.phase(p).steps.values()
                ],
            )
            for p in ORDER
        ]
        return StatusResult(
            config_path=state.config_path,
            client=state.client,
            backend=state.backend,
            aborted=state.aborted,
            run=state.run,
            phases=phases,
            next_action=next_action(self.cfg, state),
        )

    def state(self) -> PipelineState:
        with self.store.locked():
            return self._load()

    # -- decisions ---------------------------------------------------------------------
    @_one_step(ToolName.SKIP_PHASE)
    async def skip_phase(self, phase_name: str, confirm: bool) -> DecisionResult:
        phase = self._phase(phase_name)
        if not confirm:
            raise PipelineError(
                f"skipping {phase.value} needs confirm=true: later phases will run on whatever "
                f"{phase.value} left behind (possibly nothing). Ask the person first."
            )
        async with self._locked_state() as state:
            self._check_runnable(state)
            ps = state.phase(phase)
            ps.status = PhaseStatus.SKIPPED
            action = next_action(self.cfg, state)
        return DecisionResult(
            phase=phase.value,
            status="skipped",
            message=f"{phase.value} skipped",
            next_action=action,
        )

    @_one_step(ToolName.ABORT_PIPELINE)
    async def abort(self, reason: str = "aborted by request") -> DecisionResult:
        async with self._locked_state() as state:
            running = [
                s.attempt_id
                for p in ORDER
                for s in state.phase(p).steps.values()
                if s.status is StepStatus.RUNNING and s.attempt_id
            ]
            state.aborted, state.abort_reason = True, reason
        killed = []
        for attempt_id in running:
            try:
                await self.backend.kill(attempt_id)
                killed.append(attempt_id)
            except BackendError:
                pass  # already finished
        if killed:
            async with self._locked_state() as state:
                for p in ORDER:
                    for s in state.phase(p).steps.values():
                        if s.status is StepStatus.RUNNING and s.attempt_id in killed:
                            self._finish(s, False, f"killed by abort_pipeline ({reason})")
        try:
            report_path: str | None = (await self._write_report()).path
            written = f"partial report at {report_path}"
        except PipelineError as e:  # the abort stands even when the report cannot be written
            report_path, written = None, str(e)
        async with self._locked_state() as state:
            action = next_action(self.cfg, state)
        note = f"; killed attempts {', '.join(killed)}" if killed else ""
        return DecisionResult(
            phase=None,
            status="aborted",
            message=f"pipeline aborted{note}; {written}",
            report_path=report_path,
            next_action=action,
        )

    @_one_step(ToolName.FINAL_REPORT)
    async def final_report(self) -> ReportResult:
        return await self._write_report()

    async def _write_report(self) -> ReportResult:
        async with self.store.alocked():
            state = self._load()
        try:
            return await anyio.to_thread.run_sync(report_mod.write_report, self.cfg, state)
        except FileConflictError as e:
            raise PipelineError(f"the report was not written: {e}") from None

    # -- helpers -----------------------------------------------------------------------
    @staticmethod
    def _phase(name: str) -> Phase:
        try:
            return parse_phase(name)
        except ValueError as e:
            raise PipelineError(str(e)) from None


def _finished(state: PipelineState) -> bool:
    return state.aborted or all(state.phase(p).status in DONE for p in ORDER)


def _running_steps(state: PipelineState) -> list[str]:
    return [
        f"{p.value}.{s.name}"
        for p in ORDER
        for s in state.phase(p).steps.values()
        if s.status is StepStatus.RUNNING
    ]


def _recover_interrupted(state: PipelineState) -> bool:
    """Settle steps a crashed call left running; only the operation lock's holder may call it.

    Holding that lock means no other call is mid-step, so a step still marked running
    without a live backend attempt was interrupted by a crash of the process running it
    (a kill, an OOM, a power cut). Its attempt is given back; a workflow start that may
    have reached the backend is remembered so the next start adopts what it created.
    Returns whether anything changed.
    """
    changed = False
    for p in ORDER:
        for step in state.phase(p).steps.values():
            if step.status is not StepStatus.RUNNING:
                continue
            interrupted = (
                step.starting is not None
                or step.attempt_id is None
                or not step.name.startswith("execute:")
            )
            if not interrupted:
                continue  # a workflow attempt the backend runs: get_session follows it
            step.attempts = max(0, step.attempts - 1)
            step.finished_at = now()
            what = "starting the workflow" if step.starting is not None else step.name
            step.last_error = (
                f"{what} was interrupted: the cdp-mcp process doing it stopped (killed or "
                f"crashed) before it finished; {NOT_COUNTED}. Call it again"
            )
            if step.starting is not None:
                step.details["interrupted_start"] = step.starting
                resumed = step.starting.get("resume_from")
                step.status = StepStatus.FAILED if resumed else StepStatus.PENDING
                step.starting = None
            else:
                step.status = StepStatus.PENDING
            changed = True
    return changed


def _internal(error: Exception, what: str) -> str:
    """An unexpected error: logged with its traceback, returned as words for the agent."""
    log.exception("%s failed", what)
    return (
        f"{what} failed with an internal error ({type(error).__name__}: {error}); the step "
        "was recorded as failed. This is a cdp-mcp bug: report it with the server log; "
        "retrying may help if the cause was passing"
    )


def _duration(seconds: float) -> str:
    if seconds >= 3600:
        return f"{seconds / 3600:.1f} h"
    if seconds >= 60:
        return f"{seconds / 60:.0f} min"
    return f"{seconds:.1f} s"
