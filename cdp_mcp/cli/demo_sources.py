"""The demo's two other sources beside the shop (demo_data.write_sample): a CRM and an
email tool, with the same people in part, and the three-source config over them.

- `crm/contacts.csv`: Title Case headers (`Contact ID`, `email_address`, `Mobile Phone`,
  `Last Modified Date` as mm/dd/yyyy hh:mm:ss), a text id, a JSON column `Extra` whose
  `work_email` key is a second address of some people, and people found only here.
- `mailer/subscribers.jsonl`: `Primary Contact E-mail` and no phone; most addresses are
  found only here, the others are shop or CRM people's, in another case or padded.

Who each row is comes from `person`, a column of the generating SELECT that is never
written: `crm_select` / `mailer_select` give it back (with `person`) to whoever needs to
know who is who (the tests' ground truth), so the client's files hold only what a real
export would. People are numbered: 1..N are the shop's customers (their id), N+1.. are
people the shop never saw. Everything is generated inside DuckDB from the same hashes as
the shop, so the same rows give byte-identical files.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import duckdb
import yaml

from cdp_mcp.cli.demo_data import SAMPLE_FOLDER, _copy, _list, _macros, write_sample

CRM_FOLDER = "crm"
MAILER_FOLDER = "mailer"
CRM_FILE = "contacts.csv"
MAILER_FILE = "subscribers.jsonl"
# Shares of each group of people found in a source (percent).
CRM_OF_SHOP = 40  # shop customers who are CRM contacts too
CRM_ONLY = 30  # CRM-only people, per 100 shop customers
MAILER_OF_SHOP = 30  # shop customers who subscribe
MAILER_OF_CRM_ONLY = 30  # CRM-only people who subscribe
MAILER_ONLY = 80  # mailer-only people, per 100 shop customers
_UPDATES = 5  # percent of rows that are a newer version of an earlier row
_DAY = 86_400
_T0 = 1_693_526_400  # 2023-09-01 UTC: every CRM and mailer row is on or after the start
_SPAN = 300 * _DAY
_COMPANIES = ["Globex", "Initech", "N/A", "Umbrella", "", "Hooli", "Stark", "null"]
_LEAD_STATUS = ["New", "Working", "Qualified", "Unqualified", "NONE"]
_SIGNUPS = ["footer form", "checkout", "webinar", "import", "popup"]
_STATUSES = ["subscribed", "subscribed", "unsubscribed", "cleaned", "pending"]


def _macros_more(con: duckdb.DuckDBPyConnection) -> None:
    """The CRM's and mailer's own dirt, over the shop's macros (clean_email, digits, ...)."""
    for sql in (
        # a person's work address (CRM `Extra.work_email`, sometimes what they subscribed with)
        """CREATE OR REPLACE TEMP MACRO work_email(p) AS lower(first_name(p)) || '.'
             || lower(last_name(p)) || p::VARCHAR || '@work-' || pick_id(p, 64, ['acme.org', 'initech.com', 'globex.net'])""",
        # how the CRM holds an address: mostly clean, some upper-case or padded, a few junk
        """CREATE OR REPLACE TEMP MACRO crm_email(p, x) AS CASE
             WHEN bucket(x, 65) < 12 THEN upper(clean_email(p))
             WHEN bucket(x, 65) < 20 THEN ' ' || clean_email(p) || '  '
             WHEN bucket(x, 65) < 24 THEN 'noemail@noemail.com'
             WHEN bucket(x, 65) < 28 THEN pick(x, 66, ['N/A', 'null', ''])
             ELSE clean_email(p) END""",
        """CREATE OR REPLACE TEMP MACRO crm_phone(p, x) AS CASE bucket(x, 67) // 10
             WHEN 0 THEN '(' || digits(p)[1:3] || ') ' || digits(p)[4:6] || '-' || digits(p)[7:10]
             WHEN 1 THEN '+1 ' || digits(p)[1:3] || ' ' || digits(p)[4:6] || ' ' || digits(p)[7:10]
             WHEN 2 THEN pick(x, 68, ['N/A', '', 'none'])
             WHEN 3 THEN digits(p)[1:3] || '-' || digits(p)[4:6] || '-' || digits(p)[7:10]
             ELSE digits(p) END""",
        # the mailer's address of a person: their own or their work one, in another case or
        # padded; a few junk or broken values
        """CREATE OR REPLACE TEMP MACRO mailer_email(p, x, work) AS CASE
             WHEN bucket(x, 70) < 3 THEN 'test@test.com'
             WHEN bucket(x, 70) < 5 THEN lower(first_name(p)) || '@'
             WHEN bucket(x, 70) < 20 THEN upper(CASE WHEN work THEN work_email(p) ELSE clean_email(p) END)
             WHEN bucket(x, 70) < 30 THEN '  ' || CASE WHEN work THEN work_email(p) ELSE clean_email(p) END
             ELSE CASE WHEN work THEN work_email(p) ELSE clean_email(p) END END""",
        """CREATE OR REPLACE TEMP MACRO mdy(epoch) AS
             strftime(make_timestamp(epoch * 1000000), '%m/%d/%Y %H:%M:%S')""",
    ):
        con.execute(sql)


def _people(first: int, count: int) -> str:
    return f"SELECT {first} + i AS p FROM range({max(count, 0)}) t(i)"


def _versions(people: str, salt: int) -> str:
    """(k, p, ts): one row per person, plus a newer version of ~5% of them."""
    return f"""
        SELECT row_number() OVER (ORDER BY p) - 1 AS k, p, {_T0} + h(p, {salt}) % {_SPAN} AS ts
        FROM ({people}) people
        UNION ALL
        SELECT 1000000 + p, p, {_T0} + h(p, {salt}) % {_SPAN} + {_DAY} * (1 + h(p, {salt + 1}) % 30)
        FROM ({people}) people WHERE bucket(p, {salt + 2}) < {_UPDATES}"""


def crm_select(customers: int) -> str:
    """The CRM's contacts, with `person` (who the row is) and `ts` (its unix time)."""
    n = customers
    people = (
        f"SELECT p FROM ({_people(1, n)}) s WHERE bucket(p, 61) < {CRM_OF_SHOP} "
        f"UNION ALL {_people(n + 1, n * CRM_ONLY // 100)}"
    )
    return f"""
        SELECT p AS person, ts,
               'C-' || lpad(((p * 7919) % 1000003)::VARCHAR, 7, '0') AS "Contact ID",
               first_name(p) AS "First Name",
               CASE WHEN bucket(k, 71) < 5 THEN 'N/A' ELSE last_name(p) END AS "Last Name",
               crm_email(p, k + 61) AS email_address,
               crm_phone(p, k + 61) AS "Mobile Phone",
               pick_id(p, 72, {_list(_COMPANIES)}) AS "Company",
               pick(k, 73, {_list(_LEAD_STATUS)}) AS "Lead Status",
               CASE WHEN bucket(p, 74) < 30
                    THEN '{{"work_email": "' || work_email(p) || '", "lead_source": "webinar"}}'
                    ELSE '{{"lead_source": "' || pick_id(p, 75, ['ads', 'referral', 'event']) || '"}}'
               END AS "Extra",
               mdy(ts) AS "Last Modified Date"
        FROM ({_versions(people, 80)}) v ORDER BY k"""


def mailer_select(customers: int) -> str:
    """The mailer's subscribers, with `person` and `ts`."""
    n = customers
    crm_only = n * CRM_ONLY // 100
    people = (
        f"SELECT p FROM ({_people(1, n)}) s WHERE bucket(p, 62) < {MAILER_OF_SHOP} "
        f"UNION ALL SELECT p FROM ({_people(n + 1, crm_only)}) c "
        f"WHERE bucket(p, 63) < {MAILER_OF_CRM_ONLY} "
        f"UNION ALL {_people(n + crm_only + 1, n * MAILER_ONLY // 100)}"
    )
    # CRM people with a work address subscribed with it half of the time
    work = f"(p <= {n + crm_only} AND bucket(p, 74) < 30 AND bucket(p, 76) < 50)"
    return f"""
        SELECT p AS person, ts,
               500000 + p AS "Subscriber ID",
               mailer_email(p, k + 62, {work}) AS "Primary Contact E-mail",
               pick(k, 77, {_list(_STATUSES)}) AS "Status",
               pick_id(p, 78, {_list(_SIGNUPS)}) AS "Signup Source",
               strftime(make_timestamp(ts * 1000000), '%Y-%m-%d %H:%M:%S') AS "Last Changed At"
        FROM ({_versions(people, 90)}) v ORDER BY k"""


def prepare(con: duckdb.DuckDBPyConnection, seed: int = 7) -> None:
    """Ready `con` to run `crm_select` / `mailer_select` (the macros they use)."""
    _macros(con, seed)
    _macros_more(con)


def write_crm(dir: Path, customers: int, seed: int = 7) -> Path:
    """`dir/contacts.csv`: the CRM's contacts for a shop of `customers` customers."""
    return _write(dir / CRM_FILE, crm_select(customers), seed)


def write_mailer(dir: Path, customers: int, seed: int = 7) -> Path:
    """`dir/subscribers.jsonl`: the mailer's subscribers for a shop of `customers`."""
    return _write(dir / MAILER_FILE, mailer_select(customers), seed)


def _write(path: Path, select: str, seed: int) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with duckdb.connect() as con:
        con.execute("SET enable_progress_bar = false")  # stdout may be an MCP stream
        prepare(con, seed)
        _copy(con, f"SELECT * EXCLUDE (person, ts) FROM ({select})", path, path.suffix)
    return path


def write_demo(dir: Path, rows: int = 500) -> dict[str, Path]:
    """The three sources' folders in `dir`: the shop's (`rows` customers), crm, mailer."""
    write_sample(dir / SAMPLE_FOLDER, rows=rows)
    write_crm(dir / CRM_FOLDER, rows)
    write_mailer(dir / MAILER_FOLDER, rows)
    return {name: dir / name for name in (SAMPLE_FOLDER, CRM_FOLDER, MAILER_FOLDER)}


# The three sources' blocks (the `sources:` list of a config, in this order).
SOURCES = {
    SAMPLE_FOLDER: {
        "connector": "file",
        "source_path": f"./{SAMPLE_FOLDER}",
        "objects": ["orders", "customers", "products"],
        "mode": "both",
        "incremental_field": "updated_at",
        "start_date": "2023-09-01T00:00:00.000000",
        "primary_keys": {"orders": "id", "customers": "id", "products": "id"},
    },
    CRM_FOLDER: {
        "connector": "file",
        "source_path": f"./{CRM_FOLDER}",
        "objects": ["contacts"],
        "mode": "both",
        "incremental_field": "last_modified_date",
        "start_date": "2023-09-01T00:00:00.000000",
        "primary_keys": {"contacts": "contact_id"},
    },
    MAILER_FOLDER: {
        "connector": "file",
        "source_path": f"./{MAILER_FOLDER}",
        "objects": ["subscribers"],
        "mode": "both",
        "incremental_field": "last_changed_at",
        "start_date": "2023-09-01T00:00:00.000000",
        "primary_keys": {"subscribers": "subscriber_id"},
    },
}
# Each source's identity columns as staging names them, and their key.
KEY_COLUMNS = {
    "shopify_customers": [("email", "email"), ("phone", "phone")],
    "shopify_orders": [("customer_email", "email")],
    "crm_contacts": [
        ("email_address", "email"),
        ("extra_work_email", "email"),
        ("mobile_phone", "phone"),
    ],
    "mailer_subscribers": [("primary_contact_e_mail", "email")],
}
EMAIL_JUNK = ["", "test@test.com", "noemail@noemail.com"]


def demo_config(inferred: bool = False) -> dict[str, Any]:
    """The demo pipeline over the three folders (the mapping of its YAML). `inferred`:
    without keys and tables, for unification to infer them."""
    sources = [{"name": name, **block} for name, block in SOURCES.items()]
    unification: dict[str, Any] = {
        "name": "customer_360",
        "id_method": "persistent_id",
        "update_strategy": "incremental",
    }
    if not inferred:
        unification["keys"] = [
            {"name": "email", "invalid_texts": EMAIL_JUNK, "valid_regexp": ".+@.+"},
            {"name": "phone"},
        ]
        unification["tables"] = [
            {"table": t, "key_columns": [{"column": c, "key": k} for c, k in cols]}
            for t, cols in KEY_COLUMNS.items()
        ]
        unification["merge_by_keys"] = ["email", "phone"]
    return {
        "global": {"client": "acme", "backend": "local"},
        "sources": sources,
        "staging": {"engine": "presto"},
        "unification": unification,
    }


DEMO_HEADER = f"""\
# The demo pipeline: a shop ({SAMPLE_FOLDER}), a CRM ({CRM_FOLDER}) and an email tool
# ({MAILER_FOLDER}), each a folder of extracts beside this file, unified into one profile
# per person. Each source names its identities its own way (email / email_address /
# Primary Contact E-mail); unification.tables maps them onto the keys.
"""


def write_demo_config(dir: Path, name: str = "acme.yml") -> Path:
    """Write `dir/acme.yml`, the pipeline over the folders `write_demo` wrote."""
    dir.mkdir(parents=True, exist_ok=True)
    path = dir / name
    body = yaml.safe_dump(demo_config(), sort_keys=False, default_flow_style=None, width=100)
    path.write_text(DEMO_HEADER + body, encoding="utf-8")
    return path
