"""The whole pipeline through the orchestrator on the `treasuredata` backend, against the
TD emulator on 127.0.0.1 (which runs pushed projects on the embedded engine)."""

from __future__ import annotations

from pathlib import Path

import anyio
import pytest
import yaml

from cdp_mcp.cli.run import EXIT_PASS, run_pipeline
from cdp_mcp.emulator.app import create_app
from cdp_mcp.emulator.faults import FaultPlan
from cdp_mcp.emulator.server import BackgroundServer
from cdp_mcp.pipeline.models import PipelineError
from cdp_mcp.pipeline.orchestrator import Pipeline
from tests.conftest import SENTINEL_KEY, with_extras

pytestmark = pytest.mark.slow  # end to end: the full suite, not the fast lane


def on_td(config: Path, url: str) -> None:
    raw = yaml.safe_load(config.read_text())
    raw["global"].update(backend="treasuredata", td_endpoint=url, td_api_key="${TD_API_KEY}")
    config.write_text(yaml.safe_dump(raw))


def test_every_phase_runs_on_td_and_the_key_stays_secret(acme_config: Path) -> None:
    site = acme_config.parent / "td_site"
    with BackgroundServer(create_app(site, SENTINEL_KEY)) as server:
        on_td(acme_config, server.url)
        lines: list[str] = []
        outcome = anyio.run(lambda: run_pipeline(acme_config, echo=lines.append))
        log = "\n".join(lines)
        assert outcome.exit_code == EXIT_PASS, (outcome.message, log)
        assert "API key accepted" in log
        # unification references ${secret:td.apikey}: found missing after push, set from env
        assert "unification: set secrets td.apikey from the environment" in log
        status = Pipeline(acme_config).status()
        assert [p.verdict for p in status.phases] == ["PASS"] * 4
    workspace = acme_config.parent / "acme_cdp"
    for path in [*workspace.rglob("*"), *site.rglob("*")]:
        if path.is_file() and path.suffix not in (".duckdb", ".gz", ".sqlite", ".wal"):
            assert SENTINEL_KEY not in path.read_text(errors="replace"), path


def test_more_ids_and_a_master_table_pass_on_td(acme_config: Path) -> None:
    """The generated project posts master tables and a second id to TD's API (the emulator
    serves it as TD does); validation checks TD's tables for both ids and the master table."""
    with_extras(acme_config)
    with BackgroundServer(create_app(acme_config.parent / "td_site", SENTINEL_KEY)) as server:
        on_td(acme_config, server.url)
        lines: list[str] = []
        outcome = anyio.run(lambda: run_pipeline(acme_config, echo=lines.append))
        assert outcome.exit_code == EXIT_PASS, (outcome.message, "\n".join(lines))

        async def read() -> dict[str, list[list[object]]]:
            p = Pipeline(acme_config)
            db = "cdp_unification_customer_360"
            out = {
                "master": (
                    await p.query(
                        f"SELECT first_name, emails, last_order_total, shop_email_id"
                        f" FROM {db}.customer_master WHERE first_name = 'Bob'"
                    )
                ).rows,
                "ids": (
                    await p.query(
                        f"SELECT count(DISTINCT persistent_id) FROM {db}.shop_email_id_lookup"
                    )
                ).rows,
            }
            await p.aclose()
            return out

        got = anyio.run(read)
    ((first, emails, total, shop),) = got["master"]
    # Order 101 was updated from 5.00 to 7.50; staging keeps the latest (money is rounded to a
    # double, as the plugin stages it), the master table its value.
    assert (first, emails, total) == ("Bob", ["bob@example.com"], 7.5) and shop
    assert got["ids"][0][0] >= 1


def test_start_is_refused_until_the_secrets_exist(acme_config: Path) -> None:
    with BackgroundServer(create_app(acme_config.parent / "td_site", SENTINEL_KEY)) as server:
        on_td(acme_config, server.url)

        async def scenario() -> None:
            p = Pipeline(acme_config)
            await p.init()
            for phase in ("ingestion", "hist_union", "staging"):
                await p.skip_phase(phase, confirm=True)
            generated = await p.generate_phase("unification")
            assert generated.secrets == ["td.apikey"]
            pushed = await p.push_project("unification")
            assert pushed.missing_secrets == ["td.apikey"]
            assert pushed.next_action.tool == "set_secrets"
            with pytest.raises(PipelineError, match=r"set_secrets\(config_path, 'unification'"):
                await p.start_workflow("unification")
            result = await p.set_secrets("unification", ["td.apikey"])
            assert (result.set, result.still_missing) == (["td.apikey"], [])
            assert SENTINEL_KEY not in result.model_dump_json()
            started = await p.start_workflow("unification")
            assert started.attempt_id
            await p.aclose()

        anyio.run(scenario)


def test_a_wrong_key_is_one_clear_message(
    acme_config: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with BackgroundServer(create_app(acme_config.parent / "td_site", SENTINEL_KEY)) as server:
        on_td(acme_config, server.url)
        monkeypatch.setenv("TD_API_KEY", "1/" + "0" * 40)  # TD's form, not the key
        with pytest.raises(PipelineError) as err:
            anyio.run(Pipeline(acme_config).init)
        assert "check TD_API_KEY and td_endpoint" in str(err.value)
        assert "0" * 40 not in str(err.value)


def test_the_pipeline_survives_a_flaky_td(acme_config: Path) -> None:
    """5% of requests fail (500, 429, dropped, slow): transport retries absorb them."""
    faults = FaultPlan(rate=0.05, seed=3)
    app = create_app(acme_config.parent / "td_site", SENTINEL_KEY, faults=faults)
    with BackgroundServer(app) as server:
        on_td(acme_config, server.url)
        lines: list[str] = []
        outcome = anyio.run(lambda: run_pipeline(acme_config, echo=lines.append))
        assert outcome.exit_code == EXIT_PASS, (outcome.message, "\n".join(lines))
