"""Several sources in one pipeline, through the orchestrator on the local backend: each
source through its own phases, one unification after every source's staging, a failing
source holding up only itself, a version-1 state migrated, a source added later."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import anyio
import pytest
import yaml

from cdp_mcp.cli import shell
from cdp_mcp.cli.run import EXIT_FAILED, EXIT_PASS, run_pipeline
from cdp_mcp.core.tools import ASK_PERSON
from cdp_mcp.pipeline.models import PipelineError
from cdp_mcp.pipeline.orchestrator import Pipeline
from cdp_mcp.pipeline.state import StateStore
from tests.multi_source_data import PEOPLE, config_doc, write_crm, write_pipeline

pytestmark = pytest.mark.slow


def run(coro: Any, *args: Any, **kwargs: Any) -> Any:
    return anyio.run(lambda: coro(*args, **kwargs))


def headless(config: Path) -> Any:
    lines: list[str] = []
    return anyio.run(lambda: run_pipeline(config, echo=lines.append)), lines


def state_doc(config: Path) -> dict[str, Any]:
    return json.loads((config.parent / "multi_cdp" / ".cdp_state" / "state.json").read_text())


def statuses(config: Path) -> dict[str, str]:
    return {key: ps["status"] for key, ps in state_doc(config)["stages"].items()}


def profiles(config: Path) -> int:
    unif = state_doc(config)["stages"]["unification"]
    return int(unif["validation"]["metrics"]["profiles"])


def test_three_sources_run_end_to_end_each_in_its_own_projects(tmp_path: Path) -> None:
    config = write_pipeline(tmp_path, ["shop", "crm", "mail"])
    outcome, lines = headless(config)
    assert outcome.exit_code == EXIT_PASS, outcome.message
    stages = [s.phase for s in outcome.phases]
    assert stages == [
        *(
            f"{p}:{s}"
            for s in ("shop", "crm", "mail")
            for p in ("ingestion", "hist_union", "staging")
        ),
        "unification",
    ]
    assert set(statuses(config).values()) == {"passed"}
    # Each source's phase is its own project, in its own folder; unification is one.
    ws = config.parent / "multi_cdp"
    for source in ("shop", "crm", "mail"):
        for phase in ("ingestion", "hist_union", "staging"):
            assert (ws / f"{source}_{phase}").is_dir()
            assert f"{phase}:{source}: pushed multi_{source}_{phase} revision" in "\n".join(lines)
    assert "unification: pushed multi_unification revision" in "\n".join(lines)
    # The shop's people, the CRM's own 100 more, the newsletter's all shared by email.
    assert profiles(config) == PEOPLE + 50
    # One project_name for every source's watermarks: an older pipeline's stay valid.
    rows = run(Pipeline(config).query, "SELECT DISTINCT project_name FROM multi_config.inc_log")
    assert rows.rows == [["multi_hist_union"]]


def test_phase_order_is_per_source_and_refusals_name_the_source(tmp_path: Path) -> None:
    config = write_pipeline(tmp_path, ["shop", "crm"])
    init = run(Pipeline(config).init)
    assert [(p.phase, p.source, p.project) for p in init.phases][:4] == [
        ("ingestion", "shop", "multi_shop_ingestion"),
        ("hist_union", "shop", "multi_shop_hist_union"),
        ("staging", "shop", "multi_shop_staging"),
        ("ingestion", "crm", "multi_crm_ingestion"),
    ]
    assert init.next_action.arguments == {
        "config_path": str(config),
        "phase": "ingestion",
        "source": "shop",
    }
    with pytest.raises(PipelineError, match=r"give `source`, one of: shop, crm"):
        run(Pipeline(config).generate_phase, "ingestion")
    with pytest.raises(PipelineError, match=r"source 'erp' is not in the config"):
        run(Pipeline(config).generate_phase, "ingestion", "erp")
    with pytest.raises(PipelineError, match=r"unification is one stage over every source"):
        run(Pipeline(config).generate_phase, "unification", "shop")
    # The CRM may start before the shop: the order holds within a source.
    run(Pipeline(config).generate_phase, "ingestion", "crm")
    with pytest.raises(PipelineError, match=r"hist_union:crm is locked: ingestion:crm has not"):
        run(Pipeline(config).generate_phase, "hist_union", "crm")
    with pytest.raises(PipelineError, match=r"hist_union:shop is locked: ingestion:shop has not"):
        run(Pipeline(config).push_project, "hist_union", "shop")

    # The shop's ingestion through: its hist_union opens, the CRM's stays locked.
    p = Pipeline(config)
    run(p.generate_phase, "ingestion", "shop")
    run(p.push_project, "ingestion", "shop")
    started = run(p.start_workflow, "ingestion", None, "shop")
    assert run(p.get_session, started.session_id, 60).status == "success"
    assert run(p.validate_tables, "ingestion", False, "shop").verdict == "PASS"
    after = run(p.generate_phase, "hist_union", "shop")
    assert after.directory.endswith("shop_hist_union")
    with pytest.raises(PipelineError, match=r"hist_union:crm is locked"):
        run(Pipeline(config).generate_phase, "hist_union", "crm")
    with pytest.raises(
        PipelineError, match=r"unification is locked: not every source's staging validated"
    ) as err:
        run(Pipeline(config).generate_phase, "unification")
    assert "staging:shop (status: pending), staging:crm (status: pending)" in str(err.value)
    status = Pipeline(config).status()
    assert [(v.phase, v.source, v.status) for v in status.phases][:2] == [
        ("ingestion", "shop", "passed"),
        ("hist_union", "shop", "in_progress"),
    ]


def test_a_failing_source_holds_up_only_its_own_phases(tmp_path: Path) -> None:
    """The CRM's file cannot be read: the shop goes through staging, unification waits,
    and the person is asked about the CRM alone; once the CRM is left out (its phases
    skipped), unification runs over the shop and says which source it left out."""
    config = write_pipeline(tmp_path, ["crm", "shop"])  # the failing source first
    (tmp_path / "crm" / "contacts.csv").write_bytes(
        b"contact_id,email_address,updated_at\nc1,\xff\xfe bad,2024-01-01\n"
    )
    outcome, lines = headless(config)
    assert outcome.exit_code == EXIT_FAILED
    assert "ingestion:crm: waits for a person; the other sources go on" in lines
    assert any(line.startswith("staging:shop: validation PASS") for line in lines)
    assert statuses(config) == {
        "ingestion:shop": "passed",
        "hist_union:shop": "passed",
        "staging:shop": "passed",
        "ingestion:crm": "pending",
        "hist_union:crm": "pending",
        "staging:crm": "pending",
        "unification": "pending",
    }
    assert outcome.failed_phase == "ingestion:crm"
    now = Pipeline(config).status().next_action
    assert now.tool == ASK_PERSON
    assert now.arguments == {"config_path": str(config), "phase": "ingestion", "source": "crm"}
    assert "contacts.csv is not UTF-8" in now.why
    assert "unification waits for every source's staging" in now.why
    skip = f"skip_phase(config_path='{config}', phase='ingestion', source='crm', confirm=true)"
    assert any(skip in c for c in now.choices)
    # From the shell, the same choice names the source.
    assert any("ingestion --source crm --yes" in c for c in shell.choices(now, str(config)))

    # The person leaves the CRM out: unification runs over the shop alone.
    for phase in ("ingestion", "hist_union", "staging"):
        run(Pipeline(config).skip_phase, phase, True, "crm")
    outcome, _ = headless(config)
    assert outcome.exit_code == EXIT_PASS, outcome.message
    assert profiles(config) == PEOPLE
    metrics = state_doc(config)["stages"]["unification"]["validation"]["metrics"]
    assert metrics["left_out_sources"] == ["crm"]
    unify = (tmp_path / "multi_cdp" / "unification").rglob("*.yml")
    assert not any("crm_contacts" in f.read_text() for f in unify)


def test_a_version_1_state_is_migrated_for_its_one_source(tmp_path: Path) -> None:
    config = write_pipeline(tmp_path, ["shop"])
    run(Pipeline(config).init)
    store = StateStore(tmp_path / "multi_cdp")
    doc = json.loads(store.path.read_text())
    # As version 1 wrote it: a stage per phase, keyed by phase; ingestion passed and
    # hist_union generated in the folder of the time.
    v1: dict[str, Any] = {k: v for k, v in doc.items() if k not in ("stages", "sources")}
    v1["schema_version"] = 1
    v1["phases"] = {}
    for key, ps in doc["stages"].items():
        ps = {k: v for k, v in ps.items() if k != "source"}
        v1["phases"][key.partition(":")[0]] = ps
    v1["phases"]["ingestion"]["status"] = "passed"
    v1["phases"]["ingestion"]["verdict"] = "PASS"
    v1["phases"]["hist_union"]["status"] = "in_progress"
    v1["phases"]["hist_union"]["steps"] = {
        "generate": {"name": "generate", "status": "succeeded", "attempts": 1}
    }
    store.path.write_text(json.dumps(v1))

    status = Pipeline(config).status()
    migrated = json.loads(store.path.read_text())
    assert migrated["schema_version"] == 2 and migrated["sources"] == ["shop"]
    assert migrated["migrated_from"]["schema_version"] == 1
    assert list(migrated["stages"]) == [
        "ingestion:shop",
        "hist_union:shop",
        "staging:shop",
        "unification",
    ]
    assert migrated["stages"]["ingestion:shop"]["status"] == "passed"
    # A stage not done renders again: its project is now in shop_hist_union/.
    gen = migrated["stages"]["hist_union:shop"]["steps"]["generate"]
    assert gen["status"] == "pending" and "shop_hist_union" in gen["last_error"]
    assert status.next_action.arguments == {
        "config_path": str(config),
        "phase": "hist_union",
        "source": "shop",
    }

    # A version-1 file under a config of two sources cannot be given to one: left as it is.
    store.path.write_text(json.dumps(v1))
    raw = yaml.safe_load(config.read_text())
    write_crm(tmp_path / "crm")
    raw["sources"] = config_doc(["shop", "crm"])["sources"]
    config.write_text(yaml.safe_dump(raw, sort_keys=False))
    before = store.path.read_bytes()
    with pytest.raises(PipelineError, match=r"schema version 1 .* names 2 sources \(shop, crm\)"):
        Pipeline(config).status()
    assert store.path.read_bytes() == before


def test_a_source_added_to_a_finished_pipeline_runs_alone_then_unification(
    tmp_path: Path,
) -> None:
    config = write_pipeline(tmp_path, ["shop"])
    outcome, _ = headless(config)
    assert outcome.exit_code == EXIT_PASS, outcome.message
    assert profiles(config) == PEOPLE
    shop_before = {k: v for k, v in state_doc(config)["stages"].items() if k.endswith(":shop")}

    write_crm(tmp_path / "crm")
    config.write_text(yaml.safe_dump(config_doc(["shop", "crm"]), sort_keys=False))
    init = run(Pipeline(config).init)
    assert init.resumed and not init.new_run and init.run == 1
    assert any(
        "sources added: crm; stages kept as they ran: ingestion:shop" in n for n in init.preflight
    )
    assert init.next_action.arguments == {
        "config_path": str(config),
        "phase": "ingestion",
        "source": "crm",
    }
    assert statuses(config)["unification"] == "pending"

    outcome, lines = headless(config)
    assert outcome.exit_code == EXIT_PASS, outcome.message
    after = state_doc(config)["stages"]
    # The shop's stages are as they ran: no step of theirs ran again.
    assert {k: v for k, v in after.items() if k.endswith(":shop")} == shop_before
    assert not any(line.startswith(("ingestion:shop", "staging:shop")) for line in lines)
    assert any(line.startswith("ingestion:crm: pushed") for line in lines)
    assert profiles(config) == PEOPLE + 50
    assert after["unification"]["status"] == "passed"


def test_a_source_whose_primary_key_does_not_exist_waits_while_the_others_run(
    tmp_path: Path,
) -> None:
    """A primary key the CRM's file lacks: init says so without refusing the pipeline, the
    CRM's hist_union refuses to render (it would stage the table undeduplicated) and waits
    for the person; the shop reaches staging PASS; unification waits."""
    config = write_pipeline(tmp_path, ["crm", "shop"])
    raw = yaml.safe_load(config.read_text())
    raw["sources"][0]["primary_keys"] = {"contacts": "contact_no"}
    config.write_text(yaml.safe_dump(raw, sort_keys=False))
    init = run(Pipeline(config).init)
    assert any(
        n.startswith("crm: PROBLEM: sources[0].primary_keys.contacts: 'contact_no' is not a column")
        for n in init.preflight
    ), init.preflight
    outcome, lines = headless(config)
    assert outcome.exit_code == EXIT_FAILED
    got = statuses(config)
    assert (got["ingestion:crm"], got["hist_union:crm"], got["staging:crm"]) == (
        "passed",
        "pending",
        "pending",
    )
    assert [got[f"{p}:shop"] for p in ("ingestion", "hist_union", "staging")] == ["passed"] * 3
    assert got["unification"] == "pending"
    now = Pipeline(config).status().next_action
    assert now.tool == ASK_PERSON
    assert (now.arguments["phase"], now.arguments["source"]) == ("hist_union", "crm")
    assert "generating hist_union:crm failed" in now.why and "contact_no" in now.why
    assert "hist_union:crm: waits for a person; the other sources go on" in lines
