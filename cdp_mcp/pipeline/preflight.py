"""What init_pipeline checks before anything is generated, in words a person reads.

A problem raises PipelineError naming the field or file; what passed comes back as notes.
"""

from __future__ import annotations

from collections.abc import Callable

import anyio

from cdp_mcp.backends.base import Backend, BackendError
from cdp_mcp.core import connectors
from cdp_mcp.core.config import ConfigError, PipelineConfig
from cdp_mcp.core.file_source import SourceError, find_object_file, select_sql
from cdp_mcp.core.schema import SchemaMap
from cdp_mcp.generate import GenerationError
from cdp_mcp.generate.ingestion import check_incremental_field, load_mode
from cdp_mcp.generate.schemas import predicted_schemas
from cdp_mcp.pipeline import table_check
from cdp_mcp.pipeline.column_refs import column_ref_problems
from cdp_mcp.pipeline.file_upload import upload_problems
from cdp_mcp.pipeline.models import PipelineError


async def preflight(cfg: PipelineConfig, backend: Callable[[], Backend]) -> list[str]:
    """`backend` makes the backend when a check needs it (only Treasure Data's do). Each
    source is checked on its own (its notes and problems name it when there are several);
    the config's column references are checked against every source's columns."""
    notes: list[str] = []
    schemas: SchemaMap = {}
    several = len(cfg.sources) > 1
    for i, name in enumerate(cfg.source_names):
        view = cfg.for_source(name)
        try:
            if view.ingestion.connector == "file" and view.source_dir is not None:
                found, said = await _file_preflight(view)
                schemas.update(found)
            else:
                said = _connector_preflight(view)
        except PipelineError as e:
            if not several:
                raise
            # One source's problem holds up that source alone: its phases refuse (and
            # wait for the person) while the other sources go on.
            where = cfg.source_path_of(i)
            said = [f"PROBLEM: {str(e).replace('ingestion.', f'{where}.')}; {WAITS}"]
        notes += [f"{name}: {n}" if several else n for n in said]
    if schemas:
        notes += _check_column_refs(cfg, schemas, several)
    if cfg.global_.backend == "treasuredata":
        notes.extend(await _td_preflight(cfg, backend()))
    else:
        notes.append(f"local backend: warehouse in {cfg.workspace / '.cdp_local'}")
    return notes


WAITS = "its phases wait until it is fixed; the other sources go on"


def _check_column_refs(cfg: PipelineConfig, schemas: SchemaMap, several: bool) -> list[str]:
    """Refuses a name the config gives that no table has; with several sources, a source's
    own primary key is that source's problem (a note: its later phases refuse it)."""
    refs = column_ref_problems(cfg, schemas)
    own = [p for p in refs if several and p.path.startswith("sources[")]
    refs = [p for p in refs if p not in own]
    if refs:
        raise PipelineError(
            f"{ConfigError('pipeline config', refs)}\nFix the config file, then call "
            "init_pipeline again."
        )
    name_at = {cfg.source_path_of(i): n for i, n in enumerate(cfg.source_names)}
    return [
        f"{name_at.get(p.path.split('.')[0], '?')}: PROBLEM: {p.path}: {p.message}; {WAITS}"
        for p in own
    ]


async def _file_preflight(cfg: PipelineConfig) -> tuple[SchemaMap, list[str]]:
    """One source's files (`cfg`: its view): readable, with the incremental field."""
    try:
        schemas = await anyio.to_thread.run_sync(predicted_schemas, cfg)
        check_incremental_field(cfg, schemas)
    except SourceError as e:
        raise PipelineError(f"ingestion.source_path: {e}") from None
    except GenerationError as e:
        raise PipelineError(f"{e}\nFix the config file, then call init_pipeline again.") from None
    notes = [
        f"source files readable: {', '.join(cfg.ingestion.objects)} "
        f"({sum(1 for k in schemas if k.endswith('_hist'))} objects)"
    ]
    if load_mode(cfg) == "upload":
        problems = upload_problems(cfg)
        if problems:
            raise PipelineError("\n".join(problems))
        notes.append(
            "Treasure Data cannot read these files: each ingestion run uploads its "
            "range of them with TD's bulk import into a landing table "
            f"({cfg.src_db}.<table>_landing), which the workflow appends from"
        )
    return schemas, notes


def _connector_preflight(cfg: PipelineConfig) -> list[str]:
    """A TD connector: on the local backend it dry-runs on extracts, which must exist."""
    conn = connectors.get(cfg.ingestion.connector)
    if conn is None:  # the config refuses this
        return []
    if cfg.global_.backend == "treasuredata":
        return [f"TD's {conn.title} connector ({conn.type}) loads each object on TD"]
    settings = cfg.ingestion.connector_settings
    folder = cfg.source_dir
    if folder is None:
        raise PipelineError(
            f"ingestion.source_path: the local backend dry-runs TD's {conn.type} connector "
            "on extracts of each object, shaped as the connector delivers them; give the "
            "folder holding "
            + "; ".join(
                f"{o}.{'|'.join(conn.extract_formats)} ({conn.shape(o, settings)})"
                for o in cfg.ingestion.objects
            )
            + ", or set global.backend: treasuredata to load from the real source"
        )
    missing = []
    for obj in cfg.ingestion.objects:
        try:
            select_sql(find_object_file(folder, obj, conn.extract_formats), names_as="lower")
        except SourceError as e:
            missing.append(f"- {e} ({conn.shape(obj, settings)})")
    if missing:
        raise PipelineError(
            f"ingestion.source_path: the local dry run of TD's {conn.type} connector "
            "needs an extract per object:\n" + "\n".join(missing)
        )
    return [f"dry run of TD's {conn.title} connector ({conn.type}) on the extracts in {folder}"]


async def _td_preflight(cfg: PipelineConfig, backend: Backend) -> list[str]:
    try:
        await backend.check_auth()  # the key works on the API and the workflow host
        dbs = set(await backend.databases())
        written: dict[str, table_check.Written] = {}  # by db.table: the logs are shared
        for name in cfg.source_names:
            view = cfg.for_source(name)
            try:
                known = predicted_schemas(view)
            except SourceError:
                known = {}
            for w in table_check.written_tables(view, known):
                written.setdefault(w.qualified, w)
        on_td = {w.database for w in written.values()} & dbs
        existing = await table_check.existing_tables(backend, on_td)
    except BackendError as e:
        raise PipelineError(f"Treasure Data preflight failed: {e}") from None
    tables = table_check.check(cfg, list(written.values()), existing)
    if tables.problems:
        listing = "\n".join(f"- {p}" for p in tables.problems)
        raise PipelineError(
            "tables already in the account do not take what the pipeline writes into "
            f"them; nothing was created or run:\n{listing}"
        )
    wanted = [*dict.fromkeys(cfg.src_db_of(s) for s in cfg.sources), cfg.stg_db, cfg.config_db]
    missing = [d for d in wanted if d not in dbs]
    notes = [f"API key accepted by {cfg.global_.td_endpoint}"]
    if missing:
        notes.append(
            f"databases the workflows will create: {', '.join(missing)} (confirm with the "
            "person before the first run; the key needs permission to create databases)"
        )
    else:
        notes.append(f"databases exist: {', '.join(wanted)}")
    return notes + tables.notes
