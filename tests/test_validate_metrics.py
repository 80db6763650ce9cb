"""Data-quality metrics of the validate step, on the real local pipeline.

The example config (tests/fixtures/acme.yml) runs ingestion -> hist_union -> staging through
`Pipeline` as the MCP tools drive it; every number the validation stores is checked against
an independent computation over the fixture CSVs (the load's start_date filter, staging's
NULL rules and dedup, redone here in Python).
"""

from __future__ import annotations

import csv
import re
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import anyio
import pytest

from cdp_mcp.core.config import load_config
from cdp_mcp.core.phases import Phase, workflows
from cdp_mcp.pipeline.models import ValidationResult
from cdp_mcp.pipeline.orchestrator import Pipeline

pytestmark = pytest.mark.slow  # end to end: the full suite, not the fast lane

PLACEHOLDERS = {"", "null", "none", "n/a", "na"}
EMAIL_RE = re.compile(r"^[a-z0-9._%+-]+@[a-z0-9-]+([.][a-z0-9-]+)*[.][a-z]{2,}$")
START = datetime(2023, 9, 1, tzinfo=UTC)
# The documented weights (docs/internals.md, "Data-quality score").
W_KEY, W_UNIQUE, W_CONTACT, W_TIME = 0.25, 0.15, 0.45, 0.15


def run_to_staging(config: Path) -> dict[str, ValidationResult]:
    """init, then per phase generate/push/run every workflow/validate (warnings accepted)."""
    cfg = load_config(config)

    async def main() -> dict[str, ValidationResult]:
        out = {}
        await Pipeline(config).init()
        for phase in (Phase.INGESTION, Phase.HIST_UNION, Phase.STAGING):
            await Pipeline(config).generate_phase(phase.value)
            await Pipeline(config).push_project(phase.value)
            for wf in workflows(cfg, phase):
                started = await Pipeline(config).start_workflow(phase.value, wf)
                session = await Pipeline(config).get_session(started.session_id, 60)
                assert session.status == "success", session.failed_tasks
            result = await Pipeline(config).validate_tables(phase.value)
            assert result.verdict != "FAIL", result.failures
            if result.verdict == "WARN":
                await Pipeline(config).validate_tables(phase.value, accept_warnings=True)
            out[phase.value] = result
        return out

    return anyio.run(main)


# -- the independent computation -------------------------------------------------------


def _ts(text: str) -> datetime | None:
    t = text.strip().replace("Z", "+00:00")
    try:
        parsed = datetime.fromisoformat(t)
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def _null(value: str) -> str | None:
    return None if value.strip().lower() in PLACEHOLDERS else value.strip()


def _phone(value: str) -> str | None:
    digits = re.sub(r"[^0-9]", "", value)
    if not digits:
        return None
    return digits[1:] if len(digits) == 11 and digits[0] == "1" else digits


def expected_staging(path: Path, contacts: dict[str, str]) -> dict[str, Any]:
    """Rows loaded (updated_at >= start_date), deduplicated by id (latest updated_at, NULL
    ids all kept), contact columns cleaned as staging does."""
    rows = list(csv.DictReader(path.open(encoding="utf-8")))
    loaded = [r for r in rows if (ts := _ts(r["updated_at"])) is not None and ts >= START]
    latest: dict[str, dict[str, str]] = {}
    keyless = []
    for r in loaded:
        key = _null(r["id"])
        if key is None:
            keyless.append(r)
        elif key not in latest or _ts(r["updated_at"]) > _ts(latest[key]["updated_at"]):  # type: ignore[operator]
            latest[key] = r
    staged = [*latest.values(), *keyless]
    n = len(staged)
    out: dict[str, Any] = {
        "source": len(rows),
        "loaded": len(loaded),
        "staged": n,
        "null_rate_id": round(len(keyless) / n, 4),
    }
    for col, kind in contacts.items():
        values = [
            _phone(r[col]) if kind == "phone" else (_null(r[col]) or "").lower() or None
            for r in staged
        ]
        out[f"null_rate_{col}"] = round(sum(v is None for v in values) / n, 4)
        if kind == "phone":
            valid = sum(v is not None and len(v) == 10 for v in values)
        else:
            valid = sum(v is not None and bool(EMAIL_RE.match(v)) for v in values)
        out[f"{col}_valid_share"] = round(valid / n, 4)
    return out


def documented_score(stats: dict[str, Any], contacts: list[str]) -> float:
    parts = [
        (W_KEY, 1 - stats["null_rate_id"]),
        (W_UNIQUE, 1 - stats["duplicate_share"]),
        *[(W_CONTACT / len(contacts), stats[f"{c}_valid_share"]) for c in contacts],
        (W_TIME, 1 - stats["null_rate_updated_at_unixtime"]),
    ]
    return 100 * sum(w * c for w, c in parts) / sum(w for w, _ in parts)


# -- tests -----------------------------------------------------------------------------


def test_metrics_match_the_fixture_row_for_row(acme_config: Path) -> None:
    results = run_to_staging(acme_config)
    shop = acme_config.parent / "shopify"
    contacts = {
        "shopify_customers": {"email": "email", "phone": "phone"},
        "shopify_orders": {"customer_email": "email"},
        "shopify_products": {},
    }
    expected = {
        t: expected_staging(shop / f"{t.removeprefix('shopify_')}.csv", c)
        for t, c in contacts.items()
    }
    # The numbers the brief names, spelt out: 5 customers, 1 before start_date, id 2 twice.
    assert expected["shopify_customers"]["source"] == 5
    assert expected["shopify_customers"]["loaded"] == 4
    assert expected["shopify_customers"]["staged"] == 3

    ingestion = results["ingestion"].metrics
    for t, exp in expected.items():
        obj = t.removeprefix("shopify_")
        counts = ingestion["rows_loaded"][obj]
        assert counts["historical"] + counts["incremental"] == exp["loaded"]
        loads = ingestion["loads"][obj]
        assert {ld["mode"] for ld in loads} == {"historical", "incremental"}
        assert all(ld["status"] == "success" for ld in loads)
        for mode in ("historical", "incremental"):
            assert sum(ld["rows"] for ld in loads if ld["mode"] == mode) == counts[mode]
    assert ingestion["start_date"] == "2023-09-01T00:00:00.000000"
    # where each source row went: left out before start_date or without a time, or loaded
    for t, exp in expected.items():
        obj = t.removeprefix("shopify_")
        rows = list(csv.DictReader((shop / f"{obj}.csv").open(encoding="utf-8")))
        unparsed = sum(_ts(r["updated_at"]) is None for r in rows)
        assert ingestion["source_rows"][obj] == {
            "file": f"{obj}.csv",
            "source_rows": exp["source"],
            "before_start_date": exp["source"] - exp["loaded"] - unparsed,
            "unparseable_time": unparsed,
            "field": "updated_at",
            "unparseable_samples": [],
            "loaded": exp["loaded"],
            "eligible_not_loaded": 0,
        }

    staging = results["staging"].metrics
    assert staging["dq_score_formula"].startswith("dq_score = round(100 * sum(w_i * c_i)")
    for t, exp in expected.items():
        stats = staging["tables"][t]
        flow = staging["row_flow"][t]
        assert flow["ingested"] == flow["hist"] + flow["incremental"] == exp["loaded"]
        assert flow["union"] == exp["loaded"]
        assert flow["staged"] == stats["staged_rows"] == exp["staged"]
        assert flow["dropped"] == {"dedup": exp["loaded"] - exp["staged"]}
        assert stats["dropped_by_dedup"] == exp["loaded"] - exp["staged"]
        assert stats["null_key_rows"] == 0 and stats["null_rate_id"] == exp["null_rate_id"]
        assert stats["duplicate_keys"] == 0 and stats["duplicate_share"] == 0
        assert stats["null_rate_updated_at_unixtime"] == 0
        for col in contacts[t]:
            assert stats[f"null_rate_{col}"] == exp[f"null_rate_{col}"], (t, col)
            assert stats[f"{col}_valid_share"] == exp[f"{col}_valid_share"], (t, col)
        assert 0 <= stats["dq_score"] <= 100
        assert stats["dq_score"] == pytest.approx(
            documented_score(stats, list(contacts[t])), abs=0.05
        )
    customers = staging["tables"]["shopify_customers"]
    assert customers["dropped_by_dedup"] == 1
    assert customers["null_rate_phone"] == 0.6667  # Cy's '' and Dee's NONE
    assert customers["phone_valid_share"] == 0.3333
    assert customers["dq_score"] == 85.0
    assert staging["tables"]["shopify_orders"]["null_rate_customer_email"] == 0.3333
    assert staging["tables"]["shopify_products"]["dq_score"] == 100.0
    assert results["staging"].verdict == "PASS"

    # A row appended to a source after its loads is reported as not loaded (yet).
    with (shop / "customers.csv").open("a", encoding="utf-8") as f:
        f.write(
            "9,Lou,Late,late@example.com,5551112222,2024-06-01T00:00:00Z,2024-06-01T00:00:00Z\n"
        )
    again = anyio.run(lambda: Pipeline(acme_config).validate_tables("ingestion"))
    assert again.metrics["source_rows"]["customers"]["eligible_not_loaded"] == 1
    assert any(
        w.startswith("1 rows of customers.csv from start_date on are not loaded")
        for w in again.warnings
    ), again.warnings


TINY = """
global: {client: tiny, backend: local}
ingestion:
  source_name: shop
  connector: file
  source_path: ./data
  objects: [customers]
  start_date: "2023-09-01"
"""
TINY_CUSTOMERS = """id,email,updated_at
1,good@example.com,2024-01-01T00:00:00Z
2,bad-email,2024-01-02T00:00:00Z
,also bad,2024-01-03T00:00:00Z
,nope@,2024-01-04T00:00:00Z
5,N/A,2024-01-05T00:00:00Z
"""


def test_a_low_score_warns_with_the_weakest_component(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("TD_API_KEY", raising=False)
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "customers.csv").write_text(TINY_CUSTOMERS)
    config = tmp_path / "tiny.yml"
    config.write_text(TINY)
    staging = run_to_staging(config)["staging"]

    exp = expected_staging(tmp_path / "data" / "customers.csv", {"email": "email"})
    stats = staging.metrics["tables"]["shop_customers"]
    assert stats["staged_rows"] == exp["staged"] == 5  # NULL ids are kept, not deduplicated
    assert stats["null_key_rows"] == 2
    assert stats["null_rate_id"] == exp["null_rate_id"] == 0.4
    assert stats["email_valid_share"] == exp["email_valid_share"] == 0.2
    assert stats["null_rate_email"] == exp["null_rate_email"] == 0.2
    score = documented_score(stats, ["email"])
    assert stats["dq_score"] == pytest.approx(score, abs=0.05) == 54.0
    assert stats["dq_components"]["email_valid"] == 0.2
    assert staging.verdict == "WARN"
    assert staging.warnings == [
        "tiny_stg.shop_customers has data-quality score 54.0 (below 60); "
        "weakest component: email_valid = 0.2"
    ]


def test_rows_loaded_after_staging_are_waiting_not_dropped(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Staging holds the union up to its watermark; rows loaded since are not dedup drops."""
    monkeypatch.delenv("TD_API_KEY", raising=False)
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "customers.csv").write_text(TINY_CUSTOMERS)
    config = tmp_path / "tiny.yml"
    config.write_text(TINY)
    before = run_to_staging(config)["staging"].metrics["tables"]["shop_customers"]
    assert (before["rows_after_watermark"], before["dropped_by_dedup"]) == (0, 0)
    cfg = load_config(config)

    async def load_two_more_and_validate() -> ValidationResult:
        backend = Pipeline(config).backend
        await backend.query(
            "INSERT INTO shop_customers_hist_union (id, email, updated_at, time) VALUES "
            "('1', 'newer@example.com', '2024-02-01', 4102444800), "
            "('7', 'x@example.com', '2024-02-01', 4102444800)",
            cfg.src_db,
        )
        return await Pipeline(config).validate_tables("staging")

    after = anyio.run(load_two_more_and_validate)
    stats = after.metrics["tables"]["shop_customers"]
    assert (stats["union_rows"], stats["staged_rows"]) == (7, 5)
    assert (stats["rows_after_watermark"], stats["dropped_by_dedup"]) == (2, 0)
    assert after.metrics["row_flow"]["shop_customers"]["waiting_for_staging"] == 2
    assert any("2 rows loaded after staging's last run" in w for w in after.warnings)


def test_duplicate_keys_after_dedup_fail_with_their_count(acme_config: Path) -> None:
    """The duplicate count runs only when the key's distinct count says some exist: a
    staging table that gained copies of three rows must still FAIL, naming three."""
    run_to_staging(acme_config)
    cfg = load_config(acme_config)

    async def main() -> ValidationResult:
        p = Pipeline(acme_config)
        await p.backend.query(
            "INSERT INTO acme_stg.shopify_customers "
            "SELECT * FROM acme_stg.shopify_customers WHERE id IS NOT NULL ORDER BY id LIMIT 3",
            cfg.stg_db,
        )
        return await Pipeline(acme_config).validate_tables(Phase.STAGING.value)

    result = anyio.run(main)
    assert result.verdict == "FAIL"
    assert "acme_stg.shopify_customers has 3 duplicate id values after dedup" in result.failures
    stats = result.metrics["tables"]["shopify_customers"]
    assert stats["duplicate_keys"] == 3 and stats["duplicate_share"] > 0
    assert result.metrics["tables"]["shopify_orders"]["duplicate_keys"] == 0
