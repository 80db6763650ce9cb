"""A fourth source (a support desk) added to the finished three-source demo, on the local
backend and on the TD emulator: only its stages run, then unification again; the profiles
it does not merge keep their persistent ids, and the validation and the report say what it
brought (new profiles, profiles found again, profiles it joined)."""

from __future__ import annotations

import csv
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import pytest
import yaml

from cdp_mcp.cli.demo_sources import write_demo, write_demo_config
from cdp_mcp.cli.run import EXIT_PASS, run_pipeline
from cdp_mcp.core.config import PipelineConfig, load_config
from cdp_mcp.core.phases import Phase
from cdp_mcp.emulator.app import create_app
from cdp_mcp.emulator.server import BackgroundServer
from cdp_mcp.pipeline.state import StateStore
from tests.conftest import SENTINEL_KEY
from tests.query_pages import all_rows
from tests.test_td_pipeline import on_td

pytestmark = pytest.mark.slow
ROWS = 150
FOUND_AGAIN = 20  # existing people who write to support
NEW_PEOPLE = 30  # people only support knows


def run(config: Path) -> list[str]:
    lines: list[str] = []
    outcome = anyio.run(lambda: run_pipeline(config, echo=lines.append))
    assert outcome.exit_code == EXIT_PASS, (outcome.message, "\n".join(lines[-40:]))
    return lines


def lookup(config: Path, cfg: PipelineConfig) -> dict[tuple[str, int], str]:
    """(value, key type) -> persistent id, read through the query tool."""
    sql = f"SELECT id, id_key_type, persistent_id FROM {cfg.unif_db}.unified_id_lookup"
    return {(str(v), int(k)): str(p) for v, k, p in all_rows(config, sql)}


def customers(config: Path, cfg: PipelineConfig) -> list[tuple[str, str | None, str]]:
    """(email, phone, profile) of the shop's customers with a valid email and an id."""
    sql = (
        "SELECT email, CASE WHEN phone_valid THEN phone END, unified_id "
        f"FROM {cfg.unif_db}.enriched_shopify_customers "
        "WHERE email_valid AND unified_id IS NOT NULL ORDER BY email"
    )
    return [(str(e), p, str(u)) for e, p, u in all_rows(config, sql)]


def write_support(folder: Path, known: list[tuple[str, str | None, str]]) -> dict[str, Any]:
    """tickets.csv: FOUND_AGAIN known people (their email in other case and padding),
    NEW_PEOPLE new ones, and one ticket whose email is one known person's and whose phone
    is another's (it joins their two profiles)."""
    folder.mkdir(parents=True)
    by_profile: dict[str, tuple[str, str | None]] = {}
    for email, phone, pid in known:
        by_profile.setdefault(pid, (email, phone))
    people = list(by_profile.items())
    again = people[:FOUND_AGAIN]
    x_pid, (x_email, _) = people[FOUND_AGAIN]
    y_pid, (_, y_phone) = next(p for p in people[FOUND_AGAIN + 1 :] if p[1][1])
    rows = [(f"  {e.upper()} ", "") for _, (e, _) in again]
    rows += [(f"new.person{i}@support-only.example", "") for i in range(NEW_PEOPLE)]
    rows.append((x_email, y_phone or ""))
    with (folder / "tickets.csv").open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["ticket_id", "requester_email", "requester_phone", "updated_at"])
        for i, (email, phone) in enumerate(rows, 1):
            w.writerow([i, email, phone, f"2024-03-{1 + i % 27:02d} 10:00:00"])
    return {"again": {pid for pid, _ in again}, "joined": {x_pid, y_pid}}


@pytest.fixture(params=["local", "treasuredata"])
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str | None]:
    """The TD emulator's URL for `treasuredata`, None for the local backend."""
    if request.param == "local":
        yield None
        return
    with BackgroundServer(create_app(tmp_path / "td_site", SENTINEL_KEY)) as server:
        yield server.url


def test_a_fourth_source_added_later_keeps_the_ids_it_does_not_merge(
    tmp_path: Path, backend: str | None, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = tmp_path / "demo"
    write_demo(root, rows=ROWS)
    config = write_demo_config(root)
    if backend is not None:
        monkeypatch.setenv("TD_API_KEY", SENTINEL_KEY)
        on_td(config, backend)
    run(config)
    cfg = load_config(config)
    before = lookup(config, cfg)
    profiles_before = len(set(before.values()))
    truth = write_support(root / "support", customers(config, cfg))

    raw = yaml.safe_load(config.read_text())
    raw["sources"].append(
        {
            "name": "support",
            "source_path": "./support",
            "objects": ["tickets"],
            "primary_keys": {"tickets": "ticket_id"},
            "start_date": "2023-09-01",
        }
    )
    raw["unification"]["tables"].append(
        {
            "table": "support_tickets",
            "key_columns": [
                {"column": "requester_email", "key": "email"},
                {"column": "requester_phone", "key": "phone"},
            ],
        }
    )
    config.write_text(yaml.safe_dump(raw, sort_keys=False))
    lines = run(config)
    # Only the new source's stages and unification ran.
    ran = {line.split(": ", 1)[0] for line in lines if ": started " in line}
    assert ran == {"ingestion:support", "hist_union:support", "staging:support", "unification"}

    cfg = load_config(config)
    after = lookup(config, cfg)
    if backend is None:  # the local engine continued its graph: an incremental run
        runs = all_rows(config, f"SELECT mode FROM {cfg.unif_db}.unified_id_runs ORDER BY time")
        assert [m for (m,) in runs] == ["full", "incremental"]
    # Every value of a profile the new source did not join keeps its persistent id.
    joined = truth["joined"]
    kept = {k: v for k, v in before.items() if v not in joined}
    changed = {k: (v, after.get(k)) for k, v in kept.items() if after.get(k) != v}
    assert not changed, list(changed.items())[:5]
    # The two profiles the ticket joins are one now, under one of their two ids.
    merged = {after[k] for k, v in before.items() if v in joined}
    assert len(merged) == 1 and merged <= joined

    unif = StateStore(cfg.workspace).load().phase(Phase.UNIFICATION)
    added = unif.validation["metrics"]["added_sources"]
    assert added == {
        "sources": ["support"],
        "earlier_sources": ["shopify", "crm", "mailer"],
        "earlier_profiles_before": profiles_before,
        "new_profiles": NEW_PEOPLE,
        "earlier_profiles_found_again": FOUND_AGAIN + 1,
        "earlier_profiles_now": profiles_before - 1,
    }
    report = (cfg.workspace / "reports" / "cdp_report.md").read_text(encoding="utf-8")
    assert (
        f"They brought {NEW_PEOPLE:,} new profiles (found in no earlier source) and found "
        f"{FOUND_AGAIN + 1:,} profiles of the earlier sources" in report
    )
    assert f"went from {profiles_before:,} to {profiles_before - 1:,} (1 fewer" in report
