from __future__ import annotations

from pathlib import Path

import pytest

from cdp_mcp.cli.main import main
from cdp_mcp.pipeline.state import StateStore


@pytest.mark.slow
def test_generate_prints_files_and_workflows(
    acme_config: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["generate", str(acme_config), "ingestion"]) == 0
    out = capsys.readouterr().out
    assert "shopify_ingest_hist.dig" in out
    assert "workflows (run order): shopify_ingest_hist, shopify_ingest_inc" in out
    assert (
        acme_config.parent / "acme_cdp" / "shopify_ingestion" / "shopify_ingest_inc.dig"
    ).is_file()


@pytest.mark.slow
def test_generate_all_phases(acme_config: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["generate", str(acme_config), "all"]) == 0
    ws = acme_config.parent / "acme_cdp"
    assert {p.name for p in ws.iterdir()} >= {
        "shopify_ingestion",
        "shopify_hist_union",
        "shopify_staging",
        "unification",
    }


def test_bad_config_is_one_clear_message(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cfg = tmp_path / "bad.yml"
    cfg.write_text("global: {client: acme}\ningestion: {source_name: s, objects: []}\n")
    assert main(["generate", str(cfg), "ingestion"]) == 1
    err = capsys.readouterr().err
    assert "ingestion.objects" in err
    assert "Traceback" not in err


@pytest.mark.slow
def test_unknown_phase_and_missing_source(
    acme_config: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["generate", str(acme_config), "enrichment"]) == 1
    assert "unknown phase 'enrichment'" in capsys.readouterr().err
    (acme_config.parent / "shopify" / "products.csv").unlink()
    assert main(["generate", str(acme_config), "ingestion"]) == 1
    assert "no file for object 'products'" in capsys.readouterr().err


def test_seed_config_with_connector_rest_is_refused_with_tds_connectors(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The seed's own YAML says `connector: rest`, a type TD does not have: refused, with
    the connector types that exist."""
    cfg = tmp_path / "acme.yml"
    cfg.write_text(
        "global: {client: acme}\n"
        "ingestion: {source_name: shopify, connector: rest, objects: [orders, customers]}\n"
    )
    assert main(["generate", str(cfg), "ingestion"]) == 1
    err = capsys.readouterr().err
    assert "ingestion.connector: 'rest' is not a Treasure Data input connector" in err
    assert "shopify" in err and "sfdc" in err and "bigquery" in err


@pytest.mark.slow
def test_seed_config_with_a_td_connector_generates_ingestion(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A TD connector: ingestion generates with secret references; later phases wait for
    the loaded tables' columns and say so."""
    cfg = tmp_path / "acme.yml"
    cfg.write_text(
        "global: {client: acme}\n"
        "ingestion:\n"
        "  source_name: shopify\n"
        "  connector: shopify\n"
        "  objects: [orders, customers]\n"
        "  connector_settings:\n"
        "    apikey: ${secret:shopify.apikey}\n"
        "    password: ${secret:shopify.password}\n"
        "    store_name: acme\n"
    )
    assert main(["generate", str(cfg), "ingestion"]) == 0
    load = (
        tmp_path / "acme_cdp" / "shopify_ingestion" / "config" / "shopify_orders_load.yml"
    ).read_text()
    assert "type: shopify" in load
    assert "${secret:shopify.apikey}" in load
    out = capsys.readouterr().out
    assert "secrets to set before running: shopify.apikey, shopify.password" in out
    assert main(["generate", str(cfg), "hist_union"]) == 1
    assert "run and validate ingestion first" in capsys.readouterr().err


@pytest.mark.slow
def test_generate_takes_its_turn_with_the_pipelines_other_steps(
    acme_config: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`cdp-mcp generate` renders through the orchestrator: while another call is doing a
    step of the same pipeline, it answers busy and writes nothing over that step's files."""
    workspace = acme_config.parent / "acme_cdp"
    with StateStore(workspace).operation("push_project"):
        assert main(["generate", str(acme_config), "ingestion"]) == 1
    err = capsys.readouterr().err
    assert "busy: push_project" in err and "nothing was changed" in err
    assert not (workspace / "ingestion").exists()
    assert main(["generate", str(acme_config), "ingestion"]) == 0
    assert not StateStore(workspace).exists()  # outside the run: no state, no budget spent
