"""Who is who across the demo's three sources: the ground truth the tests score against.

Never written into the client's data: the shop's rows name their person themselves (a
customer's `id`, an order's `customer_id`), the CRM's and mailer's come from the `person`
column of the SELECT that generated their files (cli/demo_sources.py), run again here.

Each record (a row staging keeps: the latest version of its primary key, from start_date on)
carries its person and its evidence: the identities it really holds, normalised by this
module's own simple rules (trimmed lower-case addresses, 10-digit numbers), junk and empty
values left out. Records of one person are linkable when a chain of shared evidence joins
them; a person whose records share nothing (the shop row's email was 'N/A', the order's was
valid) is as many profiles as no key can join. `linked_clusters` is that partition: the
one a correct unification must reproduce.
"""

from __future__ import annotations

import re
from collections import defaultdict
from dataclasses import dataclass
from math import comb
from pathlib import Path

import duckdb

from cdp_mcp.cli.demo_sources import crm_select, mailer_select, prepare
from cdp_mcp.core.sqltext import sql_string

START = "2023-09-01 00:00:00+00"
JUNK_EMAILS = {"test@test.com", "noemail@noemail.com"}
EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[a-z]{2,}$")
# The staged columns that hold a person's identity, per table, and their key: what the
# unification of the demo must map (the inference included).
IDENTITY_COLUMNS = {
    "shopify_customers": {"email": "email", "phone": "phone"},
    "shopify_orders": {"customer_email": "email"},
    "crm_contacts": {
        "email_address": "email",
        "extra_work_email": "email",
        "mobile_phone": "phone",
    },
    "mailer_subscribers": {"primary_contact_e_mail": "email"},
}
PRIMARY_KEYS = {
    "shopify_customers": "id",
    "shopify_orders": "id",
    "crm_contacts": "contact_id",
    "mailer_subscribers": "subscriber_id",
}


@dataclass(frozen=True)
class Record:
    table: str
    pk: str
    person: int
    evidence: frozenset[str]  # "email:..." / "phone:..."

    @property
    def source(self) -> str:
        return self.table.split("_", 1)[0]


def _email(value: str | None) -> str | None:
    v = (value or "").strip().lower()
    return f"email:{v}" if EMAIL.match(v) and v not in JUNK_EMAILS else None


def _phone(value: str | None) -> str | None:
    digits = re.sub(r"[^0-9]", "", value or "")
    if len(digits) == 11 and digits.startswith("1"):
        digits = digits[1:]
    return f"phone:{digits}" if len(digits) == 10 else None


def _latest(
    con: duckdb.DuckDBPyConnection, select: str, pk: str, ts: str, start: str
) -> list[tuple]:
    """The latest version of each primary key of `select`, from `start` on."""
    return con.execute(
        f"SELECT * EXCLUDE (rn) FROM (SELECT *, row_number() OVER (PARTITION BY {pk} "
        f"ORDER BY {ts} DESC) AS rn FROM ({select}) s WHERE {ts} >= "
        f"CAST({sql_string(start)} AS TIMESTAMPTZ)) WHERE rn = 1"
    ).fetchall()


def ground_truth(demo: Path, customers: int, starts: dict[str, str] | None = None) -> list[Record]:
    """Every record of the demo written by `write_demo(demo, customers)`, loaded from each
    source's start date (`starts`: source -> start_date, default START)."""

    def start(source: str) -> str:
        return (starts or {}).get(source, START)

    out: list[Record] = []
    with duckdb.connect() as con:
        con.execute("SET TimeZone = 'UTC'")
        shop = demo / "shopify"
        cust = (
            f"SELECT id, email, phone, TRY_CAST(updated_at AS TIMESTAMPTZ) AS ts FROM "
            f"read_csv({sql_string(str(shop / 'customers.csv'))}, header=true, all_varchar=true)"
        )
        for pk, email, phone, _ in _latest(con, cust, "id", "ts", start("shopify")):
            evidence = {e for e in (_email(email), _phone(phone)) if e}
            out.append(Record("shopify_customers", str(pk), int(pk), frozenset(evidence)))
        orders = (
            "SELECT id, customer_id, customer_email, TRY_CAST(updated_at AS TIMESTAMPTZ) AS ts "
            f"FROM read_json({sql_string(str(shop / 'orders.jsonl'))}, format='newline_delimited')"
        )
        for pk, person, email, _ in _latest(con, orders, "id", "ts", start("shopify")):
            evidence = {e for e in (_email(email),) if e}
            out.append(Record("shopify_orders", str(pk), int(person), frozenset(evidence)))
        prepare(con)
        crm = (
            'SELECT "Contact ID" AS pk, person, email_address, "Mobile Phone" AS phone, '
            "json_extract_string(\"Extra\", '$.work_email') AS work, "
            f"make_timestamptz(ts * 1000000) AS t FROM ({crm_select(customers)}) c"
        )
        for pk, person, email, phone, work, _ in _latest(con, crm, "pk", "t", start("crm")):
            evidence = {e for e in (_email(email), _email(work), _phone(phone)) if e}
            out.append(Record("crm_contacts", str(pk), int(person), frozenset(evidence)))
        mailer = (
            'SELECT "Subscriber ID" AS pk, person, "Primary Contact E-mail" AS email, '
            f"make_timestamptz(ts * 1000000) AS t FROM ({mailer_select(customers)}) m"
        )
        for pk, person, email, _ in _latest(con, mailer, "pk", "t", start("mailer")):
            evidence = {e for e in (_email(email),) if e}
            out.append(Record("mailer_subscribers", str(pk), int(person), frozenset(evidence)))
    return out


def linked_clusters(records: list[Record]) -> dict[tuple[str, str], int]:
    """(table, pk) -> cluster number, for the records with evidence: one person's records
    joined by a chain of shared evidence (never two people's, whatever they share)."""
    parent: dict[int, int] = {}

    def find(i: int) -> int:
        while parent.setdefault(i, i) != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    keyed = [r for r in records if r.evidence]
    first: dict[tuple[int, str], int] = {}
    for i, r in enumerate(keyed):
        for e in r.evidence:
            j = first.setdefault((r.person, e), i)
            parent[find(i)] = find(j)
    return {(r.table, r.pk): find(i) for i, r in enumerate(keyed)}


@dataclass(frozen=True)
class PairScore:
    precision: float
    recall: float
    true_pairs: int
    predicted_pairs: int


def pair_score(
    truth: dict[tuple[str, str], int], predicted: dict[tuple[str, str], str | None]
) -> PairScore:
    """Pairwise precision and recall of `predicted` ids over the records of `truth` (a
    record without an id is alone)."""
    both: dict[tuple[int, object], int] = defaultdict(int)
    true_sizes: dict[int, int] = defaultdict(int)
    pred_sizes: dict[object, int] = defaultdict(int)
    for rec, cluster in truth.items():
        pid: object = predicted.get(rec) or ("alone", rec)
        both[(cluster, pid)] += 1
        true_sizes[cluster] += 1
        pred_sizes[pid] += 1
    tp = sum(comb(n, 2) for n in both.values())
    t = sum(comb(n, 2) for n in true_sizes.values())
    p = sum(comb(n, 2) for n in pred_sizes.values())
    return PairScore(tp / p if p else 1.0, tp / t if t else 1.0, t, p)


def cross_source_figures(records: list[Record]) -> tuple[int, dict[tuple[str, str], int]]:
    """From the truth: profiles found in more than one source, and per pair of sources
    (sorted names) the profiles found in both."""
    clusters = linked_clusters(records)
    sources: dict[int, set[str]] = defaultdict(set)
    for r in records:
        if (r.table, r.pk) in clusters:
            sources[clusters[(r.table, r.pk)]].add(r.source)
    multi = sum(1 for s in sources.values() if len(s) > 1)
    pairs: dict[tuple[str, str], int] = defaultdict(int)
    for s in sources.values():
        ordered = sorted(s)
        for i, a in enumerate(ordered):
            for b in ordered[i + 1 :]:
                pairs[(a, b)] += 1
    return multi, dict(pairs)
