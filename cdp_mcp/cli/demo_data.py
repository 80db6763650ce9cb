"""A deterministic, realistically dirty shopify-like source for demos, tests and benchmarks.

`write_sample` writes `customers.csv` (camelCase headers), `orders.jsonl` and
`products.parquet`, with the dirt staging and unification must cope with: mixed-case and
space-padded emails, junk emails shared by several customers, phones in several formats,
'N/A' / 'null' / 'NONE' / empty values, updated records sharing an id, timestamps in three
ISO forms, and a few rows before the default start date (2023-09-01). `append_rows` adds
newer rows for incremental runs; `write_sample_config` writes a pipeline YAML over them.

Rows are generated inside DuckDB from `hash(row, seed, salt)`, so a million rows take
seconds and the same seed gives byte-identical files.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import duckdb

from cdp_mcp.core.file_source import SourceError, find_object_file
from cdp_mcp.core.sqltext import sql_string

SAMPLE_FOLDER = "shopify"
OBJECTS = ("orders", "customers", "products")
FILE_NAMES = {
    "customers": "customers.csv",
    "orders": "orders.jsonl",
    "products": "products.parquet",
}

# updated_at of the initial extract spans these instants (UTC); the first days fall before
# the default start date 2023-09-01, so a few rows must be excluded by ingestion.
_T0 = int(datetime(2023, 8, 20, tzinfo=UTC).timestamp())
_T1 = int(datetime(2024, 6, 30, tzinfo=UTC).timestamp())
_START = int(datetime(2023, 9, 1, tzinfo=UTC).timestamp())
_DAY = 86_400
_UPDATE_SHARE = 0.05  # share of extra rows that update an existing id

# fmt: off
_FIRST = [
    "Ann", "Bob", "Cy", "Dana", "Eve", "Finn", "Gia", "Hal", "Ivy", "Jon", "Kim", "Lou",
    "Mia", "Ned", "Ola", "Pat", "Quin", "Rae", "Sam", "Tia", "Uma", "Vic", "Wes", "Xia",
    "Yan", "Zoe", "Ari", "Bea", "Cal", "Dee",
]
_LAST = [
    "Lee", "Stone", "Moe", "Park", "Diaz", "Khan", "Nguyen", "Smith", "Brown", "Garcia",
    "Miller", "Davis", "Lopez", "Clark", "Young", "King", "Wright", "Hill", "Scott", "Green",
    "Adams", "Baker", "Nelson", "Carter", "Mitchell", "Perez", "Roberts",
]
# fmt: on
_DOMAINS = ["example.com", "mail.com", "shop.io", "acme.org", "inbox.net"]
_CITIES = ["Boston", " Austin ", "Denver", "N/A", "Seattle", "null", "Miami", "", "Chicago"]
_PRODUCTS = ["Mug", "Tee", "Cap", "Hoodie", "Socks", "Tote", "Poster", "Sticker", "Bottle"]
_VENDORS = ["Acme", "  Acme ", "n/a", "Globex", "null", "Initech", "NONE"]
_TYPES = ["apparel", "kitchen", "", "accessories", "N/A"]


@dataclass(frozen=True)
class _Batch:
    """Which rows to generate: `new` fresh ids from `first_id`, `updates` rows re-using ids
    1..`pool`, with updated_at spread over [t_from, t_to) (unix seconds) for new rows."""

    new: int
    updates: int
    first_id: int
    pool: int
    t_from: int
    t_to: int
    salt: int  # separates batches so appended rows differ from the initial extract
    initial: bool = True  # the first extract: updates come 1-90 days after the first version


def _macros(con: duckdb.DuckDBPyConnection, seed: int) -> None:
    """SQL helpers: deterministic pseudo-random values and the dirty-value formats."""
    con.execute("SET TimeZone = 'UTC'")
    for sql in (
        f"CREATE OR REPLACE TEMP MACRO h(x, salt) AS CAST(hash(x, {int(seed)}, salt) >> 1 AS BIGINT)",
        # who an id is (name, email, phone) does not depend on the seed, so appended
        # updates of an id written with another seed are still the same person
        "CREATE OR REPLACE TEMP MACRO hid(x, salt) AS CAST(hash(x, salt) >> 1 AS BIGINT)",
        "CREATE OR REPLACE TEMP MACRO pick(x, salt, arr) AS arr[1 + (h(x, salt) % len(arr))::BIGINT]",
        "CREATE OR REPLACE TEMP MACRO pick_id(x, salt, arr) AS arr[1 + (hid(x, salt) % len(arr))::BIGINT]",
        "CREATE OR REPLACE TEMP MACRO bucket(x, salt) AS (h(x, salt) % 100)::INTEGER",
        # one instant, written in one of three ISO forms (the third in +02:00 with millis)
        """CREATE OR REPLACE TEMP MACRO iso(epoch, x) AS CASE h(x, 50) % 3
             WHEN 0 THEN strftime(make_timestamp(epoch * 1000000), '%Y-%m-%dT%H:%M:%SZ')
             WHEN 1 THEN strftime(make_timestamp(epoch * 1000000), '%Y-%m-%d %H:%M:%S')
             ELSE strftime(make_timestamp((epoch + 7200) * 1000000 + (h(x, 51) % 1000) * 1000),
                           '%Y-%m-%dT%H:%M:%S.%g+02:00') END""",
        f"CREATE OR REPLACE TEMP MACRO first_name(id) AS pick_id(id, 1, {_list(_FIRST)})",
        f"CREATE OR REPLACE TEMP MACRO last_name(id) AS pick_id(id, 2, {_list(_LAST)})",
        f"""CREATE OR REPLACE TEMP MACRO clean_email(id) AS lower(first_name(id)) || '.'
             || lower(last_name(id)) || id::VARCHAR || '@' || pick_id(id, 3, {_list(_DOMAINS)})""",
        # the same person's email as a messy system would store it on row x
        """CREATE OR REPLACE TEMP MACRO dirty_email(id, x) AS CASE
             WHEN id % 17 = 5 THEN 'test@test.com'  -- junk shared by every 17th customer
             WHEN bucket(x, 5) < 10 THEN upper(clean_email(id))
             WHEN bucket(x, 5) < 18 THEN first_name(id) || '.' || last_name(id) || id::VARCHAR
                                         || '@' || upper(split_part(clean_email(id), '@', 2))
             WHEN bucket(x, 5) < 26 THEN '  ' || clean_email(id) || ' '
             WHEN bucket(x, 5) < 28 THEN pick(x, 6, ['N/A', 'null', 'NONE', ''])
             ELSE clean_email(id) END""",
        """CREATE OR REPLACE TEMP MACRO digits(id) AS
             '555' || lpad((hid(id, 7) % 10000000)::VARCHAR, 7, '0')""",
        """CREATE OR REPLACE TEMP MACRO dirty_phone(id, x) AS CASE bucket(x, 8) // 10
             WHEN 0 THEN '+1 (' || digits(id)[1:3] || ') ' || digits(id)[4:6] || '-' || digits(id)[7:10]
             WHEN 1 THEN digits(id)[1:3] || '.' || digits(id)[4:6] || '.' || digits(id)[7:10]
             WHEN 2 THEN '1' || digits(id)
             WHEN 3 THEN digits(id)[1:3] || '-' || digits(id)[4:6] || '-' || digits(id)[7:10]
             WHEN 4 THEN pick(x, 9, ['N/A', 'NONE', '', 'null'])
             ELSE digits(id) END""",
    ):
        con.execute(sql)


def _new_ts(index: str, b: _Batch) -> str:
    """updated_at (unix seconds) of new row `index` (0-based) of batch `b`."""
    span = max(b.t_to - b.t_from, 1)
    ts = f"{b.t_from} + h({index} + {b.salt}, 10) % {span}"
    if not b.initial:
        return ts
    # every 20th id was last touched before the start date: ingestion must skip it
    pre_start = f"{_T0} + h({index} + {b.salt}, 14) % {_START - _T0}"
    return f"CASE WHEN ({b.first_id} + {index}) % 20 = 7 THEN {pre_start} ELSE {ts} END"


def _driver(b: _Batch) -> str:
    """Rows (k, id, ts, created): k orders the output; ts is updated_at and created the
    record's creation, both in unix seconds."""
    if b.initial:
        first_version = _new_ts(f"(id - {b.first_id})", b)
        update_ts = f"{first_version} + {_DAY} * (1 + h(k, 12) % 90)"
        update_created = first_version
    else:
        update_ts = f"{b.t_from} + h(k, 13) % {max(b.t_to - b.t_from, 1)}"
        update_created = f"{b.t_from} - {_DAY} * 60"
    age = f"{_DAY} * (hid(id, 24) % 30)"
    return f"""
        SELECT k, id, ts, ts - {age} AS created FROM (
          SELECT i AS k, {b.first_id} + i AS id, {_new_ts("i", b)} AS ts
          FROM range({b.new}) t(i)
        )
        UNION ALL
        SELECT k, id, {update_ts} AS ts, {update_created} - {age} AS created FROM (
          SELECT {b.new} + j AS k, 1 + h(j + {b.salt}, 11) % {max(b.pool, 1)} AS id
          FROM range({b.updates if b.pool > 0 else 0}) t(j)
        )"""


def _customers_sql(b: _Batch) -> str:
    # camelCase headers on purpose: staging must snake_case them
    return f"""
        SELECT id,
               first_name(id) AS "firstName",
               CASE WHEN bucket(k + {b.salt}, 20) < 6 THEN pick(k + {b.salt}, 21, ['N/A', 'null', 'NONE', ''])
                    ELSE last_name(id) END AS "lastName",
               dirty_email(id, k + {b.salt}) AS email,
               dirty_phone(id, k + {b.salt}) AS phone,
               CASE bucket(id, 22) % 3 WHEN 0 THEN 'true' WHEN 1 THEN 'false' ELSE '' END
                   AS "acceptsMarketing",
               pick_id(id, 23, {_list(_CITIES)}) AS city,
               iso(created, id) AS "createdAt",
               iso(ts, k + {b.salt}) AS updated_at
        FROM ({_driver(b)}) d ORDER BY k"""


def _orders_sql(b: _Batch, customers: int) -> str:
    return f"""
        SELECT id,
               1 + hid(id, 30) % {max(customers, 1)} AS customer_id,
               dirty_email(1 + hid(id, 30) % {max(customers, 1)}, k + {b.salt} + 7)
                   AS customer_email,
               CASE WHEN bucket(k + {b.salt}, 31) < 3 THEN NULL
                    ELSE round(5 + (h(id, 32) % 50000) / 100.0, 2) END AS total_price,
               pick(k + {b.salt}, 33, ['USD', 'usd', ' USD ', 'USD', 'N/A']) AS currency,
               pick(k + {b.salt}, 34, ['paid', 'pending', 'refunded', 'paid', 'NONE'])
                   AS financial_status,
               iso(created, id) AS created_at,
               iso(ts, k + {b.salt}) AS updated_at
        FROM ({_driver(b)}) d ORDER BY k"""


def _products_sql(b: _Batch) -> str:
    return f"""
        SELECT id,
               pick_id(id, 40, {_list(_PRODUCTS)}) || ' ' || id::VARCHAR AS title,
               pick(k + {b.salt}, 41, {_list(_VENDORS)}) AS vendor,
               pick_id(id, 42, {_list(_TYPES)}) AS product_type,
               round(3 + (h(id, 43) % 9000) / 100.0, 2) AS price,
               iso(ts, k + {b.salt}) AS updated_at
        FROM ({_driver(b)}) d ORDER BY k"""


def _object_salt(obj: str) -> int:
    """Keeps the objects' pseudo-random streams apart (row k of each would match otherwise)."""
    return 1_000_000_007 * (OBJECTS.index(obj) + 1)


def _list(xs: list[str]) -> str:
    return "[" + ", ".join(sql_string(x) for x in xs) + "]"


def _copy(
    con: duckdb.DuckDBPyConnection, select: str, path: Path, kind: str, header: bool = True
) -> None:
    """Write a SELECT to `path` as `kind` (the object file's suffix)."""
    fmt = {
        ".csv": f"FORMAT csv, HEADER {str(header).lower()}",
        ".jsonl": "FORMAT json",
        ".parquet": "FORMAT parquet",
    }[kind]
    con.execute(f"COPY ({select}) TO {sql_string(str(path))} ({fmt})")


def _select(obj: str, b: _Batch, customers: int) -> str:
    if obj == "customers":
        return _customers_sql(b)
    if obj == "orders":
        return _orders_sql(b, customers)
    if obj == "products":
        return _products_sql(b)
    raise ValueError(f"unknown sample object {obj!r}; objects: {', '.join(OBJECTS)}")


def write_sample(dir: Path, rows: int = 200, seed: int = 7) -> dict[str, Path]:
    """Write the three objects into `dir`: `rows` customers, `rows` orders and
    max(20, rows // 50) products, each plus ~5% updates of existing ids."""
    dir.mkdir(parents=True, exist_ok=True)
    counts = {"customers": rows, "orders": rows, "products": max(20, rows // 50)}
    out: dict[str, Path] = {}
    with duckdb.connect() as con:
        con.execute("SET enable_progress_bar = false")  # stdout may be an MCP stream
        _macros(con, seed)
        for obj in OBJECTS:
            n = counts[obj]
            batch = _Batch(
                new=n,
                updates=max(1, int(n * _UPDATE_SHARE)),
                first_id=1,
                pool=n,
                t_from=_T0,
                t_to=_T1,
                salt=_object_salt(obj),
            )
            path = dir / FILE_NAMES[obj]
            _remove_other_formats(dir, obj)
            _copy(con, _select(obj, batch, rows), path, path.suffix)
            out[obj] = path
    return out


def append_rows(dir: Path, obj: str, n: int, seed: int = 11) -> Path:
    """Append `n` rows to `obj`'s file, all updated after its newest row: about 80% new ids,
    the rest newer versions of existing ids. Returns the file."""
    path = find_object_file(dir, obj)
    with duckdb.connect() as con:
        con.execute("SET enable_progress_bar = false")  # stdout may be an MCP stream
        _macros(con, seed)
        max_id, max_ts = _file_extent(con, path)
        customers = _customer_ids(con, dir)
        updates = n // 5
        start = max_ts + 3600
        batch = _Batch(
            new=n - updates,
            updates=updates,
            first_id=max_id + 1,
            pool=max_id,
            t_from=start,
            t_to=start + max(n, 1) * 60,
            salt=_object_salt(obj) + 7919 * (max_id + 1),
            initial=False,
        )
        _append(con, path, _select(obj, batch, customers))
    return path


def _file_extent(con: duckdb.DuckDBPyConnection, path: Path) -> tuple[int, int]:
    """Largest id and newest updated_at (unix seconds) in a sample file."""
    row = con.execute(
        f"SELECT max(CAST(id AS BIGINT)), "
        f"max(epoch(TRY_CAST(updated_at AS TIMESTAMPTZ)))::BIGINT FROM {_reader(path)}"
    ).fetchone()
    if row is None or row[0] is None or row[1] is None:
        raise ValueError(f"{path}: no rows with an id and an updated_at to append after")
    return int(row[0]), int(row[1])


def _customer_ids(con: duckdb.DuckDBPyConnection, dir: Path) -> int:
    try:
        path = find_object_file(dir, "customers")
    except SourceError:
        return 1000  # orders appended without customers refer to ids 1..1000
    return _file_extent(con, path)[0]


def _reader(path: Path) -> str:
    lit = sql_string(str(path))
    if path.suffix == ".csv":
        return f"read_csv({lit}, header=true, all_varchar=true)"
    if path.suffix == ".jsonl":
        return f"read_json({lit}, format='newline_delimited', columns={{id: 'BIGINT', updated_at: 'VARCHAR'}})"
    return f"read_parquet({lit})"


def _append(con: duckdb.DuckDBPyConnection, path: Path, select: str) -> None:
    if path.suffix == ".parquet":
        # Parquet cannot be appended to: rewrite old rows then new ones, in order.
        tmp = path.with_suffix(".parquet.tmp")
        old = f"SELECT * FROM read_parquet({sql_string(str(path))})"
        _copy(con, f"{old} UNION ALL ({select})", tmp, ".parquet")
        tmp.replace(path)
        return
    tmp = path.with_suffix(path.suffix + ".tmp")
    _copy(con, select, tmp, path.suffix, header=False)
    with path.open("ab") as dst:
        dst.write(tmp.read_bytes())
    tmp.unlink()


def _remove_other_formats(dir: Path, obj: str) -> None:
    # one file per object, or find_object_file refuses the folder
    for ext in (".csv", ".jsonl", ".parquet", ".ndjson"):
        p = dir / f"{obj}{ext}"
        if p.name != FILE_NAMES[obj] and p.exists():
            p.unlink()


SAMPLE_CONFIG = f"""\
# A sample pipeline over the data `cdp_mcp.cli.demo_data.write_sample` writes into ./{SAMPLE_FOLDER}.
global:
  client: acme
  backend: local
ingestion:
  source_name: shopify
  connector: file
  source_path: ./{SAMPLE_FOLDER}
  objects: [orders, customers, products]
  mode: both
  incremental_field: updated_at
  start_date: "2023-09-01T00:00:00.000000"
  primary_keys: {{orders: id, customers: id, products: id}}
staging:
  engine: presto
unification:
  name: customer_360
  id_method: persistent_id
  update_strategy: incremental
  keys:
    - {{name: email, invalid_texts: ['', 'test@test.com'], valid_regexp: '.+@.+'}}
    - {{name: phone}}
  tables:
    - {{table: shopify_customers, key_columns: [{{column: email, key: email}}, {{column: phone, key: phone}}]}}
    - {{table: shopify_orders, key_columns: [{{column: customer_email, key: email}}]}}
  merge_by_keys: [email, phone]
"""


def write_sample_config(dir: Path) -> Path:
    """Write `dir/acme.yml`, a pipeline over `dir/shopify` (see `write_sample`)."""
    dir.mkdir(parents=True, exist_ok=True)
    path = dir / "acme.yml"
    path.write_text(SAMPLE_CONFIG, encoding="utf-8")
    return path
