"""The prep's incremental runs (dynmic_prep_creation.dig with update_strategy incremental on
the local backend) leave each `{table}_prep` and unif_input exactly as a full build over the
same staged rows would, including when a run fails after any of its steps and is run again.

The steps run on DuckDB in the workflow's order, translated as the local runner does it;
staging's restage is simulated as staging does it: the rows of each restaged key (and the
key-less rows from the restage's first `time` on) are deleted, their new versions inserted
with a later `load_timestamp`.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

import duckdb
import pytest

from cdp_mcp.backends.local.sql import translate
from cdp_mcp.digdag.loader import load_dig
from cdp_mcp.generate.unification import render
from tests.test_generate_unification import STG, _create, make_config, staging_schemas

TABLES = ("shopify_customers", "shopify_orders")
DELTA = ["changes", "affected", "delete", "insert", "unif_delete", "unif_insert"]
DELTA += ["rows_delete", "rows_insert", "drop"]


class Prep:
    """dynmic_prep_creation.dig's steps (what the local runner does, without the runner)."""

    def __init__(self, con: duckdb.DuckDBPyConnection, files: dict[str, str]) -> None:
        self.con, self.files = con, files
        con.execute("CREATE SCHEMA IF NOT EXISTS acme_config")
        self.sql("queries/create_enrich_log.sql", {})

    def sql(self, rel: str, results: dict[str, Any], create: str | None = None) -> None:
        text = self.files[rel].replace("${session_time}", "2024-01-01")
        for name, value in results.items():
            text = text.replace("${td.last_results." + name + "}", str(value))
        assert "${" not in text, text
        tr = translate(text)
        if create:
            self.con.execute(f"CREATE OR REPLACE TABLE {STG}.{create} AS {tr.sql}")
        elif tr.insert_table:  # the runner writes a bare INSERT ... SELECT's rows itself
            db, table = tr.insert_table.split(".")
            self.con.execute(f'INSERT INTO "{db}"."{table}" {tr.sql}')
        else:
            self.con.execute(tr.sql)

    def bounds(self, rel: str) -> dict[str, Any]:
        cur = self.con.execute(translate(self.files[rel]).sql)
        names = [d[0] for d in cur.description]
        return dict(zip(names, cur.fetchone() or (), strict=True))

    def run(self, stop_after: tuple[str, str] | None = None) -> dict[str, str]:
        """One run of the workflow; `stop_after` (table, step): fail right after it."""
        done: dict[str, str] = {}
        for t in TABLES:
            q = f"queries/prep_{t}"
            b = self.bounds(f"{q}_bounds.sql")
            steps = ["forget", "rows", "prep"] if b["rebuild"] else DELTA if b["delta"] else []
            for step in steps:
                if step == "forget":
                    self.con.execute(f"DROP TABLE IF EXISTS {STG}.unif_input")
                elif step == "rows":
                    self.sql(f"{q}_rows.sql", b, create=f"{t}_prep_rows")
                elif step == "prep":  # from the rows just written, as the workflow does
                    self.sql(f"{q}_from_rows.sql", b, create=f"{t}_prep")
                elif step in ("changes", "affected"):
                    self.sql(f"{q}_{step}.sql", b, create=f"{t}_prep_{step}")
                elif step == "drop":
                    for name in ("changes", "affected"):
                        self.con.execute(f"DROP TABLE {STG}.{t}_prep_{name}")
                elif not step.startswith("unif_") or b["unif_input_built"]:
                    self.sql(f"{q}_{step}.sql", b)
                if (t, step) == stop_after:
                    return {**done, t: "failed"}
            self.sql(f"{q}_log.sql", b)
            done[t] = "rebuilt" if b["rebuild"] else "delta" if b["delta"] else "nothing"
        if self.bounds("queries/unif_input_bounds.sql")["build"]:
            self.sql("queries/unif_input.sql", {}, create="unif_input")
        return done

    def kept(self) -> dict[str, Counter[tuple[Any, ...]]]:
        tables = [f"{t}_prep" for t in TABLES] + [f"{t}_prep_rows" for t in TABLES]
        tables.append("unif_input")
        return {t: Counter(self.con.execute(f"SELECT * FROM {STG}.{t}").fetchall()) for t in tables}

    def rebuilt(self) -> dict[str, Counter[tuple[Any, ...]]]:
        """What the full builds give over the staged rows as they are now."""
        out = {}
        for t in TABLES:
            for name, rel in ((f"{t}_prep", f"prep_{t}"), (f"{t}_prep_rows", f"prep_{t}_rows")):
                sql = translate(self.files[f"queries/{rel}.sql"]).sql
                out[name] = Counter(self.con.execute(sql).fetchall())
        # unif_input.sql reads the prep tables: over fresh copies of them
        for t in TABLES:
            sql = translate(self.files[f"queries/prep_{t}.sql"]).sql
            self.con.execute(f"CREATE OR REPLACE TEMP TABLE fresh_{t} AS {sql}")
        text = translate(self.files["queries/unif_input.sql"]).sql
        for t in TABLES:
            text = text.replace(f'"{STG}"."{t}_prep"', f"fresh_{t}")
        out["unif_input"] = Counter(self.con.execute(text).fetchall())
        return out


# id (None: staging keeps every such row), email, email_valid, phone, phone_valid, time
CUSTOMERS = [
    (1, "ann@example.com", True, "5551234567", True, 100),
    (2, "bob@example.com", True, None, None, 200),
    (5, "ann@example.com", True, "5551234567", True, 50),
    (7, "bob@example.com", True, "5559876543", True, 700),
    (None, "dan@example.com", True, None, None, 150),
    (None, "old@example.com", True, None, None, 160),
]
ORDERS = [(100, "ann@example.com", None, 1000), (101, "carol@example.com", "bob@example.com", 1100)]


def customer(row: tuple[Any, ...], staged_at: int) -> dict[str, Any]:
    i, e, ev, p, pv, t = row
    return {"id": i, "email": e, "email_valid": ev, "phone": p, "phone_valid": pv, "time": t,
            "load_timestamp": staged_at}  # fmt: skip


def order(row: tuple[Any, ...], staged_at: int) -> dict[str, Any]:
    i, a, b, t = row
    return {"id": i, "customer_email": a, "contact_email": b, "time": t,
            "customer_email_valid": a is not None, "contact_email_valid": b is not None,
            "load_timestamp": staged_at}  # fmt: skip


def restage(
    con: duckdb.DuckDBPyConnection,
    table: str,
    rows: list[dict[str, Any]],
    keyless_from: int | None = None,
) -> None:
    """Staging's delete.sql + insert.sql for `rows` (new versions, and key-less rows loaded
    from `keyless_from` on)."""
    keys = [r["id"] for r in rows if r["id"] is not None]
    if keys:
        con.execute(f"DELETE FROM {STG}.{table} WHERE id IN ({', '.join(map(str, keys))})")
    if keyless_from is not None:
        con.execute(f"DELETE FROM {STG}.{table} WHERE id IS NULL AND time >= {keyless_from}")
    _create_rows(con, f"{STG}.{table}", rows)


def _create_rows(con: duckdb.DuckDBPyConnection, table: str, rows: list[dict[str, Any]]) -> None:
    for row in rows:
        marks = ", ".join("?" for _ in row)
        con.execute(f"INSERT INTO {table} ({', '.join(row)}) VALUES ({marks})", list(row.values()))


@pytest.fixture
def prep(tmp_path: Path) -> Prep:
    schemas = staging_schemas()
    con = duckdb.connect()
    con.execute(f"CREATE SCHEMA {STG}")
    _create(con, f"{STG}.shopify_customers", schemas, [customer(r, 10) for r in CUSTOMERS])
    _create(con, f"{STG}.shopify_orders", schemas, [order(r, 10) for r in ORDERS])
    files = render(make_config(tmp_path), schemas)
    return Prep(con, files)


def test_the_workflow_runs_the_steps_in_this_order(prep: Prep, tmp_path: Path) -> None:
    """The harness above runs what the workflow runs, in its order."""
    for rel, text in prep.files.items():
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text(text)
    dig = load_dig(tmp_path / "dynmic_prep_creation.dig", tmp_path)
    table = dig["+prep"]["+shopify_customers"]
    assert [k for k in table if k.startswith("+")] == [
        "+read_watermark", "+rebuild", "+redo_changes", "+log_watermark",
    ]  # fmt: skip
    assert [k for k in table["+rebuild"]["_do"] if k.startswith("+")] == [
        "+forget_unif_input", "+rows", "+prep",
    ]  # fmt: skip
    rebuild = table["+rebuild"]["_do"]
    assert rebuild["+rows"]["td>"] == "queries/prep_shopify_customers_rows.sql"
    assert rebuild["+prep"]["td>"] == "queries/prep_shopify_customers_from_rows.sql"
    delta = [k for k in table["+redo_changes"]["_do"] if k.startswith("+")]
    assert delta == [
        "+changes", "+affected", "+delete_prep", "+insert_prep", "+unif_input",
        "+delete_rows", "+insert_rows", "+drop_changes",
    ]  # fmt: skip
    assert "_parallel" not in dig["+prep"]  # one table after another: they share unif_input


@pytest.mark.slow
def test_a_delta_run_and_a_retried_one_equal_a_full_build(prep: Prep) -> None:
    con = prep.con
    assert prep.run() == {t: "rebuilt" for t in TABLES}
    assert prep.kept() == prep.rebuilt()
    assert prep.run() == {t: "nothing" for t in TABLES}

    # 1's email changes ((ann, 555-4567) stays: 5 holds it), 7 loses its email (its
    # combination goes), a new customer, the key-less rows restaged from time 160 on (the
    # union still holds 'old': staged again; 'dan' is before the span: kept as it was), an
    # order's contact email cleared (carol+bob goes, carol alone comes).
    restage(con, "shopify_customers", [
        customer((1, "ann2@example.com", True, "5551234567", True, 800), 20),
        customer((7, None, None, "5559876543", True, 900), 20),
        customer((8, "carol@example.com", True, None, None, 900), 20),
        customer((None, "old@example.com", True, None, None, 160), 20),
        customer((None, "erin@example.com", True, None, None, 950), 20),
    ], keyless_from=160)  # fmt: skip
    restage(con, "shopify_orders", [order((101, "carol@example.com", None, 1150), 20)])
    assert prep.run() == {t: "delta" for t in TABLES}
    kept = prep.kept()
    assert kept == prep.rebuilt()
    customers = {r[:2] for r in kept["shopify_customers_prep"]}
    assert ("bob@example.com", "5559876543") not in customers
    assert ("carol@example.com", None) in customers
    assert ("ann@example.com", "5551234567", 50) in kept["shopify_customers_prep"]
    orders = {r[:2] for r in kept["shopify_orders_prep"]}
    assert ("carol@example.com", "bob@example.com") not in orders

    # A run that fails after any step, then runs again, ends where an unbroken one does.
    for i, step in enumerate([*DELTA, "log"]):
        staged_at = 30 + i
        restage(con, "shopify_customers", [
            customer((2, f"bob{i}@example.com", True, None, None, 1000 + i), staged_at),
            customer((None, f"nokey{i}@example.com", True, None, None, 2000 + i), staged_at),
        ], keyless_from=2000 + i)  # fmt: skip
        restage(
            con, "shopify_orders", [order((100, f"o{i}@example.com", None, 3000 + i), staged_at)]
        )
        if step != "log":
            assert prep.run(stop_after=("shopify_customers", step))["shopify_customers"] == "failed"
        else:  # every step done, the watermarks not logged: the next run redoes the span
            prep.run()
            con.execute(f"DELETE FROM acme_config.enrich_log WHERE watermark = {staged_at}")
        prep.run()
        k, r = prep.kept(), prep.rebuilt()
        assert k == r, (step, {t: (k[t] - r[t], r[t] - k[t]) for t in k})
