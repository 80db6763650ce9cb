"""The pipeline's effects: backend calls, files and state writes, in the order the rules
(cdp_mcp/pipeline/rules) allow.

The rules are not left to the prompt: a phase's generate/push/start is refused until the
previous phase validated PASS (or WARN accepted, or was skipped); deploy, each workflow's
execution and validate have at most MAX_ATTEMPTS attempts each; state is saved atomically
after every change, under a file lock, so a restarted server continues where it stopped.

Every method returns a pydantic model (the tool's structured output) or raises
PipelineError with a message that says what to do next.
"""

from __future__ import annotations

import functools
import hashlib
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Concatenate, NoReturn, ParamSpec, TypeVar

import anyio

from cdp_mcp.backends.base import (
    DONE_TASK_STATES,
    Attempt,
    Backend,
    BackendError,
    NotFoundError,
    ProjectRejectedError,
    Task,
    UnavailableError,
)
from cdp_mcp.backends.factory import make_backend
from cdp_mcp.backends.readonly import ReadOnlyError
from cdp_mcp.core.config import ConfigError, PipelineConfig, load_config
from cdp_mcp.core.file_source import SourceError
from cdp_mcp.core.manifest import FileConflictError
from cdp_mcp.core.phases import (
    Phase,
    parse_phase,
    per_source,
    project_folder,
    project_name,
    stage_config,
    workflows,
)
from cdp_mcp.core.roots import OutsideRootsError, Roots
from cdp_mcp.core.schema import SchemaMap
from cdp_mcp.core.tools import ToolName
from cdp_mcp.core.workspace import WorkspaceError, check_workspace, claim_workspace
from cdp_mcp.generate import GeneratedProject, GenerationError, generate, render_phase
from cdp_mcp.generate.check import check_project
from cdp_mcp.pipeline import sessions, stages, starting, views
from cdp_mcp.pipeline.column_refs import primary_key_problems
from cdp_mcp.pipeline.lifecycle import PrepareFn, StepFailed, StepPlan, internal_error
from cdp_mcp.pipeline.limits import MAX_QUERY_ROWS, MAX_WAIT_SECONDS
from cdp_mcp.pipeline.models import (
    DecisionResult,
    FinalReportResult,
    GenerateResult,
    InitResult,
    LogsResult,
    NextAction,
    PipelineError,
    PushResult,
    QueryOutput,
    ReportResult,
    SecretsResult,
    SessionProgress,
    SessionResult,
    StartResult,
    StatusResult,
    ValidationResult,
)
from cdp_mcp.pipeline.preflight import preflight
from cdp_mcp.pipeline.reports import report as report_mod
from cdp_mcp.pipeline.rules import advice, budget, steps
from cdp_mcp.pipeline.rules.advice import next_action
from cdp_mcp.pipeline.rules.budget import DONE, require
from cdp_mcp.pipeline.rules.gate import gate
from cdp_mcp.pipeline.rules.steps import execute_step
from cdp_mcp.pipeline.runlogs import write_run_log
from cdp_mcp.pipeline.schemas import phase_schemas
from cdp_mcp.pipeline.secrets import missing_secrets, upload_secrets
from cdp_mcp.pipeline.sessions import LOG_PAGE_BYTES
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
    stage_key,
)
from cdp_mcp.pipeline.validate import validate_phase

__all__ = ["LOG_PAGE_BYTES", "Pipeline", "config_hash"]

MAX_QUERY_OFFSET = 100_000  # paging deeper than this: a WHERE on an ordered key instead
ProgressFn = Callable[[float, float | None, str], Awaitable[None]]
WatchFn = Callable[[SessionProgress], Awaitable[None]]


def config_hash(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()[:16]


def _files_hash(directory: Path, files: list[str]) -> str:
    return _rendered_hash({rel: (directory / rel).read_bytes() for rel in files})


def _unified_before(unif: PhaseState, kept_sources: list[str]) -> dict[str, Any] | None:
    """What a validated unification had found (its sources and profiles), kept when
    sources are added so the next validation reports what they brought; an earlier
    record stays when unification had not validated again since."""
    metrics = (unif.validation or {}).get("metrics") or {}
    if unif.status in DONE and "profiles" in metrics:
        sources = list(metrics.get("profiles_per_source") or kept_sources)
        return {"sources": sources, "profiles": int(metrics["profiles"])}
    return unif.before_added


def _rendered_hash(files: dict[str, bytes]) -> str:
    """A project's hash from its files' bytes (as written: UTF-8, newlines as rendered)."""
    digest = hashlib.sha256()
    for rel in sorted(files):
        digest.update(rel.encode() + b"\0" + files[rel] + b"\0")
    return digest.hexdigest()[:16]


_P = ParamSpec("_P")
_R = TypeVar("_R")
_T = TypeVar("_T")


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
                for i, source in enumerate(self.cfg.sources):
                    folder = self.cfg.source_dir_of(source)
                    if folder is not None:
                        roots.check(folder, f"{self.cfg.source_path_of(i)}.source_path")
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
            state = self.store.load(self.cfg.source_names)
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
                    if state.config_path == str(self.config_path) and budget.recover_interrupted(
                        state, now()
                    ):
                        self.store.save(state)
            yield
        finally:
            self.store.release_operation(fd)

    def _config_changed(self, state: PipelineState) -> bool:
        return state.config_hash != config_hash(self.config_path)

    def _check_runnable(self, state: PipelineState) -> None:
        changed = self._config_changed(state)
        require(steps.not_runnable(state, changed, self.config_path.name))

    def _gate(self, state: PipelineState, ps: PhaseState) -> None:
        """Refuse work on a stage until the stage before it is done."""
        gate(self.cfg, state, ps, self._config_changed(state), self.config_path.name)

    def _stage(self, state: PipelineState, phase: Phase, source: str | None) -> PhaseState:
        """The stage a call names (`source` already resolved), refused if the state was
        planned for other sources (the config gained or lost one: init_pipeline first)."""
        if state.sources != self.cfg.source_names:
            raise PipelineError(
                f"{self.config_path.name} names the sources {', '.join(self.cfg.source_names)}"
                f", the pipeline's state {', '.join(state.sources)}: call init_pipeline again "
                "so the plan matches the file"
            )
        return state.phase(phase, source)

    def _view(self, state: PipelineState, ps: PhaseState) -> PipelineConfig:
        return stages.config_of(self.cfg, state, ps)

    def _target(self, phase_name: str, source: str | None) -> tuple[Phase, str | None]:
        phase = self._phase(phase_name)
        return phase, stages.resolve_source(self.cfg, phase, source)

    @asynccontextmanager
    async def _attempt(
        self, phase: Phase, source: str | None, prepare: PrepareFn[_T]
    ) -> AsyncIterator[_T]:
        """The lifecycle of one counted attempt, for every step that has a budget.

        Under the state lock: the gate, the step's preconditions (`prepare`, which returns
        what the I/O needs) and the attempt counted. Then the caller's I/O, outside the
        lock; if it raises, the attempt is refunded (the backend did not answer) or
        recorded as failed, and the call refused with what happened. The caller records
        a success itself.
        """
        async with self._locked_state() as state:
            ps = self._stage(state, phase, source)
            self._gate(state, ps)
            plan, prepared = await prepare(state, ps)
            prior = budget.begin_attempt(ps.step(plan.step), plan.what, ps, now())
        try:
            yield prepared
        except UnavailableError as e:
            await self._give_back(plan, prior, f"{plan.failed}: {e}")
        except StepFailed as e:
            await self._fail(plan, str(e), str(e))
        except plan.expected as e:
            raised = f"{plan.failed}: {e}"
            await self._fail(plan, str(e) if plan.bare_record else raised, raised)
        except Exception as e:  # a bug must not leave the step running forever
            error = internal_error(e, plan.doing)
            await self._fail(plan, error, error)

    async def _give_back(self, plan: StepPlan, prior: StepStatus, error: str) -> NoReturn:
        """Refund the step's attempt (see `budget.refund`) and refuse with what happened."""
        async with self._locked_state() as state:
            step = state.phase(plan.phase, plan.source).step(plan.step)
            budget.refund(step, prior, error, now())
            message = step.last_error
        raise PipelineError(str(message))

    async def _fail(self, plan: StepPlan, recorded: str, raised: str) -> NoReturn:
        async with self._locked_state() as state:
            step = state.phase(plan.phase, plan.source).step(plan.step)
            budget.finish(step, False, recorded, now())
            step.starting = None
            attempts = step.attempts
        if plan.attempt_note:
            raised = (
                f"{raised}. Attempt {attempts} of {MAX_ATTEMPTS}. Fix the cause (regenerate "
                f"after a config change) and call {ToolName.PUSH_PROJECT} again, or skip/abort."
            )
        raise PipelineError(raised) from None

    # -- init --------------------------------------------------------------------------
    async def init(self, new_run: bool = False, retry_after_fix: bool = False) -> InitResult:
        """Create or load the state. A finished (or aborted) pipeline stays as it is unless
        `new_run` says the person wants to start it over: a run is never discarded on its own.
        `retry_after_fix`: the person fixed a failure's cause outside the config (a source
        file restored), so the failed steps get their budgets back (recorded in the state)."""
        chash = config_hash(self.config_path)
        try:
            claim_workspace(self.cfg.workspace)  # before the backend creates anything in it
        except WorkspaceError as e:
            raise PipelineError(str(e)) from None
        notes = await preflight(self.cfg, lambda: self.backend)
        async with self._step_lock(ToolName.INIT_PIPELINE), self.store.alocked():
            resumed, started_new = self.store.exists(), False
            reset_steps: list[str] = []
            if resumed:
                state = self._load()
                if state.config_path != str(self.config_path):
                    raise PipelineError(
                        f"the workspace {self.cfg.workspace} holds the pipeline of "
                        f"{state.config_path}; give this config its own global.workspace"
                    )
                if state.sources != self.cfg.source_names and not new_run:
                    if budget.running_steps(state):
                        raise PipelineError(
                            f"the config's sources changed while "
                            f"{', '.join(budget.running_steps(state))} is running: wait for "
                            "it with get_session, then call init_pipeline again"
                        )
                    reset_steps = await self._replan_sources(state, notes)
                    state.config_hash = chash
                elif new_run:
                    running = budget.running_steps(state)
                    if running:
                        raise PipelineError(
                            f"cannot start a new run while {', '.join(running)} is "
                            "running: wait for it with get_session, or abort_pipeline"
                        )
                    report_mod.archive_reports(self.cfg, state.run)
                    state = budget.new_run(
                        state,
                        chash,
                        self.cfg.client,
                        self.cfg.global_.backend,
                        self.cfg.source_names,
                    )
                    started_new = True
                elif budget.finished(state):
                    if state.config_hash != chash:
                        notes.append(
                            f"{self.config_path.name} changed since run {state.run} "
                            "finished; the finished run is kept as it was. To run the "
                            "new config, the person agrees to a new run: "
                            "init_pipeline(config_path, new_run=true)"
                        )
                elif state.config_hash != chash:
                    reset_steps = budget.reopen_budgets(state)
                    state.config_hash = chash
                if retry_after_fix and not started_new and not reset_steps:
                    reset_steps += self._retry_after_fix(state, notes)
            else:
                state = PipelineState(
                    sources=self.cfg.source_names,
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
            finished=budget.finished(state),
            reset_steps=reset_steps,
            phases=await anyio.to_thread.run_sync(views.phase_plans, self.cfg, state),
            preflight=notes,
            next_action=next_action(self.cfg, state),
        )

    async def _replan_sources(self, state: PipelineState, notes: list[str]) -> list[str]:
        """The config gained (or lost) a source: plan the new sources' stages as pending,
        keep each stage of the other sources whose project renders from the edited config
        exactly as the one that ran (its files hash, PhaseState.config_hash), reset a
        source's stages from the first that would render otherwise, and re-open
        unification. A finished pipeline goes on in the same run (the added source's
        phases, then unification over every source). Returns the stages reset."""
        names = self.cfg.source_names
        added = [n for n in names if n not in state.sources]
        removed = [n for n in state.sources if n not in names]
        reset: list[str] = []
        for name in removed:
            for key in [k for k, ps in state.stages.items() if ps.source == name]:
                del state.stages[key]
            notes.append(
                f"source {name} is no longer in the config: its stages were dropped from "
                "the state (its tables stay in the warehouse)"
            )
        state.sources = names
        state.plan_stages()
        kept: list[str] = []
        for name in names:
            if name in added:
                continue
            for ps in [s for s in state.ordered() if s.source == name]:
                if await self._renders_as_ran(state, ps):
                    kept.append(ps.key)
                    continue
                reset += budget.reset_from(state, ps)
                break
        unif = state.phase(Phase.UNIFICATION)
        before = _unified_before(unif, [n for n in names if n not in added])
        if (added or removed) and (unif.steps or unif.status is not PhaseStatus.PENDING):
            reset += budget.reset_from(state, unif)  # (sources only reordered: kept)
        if added and before is not None:
            state.phase(Phase.UNIFICATION).before_added = before
        if not budget.all_done(state):
            state.reported_at = None  # the run goes on with the new stages
        notes.append(
            f"sources added: {', '.join(added) or 'none'}; stages kept as they ran: "
            f"{', '.join(kept) or 'none'}"
            + ("; unification runs again over every source" if added or removed else "")
        )
        return reset

    async def _renders_as_ran(self, state: PipelineState, ps: PhaseState) -> bool:
        """The stage ran (or was skipped) and its project from the edited config would be
        the very files it ran with."""
        if ps.status not in DONE or ps.config_hash is None:
            return ps.status is PhaseStatus.SKIPPED
        view = self._view(state, ps)
        try:
            schemas = await phase_schemas(view, self.backend, ps.phase)
            files = await anyio.to_thread.run_sync(render_phase, view, ps.phase, schemas)
        except (PipelineError, GenerationError, ConfigError, SourceError):
            return False
        rendered = {rel: text.encode("utf-8") for rel, text in files.items()}
        return _rendered_hash(rendered) == ps.config_hash

    @staticmethod
    def _retry_after_fix(state: PipelineState, notes: list[str]) -> list[str]:
        if budget.finished(state):
            notes.append(
                f"retry_after_fix: run {state.run} is finished, so no step is retried; a "
                "new run needs new_run=true (the person decides)"
            )
            return []
        reset = budget.retry_after_fix(state, now())
        if not reset:
            notes.append("retry_after_fix: no step has failed, so no budget was re-opened")
        return reset

    # -- generate / push ---------------------------------------------------------------
    async def _render(
        self, cfg: PipelineConfig, phase: Phase, schemas: SchemaMap, keep_aside: bool = False
    ) -> GeneratedProject:
        """Render the phase's project (`cfg`: the stage's config) into the workspace and
        check its structure."""
        # A primary key the loaded tables lack would leave staging without deduplication.
        # For connector `file` init refuses it; for a TD connector the columns are known
        # only once ingestion has loaded, so the phases after it refuse it here.
        missing_keys = primary_key_problems(self.cfg, schemas) if per_source(phase) else []
        if phase is not Phase.INGESTION and missing_keys:
            listing = "; ".join(f"{p.path}: {p.message}" for p in missing_keys)
            raise PipelineError(
                f"generating {phase.value} refused: {listing}. Fix the config, then call "
                "init_pipeline (a changed config re-opens the phases it touches)."
            )
        try:
            project = await anyio.to_thread.run_sync(
                functools.partial(generate, cfg, phase, schemas, keep_aside=keep_aside)
            )
        except (GenerationError, ConfigError, SourceError) as e:
            raise PipelineError(f"generating {phase.value} failed: {e}") from None
        problems = await anyio.to_thread.run_sync(check_project, project.directory)
        if problems:
            listing = "\n".join(f"- {p}" for p in problems[:20])
            raise PipelineError(
                f"the generated {phase.value} project failed its structural check:\n{listing}"
            )
        return project

    @_one_step(ToolName.GENERATE_PHASE)
    async def render_project(
        self, phase_name: str, keep_aside: bool = False, source: str | None = None
    ) -> GeneratedProject:
        """The project files alone (`cdp-mcp generate`): rendered and checked as
        generate_phase does, one step at a time with the pipeline's other steps, but
        outside its run: no init needed, no phase order, no state or budget touched
        (unification over every source)."""
        phase, source = self._target(phase_name, source)
        try:
            claim_workspace(self.cfg.workspace)  # before the backend creates anything in it
        except WorkspaceError as e:
            raise PipelineError(str(e)) from None
        cfg = stage_config(self.cfg, phase, source)
        schemas = await phase_schemas(cfg, self.backend, phase)
        return await self._render(cfg, phase, schemas, keep_aside)

    @_one_step(ToolName.GENERATE_PHASE)
    async def generate_phase(self, phase_name: str, source: str | None = None) -> GenerateResult:
        phase, source = self._target(phase_name, source)
        try:
            return await self._generate(phase, source)
        except budget.Refusal:
            raise
        except PipelineError as e:
            if per_source(phase) and len(self.cfg.sources) > 1:
                await self._record_failed_render(phase, source, str(e))
            raise

    async def _record_failed_render(self, phase: Phase, source: str | None, error: str) -> None:
        """A source's render failed (its files, its config): recorded, so the next action
        asks the person about this source while the other sources go on."""
        async with self._locked_state() as state:
            if state.sources != self.cfg.source_names:
                return
            gen = state.phase(phase, source).step("generate")
            gen.attempts += 1
            budget.finish(gen, False, error, now())

    async def _generate(self, phase: Phase, source: str | None) -> GenerateResult:
        async with self.store.alocked():
            state = self._load()
            # unification reads the sources it takes part of (not those it leaves out)
            view = self._view(state, self._stage(state, phase, source))
        schemas = await phase_schemas(view, self.backend, phase)
        async with self._locked_state() as state:
            ps = self._stage(state, phase, source)
            self._gate(state, ps)
            require(steps.not_regenerable(ps))
            project = await self._render(self._view(state, ps), phase, schemas)
            fhash = _files_hash(project.directory, project.files)
            changed = ps.config_hash != fhash
            reset: list[str] = []
            if changed:
                reset = [k for k in budget.reset_from(state, ps) if k != ps.key]
                ps = state.phase(phase, source)
            ps.config_hash = fhash
            if changed or ps.status is PhaseStatus.PENDING:
                ps.status = PhaseStatus.IN_PROGRESS  # an unchanged render keeps its verdict
            ps.files, ps.workflows, ps.secrets = project.files, project.workflows, project.secrets
            gen = ps.step("generate")
            gen.attempts += 1  # generating has no budget: a render is counted, never refused
            budget.finish(gen, True, None, now())
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
    async def push_project(self, phase_name: str, source: str | None = None) -> PushResult:
        phase, source = self._target(phase_name, source)
        label = stage_key(phase, source)
        plan = StepPlan(
            phase,
            source,
            "deploy",
            what=f"deploying {label}",
            failed="push failed",
            doing=f"pushing {label}",
            attempt_note=True,
        )
        cfg = stage_config(self.cfg, phase, source)

        async def prepare(state: PipelineState, ps: PhaseState) -> tuple[StepPlan, list[str]]:
            require(steps.not_generated(ps))
            return plan, list(ps.secrets)

        name = project_name(cfg, phase)
        async with self._attempt(phase, source, prepare) as wanted:
            try:
                project = await self.backend.push(
                    name, self.cfg.workspace / project_folder(cfg, phase)
                )
            except ProjectRejectedError as e:
                where = f" ({e.file}:{e.line})" if e.file else ""
                raise StepFailed(f"the project was rejected{where}: {e}") from None
            missing = await missing_secrets(self.backend, name, wanted)
        async with self._locked_state() as state:
            ps = state.phase(phase, source)
            step = ps.step("deploy")
            budget.finish(step, True, None, now())
            step.details["missing_secrets"] = missing
            ps.project_id, ps.revision = project.id, project.revision
            # A new revision means the workflows run anew.
            for wf in workflows(cfg, phase):
                ex = ps.steps.get(execute_step(wf))
                if ex is not None and ex.details.get("revision") != project.revision:
                    ps.steps[execute_step(wf)] = StepState(name=execute_step(wf))
            action = next_action(self.cfg, state)
        return PushResult(
            phase=phase.value,
            project=name,
            project_id=project.id,
            revision=project.revision,
            attempt=step.attempts,
            missing_secrets=missing,
            next_action=action,
        )

    @_one_step(ToolName.SET_SECRETS)
    async def set_secrets(
        self, phase_name: str, names: list[str], source: str | None = None
    ) -> SecretsResult:
        """Upload project secrets from the server's environment (values never pass here)."""
        phase, source = self._target(phase_name, source)
        async with self._locked_state() as state:
            ps = self._stage(state, phase, source)
            self._gate(state, ps)
            require(steps.not_pushed(ps, "push", " (secrets belong to the pushed project)"))
            require(steps.unknown_secrets(ps, names))
            wanted = ps.secrets
        cfg = stage_config(self.cfg, phase, source)
        project = project_name(cfg, phase)
        done, missing_env = await upload_secrets(cfg, self.backend, project, names)
        still = await missing_secrets(self.backend, project, wanted)
        async with self._locked_state() as state:
            state.phase(phase, source).step("deploy").details["missing_secrets"] = still
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
    async def _startable(self, ps: PhaseState, workflow: str | None) -> str:
        """The workflow a start runs, once every precondition of starting it holds."""
        cfg = stage_config(self.cfg, ps.phase, ps.source)
        names = workflows(cfg, ps.phase)
        require(steps.not_generated(ps, ", then push_project"))
        require(steps.not_pushed(ps))
        wf = workflow or steps.next_workflow(ps, names)
        if wf is None:
            raise budget.Refusal(steps.all_workflows_ran(ps))
        require(steps.not_startable(ps, names, wf))
        recorded = steps.recorded_missing_secrets(ps)
        if recorded:
            # Set since (e.g. with `td wf secrets`)? Ask the backend before refusing.
            project = project_name(cfg, ps.phase)
            still = await missing_secrets(self.backend, project, recorded)
            ps.step("deploy").details["missing_secrets"] = still
            require(steps.lacks_secrets(ps, wf, still))
        return wf

    @_one_step(ToolName.START_WORKFLOW)
    async def start_workflow(
        self, phase_name: str, workflow: str | None = None, source: str | None = None
    ) -> StartResult:
        phase, source = self._target(phase_name, source)

        async def prepare(state: PipelineState, ps: PhaseState) -> tuple[StepPlan, _Start]:
            wf = await self._startable(ps, workflow)
            step = ps.step(execute_step(wf))
            step.starting = steps.start_request(step, now())
            plan = StepPlan(
                phase,
                source,
                step.name,
                what=f"running {wf}",
                failed=f"starting {wf} failed",
                doing=f"starting {wf}",
            )
            return plan, _Start(wf, ps.revision, dict(step.starting))

        async with self._attempt(phase, source, prepare) as start:
            wf, resume_from = start.workflow, start.starting["resume_from"]
            uploads, attempt = await starting.start_attempt(
                stage_config(self.cfg, phase, source),
                self.backend,
                phase,
                wf,
                start.starting,
            )
        async with self._locked_state() as state:
            step = state.phase(phase, source).step(execute_step(wf))
            step.session_id, step.attempt_id = attempt.session_id, attempt.id
            step.starting = None
            interruptions = step.details.get("interruptions", 0)
            step.details = {
                "revision": start.revision,
                "started_by": "retry" if resume_from else "start",
            }
            if uploads:
                step.details["uploaded"] = {u.object: u.rows for u in uploads}
            if interruptions:
                step.details["interruptions"] = interruptions
            action = next_action(self.cfg, state)
        return StartResult(
            phase=phase.value,
            workflow=wf,
            session_id=attempt.session_id,
            attempt_id=attempt.id,
            resumed_failed_tasks=resume_from is not None,
            attempt=step.attempts,
            next_action=action,
        )

    async def get_session(
        self,
        session_id: str | None = None,
        wait_seconds: float = 0,
        progress: ProgressFn | None = None,
        watch: WatchFn | None = None,
    ) -> SessionResult:
        async with self.store.alocked():
            stage, step = sessions.find_step(self._load(), session_id)
        assert step.attempt_id is not None and step.session_id is not None
        wait_seconds = max(0.0, min(float(wait_seconds), MAX_WAIT_SECONDS))
        deadline = anyio.current_time() + wait_seconds
        started = step.started_at or now()
        pause, reported = 0.05, -1.0
        while True:
            attempt, tasks = await self._attempt_and_tasks(step.attempt_id, stage, step.name)
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
                await watch(sessions.progress_view(step, stage, attempt, tasks, elapsed))
            if attempt.done or anyio.current_time() >= deadline:
                break
            if step.status is StepStatus.RUNNING and elapsed > self.monitor_deadline:
                break  # past the monitor deadline: the person decides, not the wait
            # Poll often at first (short tasks end fast), then once a second; the local
            # backend's pause ends as the attempt does, so its end is seen at once.
            left = min(pause, max(0.0, deadline - anyio.current_time()))
            await self.backend.pause(step.attempt_id, left)
            pause = min(pause * 1.5, 1.0)
        return await self._record_session(stage, step.name, attempt, tasks)

    async def _attempt_and_tasks(
        self, attempt_id: str, stage: PhaseState, step_name: str
    ) -> tuple[Attempt, list[Task]]:
        try:
            return await self.backend.attempt(attempt_id), await self.backend.tasks(attempt_id)
        except NotFoundError as e:
            await self._mark_lost(stage, step_name, attempt_id, str(e))
        except BackendError as e:
            raise PipelineError(f"reading attempt {attempt_id} failed: {e}") from None

    async def _mark_lost(
        self, stage: PhaseState, step_name: str, attempt_id: str, error: str
    ) -> NoReturn:
        """The backend does not know the step's attempt: waiting for it would never end."""
        async with self._locked_state() as state:
            step = state.phase(stage.phase, stage.source).step(step_name)
            budget.mark_lost(step, attempt_id, error, now())
            message = step.last_error or error
            action = next_action(self.cfg, state)
        choices = "\n".join(f"- {c}" for c in action.choices)
        raise PipelineError(f"{message}. A person decides:\n{choices}")

    async def _record_session(
        self, stage: PhaseState, step_name: str, attempt: Attempt, tasks: list[Task]
    ) -> SessionResult:
        label = stage.phase.value if stage.source is None else f"{stage.source}_{stage.phase.value}"
        await write_run_log(self.cfg.workspace, label, attempt, tasks, self.backend)
        errors = sessions.task_errors(tasks)
        async with self._locked_state() as state:
            step = state.phase(stage.phase, stage.source).step(step_name)
            timed_out = budget.settle_attempt(step, attempt, errors, self.monitor_deadline, now())
            action = next_action(self.cfg, state)
        started = step.started_at or attempt.created_at
        return await sessions.session_result(
            self.backend, stage, started, attempt, tasks, timed_out, action, now()
        )

    async def get_logs(
        self, attempt_id: str, task: str | None = None, offset: int = 0
    ) -> LogsResult:
        page = await sessions.logs_page(self.backend, attempt_id, task, offset)
        cp = str(self.config_path)
        then = (
            advice.next_logs_page(cp, attempt_id, task, page.next_offset)
            if page.next_offset is not None
            else await self._pipeline_next()
        )
        return LogsResult(**page.model_dump(), next_action=then)

    # -- validate ----------------------------------------------------------------------
    @_one_step(ToolName.VALIDATE_TABLES)
    async def validate_tables(
        self, phase_name: str, accept_warnings: bool = False, source: str | None = None
    ) -> ValidationResult:
        phase, source = self._target(phase_name, source)
        label = stage_key(phase, source)
        plan = StepPlan(
            phase,
            source,
            "validate",
            what=f"validating {label}",
            failed=f"validating {label} failed",
            doing=f"validating {label}",
            expected=(BackendError, ConfigError, PipelineError),
            bare_record=True,
        )
        names = workflows(stage_config(self.cfg, phase, source), phase)
        async with self._locked_state() as state:
            ps = self._stage(state, phase, source)
            self._gate(state, ps)
            require(steps.not_validatable(ps, names))
            left = [] if per_source(phase) else stages.left_out(state)
            if steps.accepts_warnings(ps, accept_warnings):
                ps.status = PhaseStatus.ACCEPTED
                ps.step("validate").details["accepted_warnings"] = True
                return views.validation_result(ps, True, next_action(self.cfg, state))
            cfg = self._view(state, ps)
            before_added = ps.before_added

        async def prepare(state: PipelineState, ps: PhaseState) -> tuple[StepPlan, None]:
            require(steps.not_validatable(ps, names))
            return plan, None

        async with self._attempt(phase, source, prepare):
            schemas = await phase_schemas(cfg, self.backend, phase, for_validation=True)
            findings = await validate_phase(cfg, phase, self.backend, schemas, before_added)
        async with self._locked_state() as state:
            ps = state.phase(phase, source)
            budget.record_verdict(ps, findings.verdict, findings.failures, accept_warnings, now())
            if left:  # unification's metrics say which sources it left out
                findings.metrics["left_out_sources"] = left
            ps.validation = findings.model_dump(mode="json")
            accepted = accept_warnings and findings.verdict == "WARN"
            return views.validation_result(ps, accepted, next_action(self.cfg, state))

    # -- query / status ----------------------------------------------------------------
    async def query(self, sql: str, limit: int = 100, offset: int = 0) -> QueryOutput:
        """Up to `limit` rows after the first `offset`, cut further to QUERY_PAGE_BYTES of
        rows; a cut result's next_action reads the rows after it."""
        limit = max(1, min(int(limit), MAX_QUERY_ROWS))
        offset = max(0, min(int(offset), MAX_QUERY_OFFSET))
        try:
            # unqualified names resolve in the first source's database
            default_db = self.cfg.src_db_of(self.cfg.sources[0])
            result = await self.backend.read_query(sql, default_db, limit=offset + limit)
        except ReadOnlyError as e:
            raise PipelineError(str(e)) from None
        except BackendError as e:
            raise PipelineError(f"the query failed: {e}") from None
        rows = [list(r) for r in result.rows[offset:]]
        kept = views.rows_within(rows, views.QUERY_PAGE_BYTES)
        cut_by_size = len(kept) < len(rows)
        truncated = cut_by_size or result.truncated
        then = (
            advice.next_query_page(
                str(self.config_path), sql, limit, offset, len(kept), cut_by_size
            )
            if truncated
            else await self._pipeline_next()
        )
        return QueryOutput(
            columns=result.columns,
            rows=kept,
            row_count=len(kept),
            offset=offset,
            truncated=truncated,
            next_action=then,
        )

    async def _pipeline_next(self) -> NextAction:
        """Where the pipeline stands, for a read-only tool's result (init first, if no state)."""
        try:
            return (await anyio.to_thread.run_sync(self.status)).next_action
        except PipelineError as e:
            return NextAction(
                tool=ToolName.INIT_PIPELINE,
                arguments={"config_path": str(self.config_path)},
                why=f"the pipeline has no usable state yet ({e})",
            )

    def status(self) -> StatusResult:
        with self.store.locked():
            state = self._load()
        return views.status_result(state, next_action(self.cfg, state))

    def state(self) -> PipelineState:
        with self.store.locked():
            return self._load()

    # -- decisions ---------------------------------------------------------------------
    @_one_step(ToolName.SKIP_PHASE)
    async def skip_phase(
        self, phase_name: str, confirm: bool, source: str | None = None
    ) -> DecisionResult:
        phase, source = self._target(phase_name, source)
        label = stage_key(phase, source)
        later = (
            f"{source}'s later phases will run on whatever {label} left behind (possibly "
            "nothing); a skipped staging leaves the source out of unification"
            if source is not None and len(self.cfg.source_names) > 1
            else f"later phases will run on whatever {label} left behind (possibly nothing)"
        )
        if not confirm:
            raise PipelineError(
                f"skipping {label} needs confirm=true: {later}. Ask the person first."
            )
        async with self._locked_state() as state:
            self._check_runnable(state)
            ps = self._stage(state, phase, source)
            ps.status = PhaseStatus.SKIPPED
            action = next_action(self.cfg, state)
        return DecisionResult(
            phase=phase.value,
            status="skipped",
            message=f"{label} skipped",
            next_action=action,
        )

    @_one_step(ToolName.ABORT_PIPELINE)
    async def abort(self, reason: str = "aborted by request") -> DecisionResult:
        async with self._locked_state() as state:
            running = budget.running_attempts(state)
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
                budget.record_killed(state, killed, f"killed by abort_pipeline ({reason})", now())
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
    async def final_report(self) -> FinalReportResult:
        """Write the report; answer with its paths and headline figures, not the document."""
        written = await self._write_report()
        async with self.store.alocked():
            state = self._load()
        then = advice.after_report(str(self.config_path), state, next_action(self.cfg, state))
        return views.report_result(written, state, then)

    async def _write_report(self) -> ReportResult:
        async with self.store.alocked():
            state = self._load()
        try:
            written = await anyio.to_thread.run_sync(report_mod.write_report, self.cfg, state)
        except FileConflictError as e:
            raise PipelineError(f"the report was not written: {e}") from None
        if budget.finished(state):
            async with self._locked_state() as latest:
                if latest.run == state.run and budget.finished(latest):
                    latest.reported_at = now()  # from now on a new run is the person's call
        return written

    # -- helpers -----------------------------------------------------------------------
    @staticmethod
    def _phase(name: str) -> Phase:
        try:
            return parse_phase(name)
        except ValueError as e:
            raise PipelineError(str(e)) from None


@dataclass(frozen=True)
class _Start:
    """What a workflow start's I/O needs from its preconditions."""

    workflow: str
    revision: str | None
    starting: dict[str, str | None]
