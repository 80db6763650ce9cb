"""Unification across the demo's three sources (a shop, a CRM, an email tool), scored
against their ground truth (tests/demo_truth.py).

Below the orchestrator: each source's ingestion, hist-union and staging projects are
generated and run on the local backend, then the unification project over the staging
tables of all three, then the unification phase's validation.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import anyio
import pytest

from cdp_mcp.backends.local import LocalBackend
from cdp_mcp.cli.demo_sources import demo_config, write_demo
from cdp_mcp.core.config import PipelineConfig, load_config, parse_config
from cdp_mcp.core.phases import Phase, project_name, workflows
from cdp_mcp.core.schema import Column, SchemaMap, snake_case
from cdp_mcp.core.staging_rules import column_kind
from cdp_mcp.core.unify_plan import plan_unification
from cdp_mcp.generate import generate
from cdp_mcp.generate.schemas import predicted_schemas
from cdp_mcp.pipeline.cross_source import source_label
from cdp_mcp.pipeline.drafting.draft import draft_config
from cdp_mcp.pipeline.reports.html import across_sources_html
from cdp_mcp.pipeline.reports.report import across_sources_markdown
from cdp_mcp.pipeline.state import PipelineState
from cdp_mcp.pipeline.validate import Findings, validate_phase
from tests.demo_truth import (
    IDENTITY_COLUMNS,
    PRIMARY_KEYS,
    cross_source_figures,
    ground_truth,
    linked_clusters,
    pair_score,
)

CUSTOMERS = 300
SESSION = datetime(2026, 1, 1, tzinfo=UTC)


def demo_cfg(demo: Path, inferred: bool = False) -> PipelineConfig:
    raw = demo_config(inferred)
    raw["global"]["workspace"] = str(demo / "ws")
    return parse_config(raw, "acme.yml", demo)


def staged_schemas(cfg: PipelineConfig) -> SchemaMap:
    """Every source's tables as their files predict them."""
    schemas: SchemaMap = {}
    for name in cfg.source_names:
        schemas.update(predicted_schemas(cfg.for_source(name)))
    return schemas


@pytest.fixture
def demo(tmp_path: Path) -> Path:
    write_demo(tmp_path, rows=CUSTOMERS)
    return tmp_path


def test_inference_maps_every_identity_column_of_the_three_sources(demo: Path) -> None:
    """`email_address`, a JSON key's `work_email`, `Mobile Phone`, `Primary Contact
    E-mail`: the default inference finds each, under the right key, and nothing else."""
    cfg = demo_cfg(demo, inferred=True)
    plan = plan_unification(cfg, staged_schemas(cfg))
    mapped = {t.table: {kc.column: kc.key for kc in t.key_columns} for t in plan.tables}
    assert mapped == IDENTITY_COLUMNS
    assert [k.name for k in plan.keys] == ["email", "phone"]
    # the CRM's two addresses land side by side in unif_input, so TD links them
    crm = next(t for t in plan.tables if t.table == "crm_contacts")
    assert {kc.column: kc.input_column for kc in crm.key_columns} == {
        "email_address": "email",
        "mobile_phone": "phone",
        "extra_work_email": "email_2",
    }


@pytest.mark.parametrize(
    ("header", "shape", "kind"),
    [
        ("Primary Contact E-mail", None, "email"),
        ("email_address", None, "email"),
        ("Mobile Phone", None, "phone"),
        ("Mobile", None, "phone"),
        ("Email Opt In", "other", "plain"),
        ("Email Opt In", None, "plain"),
        ("Last Email Sent At", None, "timestamp"),
        ("email_sent_date", "phone", "timestamp"),  # a date has a phone's characters
        ("phone_verified", None, "plain"),
        ("email_bounce_count", None, "plain"),
        ("verified_phone", "phone", "phone"),  # its values are numbers: an identity
        ("confirmed_email", "email", "email"),
    ],
)
def test_a_column_about_an_address_is_no_identity(
    header: str, shape: str | None, kind: str
) -> None:
    """A mailer's `Email Opt In` or `Last Email Sent At` would otherwise be a key column
    whose every value is invalid."""
    assert column_kind(Column(name=snake_case(header), shape=shape), "updated_at") == kind


def test_configured_key_columns_name_each_sources_own_columns(demo: Path) -> None:
    cfg = demo_cfg(demo)
    plan = plan_unification(cfg, staged_schemas(cfg))
    assert {t.table: {kc.column: kc.key for kc in t.key_columns} for t in plan.tables} == (
        IDENTITY_COLUMNS
    )
    flags = {kc.column: kc.valid_flag for t in plan.tables for kc in t.key_columns}
    assert flags["primary_contact_e_mail"] == "primary_contact_e_mail_valid"


async def _run(
    backend: LocalBackend, cfg: PipelineConfig, phase: Phase, schemas: SchemaMap, n: int
) -> None:
    project = generate(cfg, phase, schemas)
    await backend.push(project_name(cfg, phase), project.directory)
    for i, wf in enumerate(workflows(cfg, phase)):
        attempt = await backend.start(
            project_name(cfg, phase), wf, session_time=SESSION + timedelta(minutes=n, seconds=i)
        )
        done = await backend.wait(attempt.id, timeout=300)
        if done.status != "success":
            failed = [t for t in await backend.tasks(done.id) if t.state == "error"]
            pytest.fail(f"{wf} ended {done.status}: {[(t.full_name, t.error) for t in failed]}")


def _enriched_ids(backend: LocalBackend, cfg: PipelineConfig) -> dict[tuple[str, str], str | None]:
    out: dict[tuple[str, str], str | None] = {}
    with backend.runtime.warehouse.cursor() as cur:
        for table, pk in PRIMARY_KEYS.items():
            rows = cur.execute(
                f'SELECT CAST("{pk}" AS VARCHAR), unified_id FROM {cfg.unif_db}.enriched_{table}'
            ).fetchall()
            out.update({(table, str(k)): v for k, v in rows})
    return out


def run_three_sources(cfg: PipelineConfig) -> Findings:
    """Each source's ingestion, hist-union and staging, then the unification over all
    three; the unification phase's validation."""
    backend = LocalBackend(cfg.workspace)
    schemas = staged_schemas(cfg)

    async def run_all() -> Findings:
        n = 0
        for source_cfg in (cfg.for_source(s) for s in cfg.source_names):
            for phase in (Phase.INGESTION, Phase.HIST_UNION, Phase.STAGING):
                await _run(backend, source_cfg, phase, predicted_schemas(source_cfg), n)
                n += 1
        await _run(backend, cfg, Phase.UNIFICATION, schemas, n)
        return await validate_phase(cfg, Phase.UNIFICATION, backend, schemas)

    return anyio.run(run_all)


@pytest.mark.slow
@pytest.mark.parametrize("inferred", [False, True], ids=["configured", "inferred"])
def test_three_sources_unify_as_the_ground_truth_says(demo: Path, inferred: bool) -> None:
    cfg = demo_cfg(demo, inferred)
    backend = LocalBackend(cfg.workspace)
    findings = run_three_sources(cfg)
    assert findings.failures == []
    truth = ground_truth(demo, CUSTOMERS)
    clusters = linked_clusters(truth)
    enriched = _enriched_ids(backend, cfg)
    assert {r for r in enriched} >= set(clusters)  # every record with evidence was staged
    score = pair_score(clusters, enriched)
    assert score.precision >= 0.999 and score.recall >= 0.999, score
    assert score.true_pairs > 500  # links across and within sources, not a handful

    # Coverage per table: the records with evidence are the rows with a valid key, and
    # each got an id; the others got none.
    m = findings.metrics
    for table in PRIMARY_KEYS:
        keyed = sum(1 for r in truth if r.table == table and r.evidence)
        rows = sum(1 for r in truth if r.table == table)
        cov = m["table_coverage"][table]
        assert (cov["rows"], cov["rows_with_valid_key"], cov["rows_with_id"]) == (
            rows,
            keyed,
            keyed,
        )
        assert cov["source"] == source_label(cfg, table)

    # The cross-source figures are the truth's.
    label = {r.source: source_label(cfg, r.table) for r in truth if r.table != "shopify_orders"}
    multi, pairs = cross_source_figures(truth)
    assert m["profiles_in_several_sources"] == multi
    got = {
        tuple(sorted((o["source"], o["and_source"]))): o["profiles_in_both"]
        for o in m["source_overlap"]
    }
    want = {tuple(sorted((label[a], label[b]))): n for (a, b), n in pairs.items()}
    assert {p: n for p, n in got.items() if n} == want
    assert not [w for w in findings.warnings if "found in another source" in w]
    if not inferred:
        _check_reports(findings, multi, want)


def _check_reports(findings: Findings, multi: int, pairs: dict[tuple[str, ...], int]) -> None:
    """Both reports' section on the cross-source figures, with counts and no address."""
    state = PipelineState(config_path="acme.yml", config_hash="h", client="acme", backend="local")
    ps = state.phase(Phase.UNIFICATION)
    ps.validation = findings.model_dump(mode="json")
    markdown = "\n".join(across_sources_markdown(state))
    html = across_sources_html(state)
    section = markdown.split("## Across sources", 1)[1]
    profiles = findings.metrics["profiles"]
    assert f"{multi:,} of {profiles:,} profiles are found in more than one source" in section
    for (a, b), n in pairs.items():
        assert f"| {a} | {b} | {n:,} |" in section
    cov = findings.metrics["table_coverage"]["crm_contacts"]
    row = f"| crm_contacts | crm | {cov['rows']:,} | {cov['rows_with_id']:,} | {cov['rows_with_valid_key']:,} |"
    assert row in section
    assert 'id="across-sources"' in html and f"{multi:,} of {profiles:,} profiles" in html
    assert "<td>crm_contacts</td><td>crm</td>" in html
    for text in (markdown, html):
        assert not re.search(r"[\w.]+@[\w-]+\.\w+", text)  # no address of the data


@pytest.mark.slow
def test_a_source_linking_nobody_and_a_key_column_without_valid_values_warn(demo: Path) -> None:
    """The mailer's addresses under a key no other source has, and the CRM's lead status
    mapped as an email: both are named with their counts and the fix, and no value."""
    raw = demo_config()
    raw["global"]["workspace"] = str(demo / "ws")
    u = raw["unification"]
    u["keys"].append({"name": "newsletter_email"})
    u["merge_by_keys"].append("newsletter_email")
    for t in u["tables"]:
        if t["table"] == "mailer_subscribers":
            t["key_columns"] = [{"column": "primary_contact_e_mail", "key": "newsletter_email"}]
        if t["table"] == "crm_contacts":
            t["key_columns"].append({"column": "lead_status", "key": "email"})
    findings = run_three_sources(parse_config(raw, "acme.yml", demo))

    assert findings.failures == []
    m = findings.metrics
    isolated = [w for w in findings.warnings if "found in another source" in w]
    mailer = m["profiles_per_source"]["mailer"]
    assert len(isolated) == 1 and isolated[0].startswith(f"source mailer: none of its {mailer} ")
    assert "primary_contact_e_mail as newsletter_email" in isolated[0]
    assert all(o["profiles_in_both"] == 0 for o in m["source_overlap"] if "mailer" in o.values())
    rows = m["table_coverage"]["crm_contacts"]["rows"]
    dead = [w for w in findings.warnings if "crm_contacts.lead_status (key email)" in w]
    assert len(dead) == 1 and f"(of {rows} rows) passes" in dead[0]
    assert "valid_regexp '.+@.+'" in dead[0] and "unification.tables" in dead[0]
    assert "@" not in " ".join(findings.warnings).replace("'.+@.+'", "")  # no address shown


def _profile_sets_of(backend: LocalBackend, cfg: PipelineConfig) -> dict[str, Any]:
    """The cross-source figures computed here, in Python, from each enriched table's ids."""
    held: dict[str, set[str]] = {}  # profile -> the sources holding it
    with backend.runtime.warehouse.cursor() as cur:
        for table in PRIMARY_KEYS:
            ids = cur.execute(
                f"SELECT DISTINCT unified_id FROM {cfg.unif_db}.enriched_{table} "
                "WHERE unified_id IS NOT NULL"
            ).fetchall()
            for (pid,) in ids:
                held.setdefault(pid, set()).add(source_label(cfg, table))
    sources = sorted({source_label(cfg, t) for t in PRIMARY_KEYS})
    by_count: dict[int, int] = {}
    for labels in held.values():
        by_count[len(labels)] = by_count.get(len(labels), 0) + 1
    return {
        "profiles_in_several_sources": sum(1 for labels in held.values() if len(labels) > 1),
        "profiles_by_sources": {
            f"in {k} source{'s' if k > 1 else ''}": n for k, n in sorted(by_count.items())
        },
        "profiles_per_source": {s: sum(1 for v in held.values() if s in v) for s in sources},
        "source_overlap": sorted(
            (a, b, sum(1 for v in held.values() if {a, b} <= v))
            for i, a in enumerate(sources)
            for b in sources[i + 1 :]
        ),
    }


@pytest.mark.slow
def test_ids_lost_or_moved_after_enrichment_change_the_coverage_and_overlap(demo: Path) -> None:
    """Ids cleared from rows with a valid key, and a source's ids all replaced by one
    profile of another source: the validation's coverage, its warning with the count, and
    the cross-source figures follow the tables as they are (counted here from the rows)."""
    cfg = demo_cfg(demo)
    backend = LocalBackend(cfg.workspace)
    before = run_three_sources(cfg)
    assert not [w for w in before.warnings if "valid key value but no" in w]
    crm = before.metrics["table_coverage"]["crm_contacts"]
    table = f"{cfg.unif_db}.enriched_crm_contacts"
    with backend.runtime.warehouse.cursor() as cur:
        cur.execute(
            f"UPDATE {table} SET unified_id = NULL WHERE rowid IN "
            f"(SELECT rowid FROM {table} WHERE unified_id IS NOT NULL ORDER BY rowid LIMIT 3)"
        )
        one = cur.execute(
            f"SELECT min(unified_id) FROM {cfg.unif_db}.enriched_crm_contacts"
        ).fetchone()[0]
        cur.execute(
            f"UPDATE {cfg.unif_db}.enriched_mailer_subscribers SET unified_id = ? "
            "WHERE unified_id IS NOT NULL",
            [one],
        )
    schemas = staged_schemas(cfg)
    after = anyio.run(validate_phase, cfg, Phase.UNIFICATION, backend, schemas)

    assert after.failures == []
    cov = after.metrics["table_coverage"]["crm_contacts"]
    assert cov["rows_with_id"] == crm["rows_with_id"] - 3
    assert after.metrics["coverage"]["crm_contacts"] == round(
        (crm["rows_with_id"] - 3) / crm["rows"], 4
    )
    lost = [w for w in after.warnings if "valid key value but no unified_id" in w]
    assert len(lost) == 1 and lost[0].startswith(
        f"{cfg.unif_db}.enriched_crm_contacts: 3 of {crm['rows']} rows "
    )
    want = _profile_sets_of(backend, cfg)
    assert _cross_source_figures(after) == want
    assert want["profiles_per_source"][source_label(cfg, "mailer_subscribers")] == 1
    assert _cross_source_figures(before) != want  # the figures did move


def _cross_source_figures(findings: Findings) -> dict[str, Any]:
    m = findings.metrics
    got = {k: m[k] for k in ("profiles_in_several_sources", "profiles_by_sources")}
    got["profiles_per_source"] = m["profiles_per_source"]
    got["source_overlap"] = sorted(
        (o["source"], o["and_source"], o["profiles_in_both"]) for o in m["source_overlap"]
    )
    return got


def _drafted(demo: Path, monkeypatch: pytest.MonkeyPatch) -> PipelineConfig:
    """draft_config over the demo's three folders, as written (a workspace of its own)."""
    monkeypatch.chdir(demo)
    out = demo / "drafted.yml"
    anyio.run(lambda: draft_config(out, ["shopify", "crm", "mailer"], client="acme"))
    return load_config(out)


def test_the_draft_of_the_three_demo_sources_maps_every_identity_column(
    demo: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cfg = _drafted(demo, monkeypatch)
    assert cfg.source_names == ["shopify", "crm", "mailer"]
    plan = plan_unification(cfg, staged_schemas(cfg))
    assert {t.table: {kc.column: kc.key for kc in t.key_columns} for t in plan.tables} == (
        IDENTITY_COLUMNS
    )


@pytest.mark.slow
def test_the_draft_of_the_three_demo_sources_unifies_as_the_truth_says(
    demo: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cfg = _drafted(demo, monkeypatch)
    findings = run_three_sources(cfg)
    assert findings.failures == []
    # the draft starts each source at its data's first day: the truth loads the same rows
    starts = {s.source_name: s.start_date for s in cfg.sources}
    assert starts["shopify"] < "2023-09-01"
    truth = ground_truth(demo, CUSTOMERS, starts)
    enriched = _enriched_ids(LocalBackend(cfg.workspace), cfg)
    score = pair_score(linked_clusters(truth), enriched)
    assert score.precision >= 0.999 and score.recall >= 0.999, score
