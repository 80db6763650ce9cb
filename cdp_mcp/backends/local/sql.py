"""TD SQL (Presto or Hive) to DuckDB: statement splitting with line numbers, transpiling.

A TD query file usually holds one statement, but DDL such as `DROP TABLE IF EXISTS` before
it is common; statements are split on `;` outside quotes and comments, each keeps the line
it starts on so an error points at the file line a person can open.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import sqlglot
from sqlglot import exp

from cdp_mcp.backends.local import semantics
from cdp_mcp.core import hive_functions
from cdp_mcp.core.sqltext import quiet_sqlglot

ENGINES = {"presto": "presto", "trino": "trino", "hive": "hive"}


@dataclass(frozen=True)
class Statement:
    text: str
    line: int  # 1-based line of the file where the statement starts


@dataclass(frozen=True)
class Translated:
    """One statement as DuckDB runs it. A statement that writes a query's rows into a table
    (`CREATE TABLE t AS q`, `INSERT INTO [TABLE] t q`, `INSERT OVERWRITE TABLE t q`) keeps
    `sql` = the query alone and names the table, so the warehouse writes it with TD's
    schema-on-write types (backends/local/tables.py `write_rows`)."""

    sql: str  # DuckDB SQL
    is_query: bool  # returns rows (SELECT, WITH, VALUES)
    overwrite_table: str | None = None  # Hive `INSERT OVERWRITE TABLE t <query>`: t
    note: str | None = None  # why the statement was passed through untranslated
    create_table: str | None = None  # `CREATE TABLE t AS <query>`: t
    insert_table: str | None = None  # `INSERT INTO [TABLE] t <query>`: t

    @property
    def target(self) -> str | None:
        return self.overwrite_table or self.create_table or self.insert_table


class HiveSyntaxError(ValueError):
    """Text Hive itself refuses, though sqlglot (lenient) would parse it."""


def refuse_presto_functions(sql: str) -> None:
    """TD's Hive fails a query that calls a Presto-only function; so does the local one."""
    calls = hive_functions.presto_only_calls(sql)
    if calls:
        kind = "a Presto function" if len(calls) == 1 else "Presto functions"
        use = "; ".join(f"for {name} use {hive_functions.PRESTO_ONLY[name]}" for name in calls)
        raise HiveSyntaxError(f"Hive has no {', '.join(calls)} ({kind}): {use}")


def split_statements(sql: str) -> list[Statement]:
    """Split on top-level `;`, skipping statements that are only whitespace or comments."""
    out: list[Statement] = []
    buf: list[str] = []
    line, start_line, has_code = 1, 1, False
    i, n = 0, len(sql)

    def flush() -> None:
        text = "".join(buf).strip()
        if has_code and text:
            out.append(Statement(text, start_line))

    while i < n:
        end = _quoted_or_comment_end(sql, i)
        if end is not None:  # copied whole: a `;` inside does not split
            chunk = sql[i:end]
            buf.append(chunk)
            line += chunk.count("\n")
            i = end
            continue
        c = sql[i]
        if c == ";":
            flush()
            buf, has_code = [], False
        else:
            if not has_code and not c.isspace():
                has_code, start_line = True, line
            buf.append(c)
            if c == "\n":
                line += 1
        i += 1
    flush()
    return out


def _quoted_or_comment_end(sql: str, i: int) -> int | None:
    """Where the quoted text or comment starting at `i` ends (None: neither starts there)."""
    if sql[i] in ("'", '"', "`"):
        return _quote_end(sql, i)
    if sql.startswith("--", i):
        end = sql.find("\n", i)
        return len(sql) if end < 0 else end
    if sql.startswith("/*", i):
        end = sql.find("*/", i + 2)
        return len(sql) if end < 0 else end + 2
    return None


def _quote_end(sql: str, i: int) -> int:
    """Past the quote closing the one at `i` (a doubled quote escapes itself)."""
    quote, j, n = sql[i], i + 1, len(sql)
    while j < n:
        if sql[j] != quote:
            j += 1
        elif j + 1 < n and sql[j + 1] == quote:
            j += 2
        else:
            return j + 1
    return n


_QUERY_START = re.compile(r"^\s*(\(|select\b|with\b|values\b|show\b|describe\b|table\b)", re.I)


def _strip_comments(sql: str) -> str:
    return re.sub(r"(--[^\n]*|/\*.*?\*/)", " ", sql, flags=re.S)


def _vectorized_try(node: exp.Expression) -> exp.Expression:
    """Presto's TRY(CAST ...) / TRY(date_parse ...) as DuckDB's TRY_CAST / TRY_STRPTIME.

    Same results (NULL where the value does not convert), but DuckDB's TRY() falls back to
    row-at-a-time evaluation on every vector holding a bad value, and dirty timestamp
    columns have one in nearly every vector.
    """
    if isinstance(node, exp.Try):
        inner = node.this
        if isinstance(inner, exp.Cast) and not isinstance(inner, exp.TryCast):
            return exp.TryCast(this=inner.this, to=inner.to)
        if isinstance(inner, exp.FromISO8601Timestamp):
            return exp.TryCast(this=inner.this, to=exp.DataType.build("TIMESTAMPTZ"))
        if isinstance(inner, exp.StrToTime) and inner.args.get("format") is not None:
            return exp.Anonymous(
                this="TRY_STRPTIME", expressions=[inner.this, inner.args["format"]]
            )
    return node


def _direct_sha256(node: exp.Expression) -> exp.Expression:
    """Presto's lower(to_hex(sha256(to_utf8(x)))) as DuckDB's sha256(x).

    DuckDB's sha256 of text hashes its UTF-8 bytes and returns lower-case hex already; the
    literal translation round-trips every digest through a blob and back, at twice the cost.
    """
    if isinstance(node, exp.LowerHex) and isinstance(node.this, exp.SHA2Digest):
        digest = node.this
        encoded = digest.this
        length = digest.args.get("length")
        if (
            isinstance(encoded, exp.Encode)
            and str(encoded.args.get("charset", "")).strip("'").lower() in ("utf-8", "utf8")
            and (length is None or length.name == "256")
        ):
            return exp.SHA2(this=encoded.this, length=exp.Literal.number(256))
    return node


_SHORT_IN_LIST = range(5, 13)


def _short_in_list(node: exp.Expression) -> exp.Expression:
    """`x IN (5 to 12 literals)` as `x = a OR x = b ...`: DuckDB plans an IN list of five or
    more constants as a join against them, which for staging's NULL texts costs a join per
    text column; the comparisons give the same answer (NULL rules included) for less."""
    if not isinstance(node, exp.In) or node.args.get("query") or node.args.get("field"):
        return node
    values = node.expressions
    guarded = _lower_in_short_texts(node)
    if guarded is not None:
        return guarded
    if len(values) not in _SHORT_IN_LIST or not all(
        isinstance(v, exp.Literal | exp.Null) for v in values
    ):
        return node
    return exp.paren(exp.or_(*(exp.EQ(this=node.this.copy(), expression=v) for v in values)))


def _lower_in_short_texts(node: exp.In) -> exp.Expression | None:
    """`lower(x) IN ('', 'null', ...)` as `length(x) <= n AND list_contains([...], lower(x))`,
    n the longest text's length: staging's NULL-text check of every text value.

    DuckDB's lower() maps each code point to one code point (checked over all of Unicode),
    so a value longer than every text cannot match, and most values are: they skip the
    lowered copy. NULL stays NULL and a miss FALSE, as with IN. list_contains rather than
    comparisons, which DuckDB would lower once for every row, or IN, which it may plan as
    a join. None when the IN is not of that shape.
    """
    values = node.expressions
    if not isinstance(node.this, exp.Lower) or len(values) < 2:
        return None
    if not all(isinstance(v, exp.Literal) and v.is_string for v in values):
        return None
    text = node.this.this
    longest = max(len(v.this) for v in values)
    short = exp.LTE(this=exp.Length(this=text.copy()), expression=exp.Literal.number(longest))
    texts = exp.Array(expressions=[v.copy() for v in values])
    found = exp.Anonymous(this="list_contains", expressions=[texts, node.this.copy()])
    return exp.paren(exp.and_(short, found))


def _trim_when_padded(node: exp.Expression) -> exp.Expression:
    """`trim(col)` as `CASE WHEN col starts or ends with ' ' THEN trim(col) ELSE col END`.

    DuckDB's TRIM removes spaces only, so the answer is the same, but it copies every
    string it touches; staging trims each text column of every row, and most values have
    nothing to trim. Only a plain column: a larger operand would be computed three times.
    """
    if (
        not isinstance(node, exp.Trim)
        or node.args.get("expression") is not None
        or str(node.args.get("position") or "BOTH").upper() != "BOTH"
        or not isinstance(node.this, exp.Column)
    ):
        return node
    column: exp.Column = node.this

    def text() -> exp.Expression:
        return column.copy()

    def as_text() -> exp.Expression:  # so a non-text operand fails in TRIM, as it did
        return exp.Cast(this=text(), to=exp.DataType.build("VARCHAR"))

    space = exp.Literal.string(" ")
    padded = exp.or_(
        exp.Anonymous(this="starts_with", expressions=[as_text(), space]),
        exp.Anonymous(this="ends_with", expressions=[as_text(), space.copy()]),
    )
    return exp.Case(ifs=[exp.If(this=padded, true=exp.Trim(this=text()))], default=text())


def _naive_strftime(node: exp.Expression) -> exp.Expression:
    """`date_format(from_unixtime(u), f)` / Hive's `from_unixtime(u, f)` on a naive timestamp.

    DuckDB formats a TIMESTAMPTZ through ICU's time-zone conversion, about twice the cost
    of formatting a plain TIMESTAMP; the sessions here are UTC, so the digits are the same
    unless the format prints a zone (%z, %Z), which keeps the zoned form.
    """
    if isinstance(node, exp.UnixToStr):
        seconds, fmt = node.this, node.args.get("format")
    elif isinstance(node, exp.TimeToStr) and isinstance(node.this, exp.UnixToTime):
        unix = node.this
        if any(unix.args.get(k) is not None for k in unix.args if k != "this"):
            return node  # a scale or zone argument: not plain seconds
        seconds, fmt = unix.this, node.args.get("format")
    else:
        return node
    if not isinstance(fmt, exp.Literal) or not fmt.is_string or "%z" in fmt.this.lower():
        return node
    # in DOUBLE: an INTEGER's product would overflow, a fraction of a second is kept
    as_double = exp.Cast(this=seconds, to=exp.DataType.build("DOUBLE"))
    micros = exp.Cast(
        this=exp.Mul(this=as_double, expression=exp.Literal.number(1_000_000)),
        to=exp.DataType.build("BIGINT"),
    )
    naive = exp.Anonymous(this="make_timestamp", expressions=[micros])
    return exp.TimeToStr(this=naive, format=fmt)


def translate(sql: str, engine: str = "presto") -> Translated:
    """One statement in TD's dialect as DuckDB SQL; passes it through if it cannot parse."""
    dialect = ENGINES.get(engine)
    if dialect is None:
        raise ValueError(f"unknown engine {engine!r}; use presto or hive")
    if engine == "hive":
        refuse_presto_functions(sql)
    try:
        with quiet_sqlglot():  # SHOW and the like are kept as commands: no warning
            tree = sqlglot.parse_one(sql, read=dialect)
    except sqlglot.errors.SqlglotError as e:
        first = str(e).splitlines()[0] if str(e) else type(e).__name__
        return Translated(
            sql,
            bool(_QUERY_START.match(_strip_comments(sql))),
            note=f"sqlglot could not parse it ({first})",
        )
    return translate_tree(tree, engine)


def translate_tree(tree: exp.Expr, engine: str = "presto") -> Translated:
    """A parsed TD statement (in `engine`'s dialect) as DuckDB SQL (rewrites `tree` in place)."""
    # The tree is ours (just parsed): rewrite it in place rather than deep-copying it twice.
    tree = tree.transform(_vectorized_try, copy=False).transform(_direct_sha256, copy=False)
    tree = tree.transform(_naive_strftime, copy=False).transform(_short_in_list, copy=False)
    tree = tree.transform(_trim_when_padded, copy=False)
    # Functions whose literal translation returns something else than TD's engine would.
    tree = semantics.rewrite(tree, semantics.hive if engine == "hive" else semantics.presto)
    if isinstance(tree, exp.Insert) and isinstance(tree.expression, exp.Query):
        table = _table_of(tree.this)
        if table is not None:
            if engine == "hive" and _with_of(tree.expression) is not None:
                raise HiveSyntaxError(
                    "Hive does not take a WITH clause after INSERT ... TABLE: it must come "
                    "first (WITH c AS (...) INSERT OVERWRITE TABLE t SELECT ...). In a td> "
                    "file with create_table/insert_into, put a `-- DIGDAG_INSERT_LINE` line "
                    "between the WITH clause and the final SELECT"
                )
            query = tree.expression
            leading = _with_of(tree)
            if leading is not None:  # `WITH c AS (...) INSERT ... SELECT`: the CTE is the query's
                query.set(_WITH_KEY, leading)
            name = ".".join(p.name for p in table.parts)
            if tree.args.get("overwrite"):
                return Translated(query.sql(dialect="duckdb"), True, overwrite_table=name)
            return Translated(query.sql(dialect="duckdb"), True, insert_table=name)
    if (
        isinstance(tree, exp.Create)
        and str(tree.args.get("kind", "")).upper() == "TABLE"
        and isinstance(tree.expression, exp.Query)
    ):
        table = _table_of(tree.this)
        if table is not None:
            name = ".".join(p.name for p in table.parts)
            return Translated(tree.expression.sql(dialect="duckdb"), True, create_table=name)
    return Translated(tree.sql(dialect="duckdb"), isinstance(tree, exp.Query))


# sqlglot names a node's WITH clause `with_` since version 28, `with` before.
_WITH_KEY = "with_" if "with_" in exp.Select.arg_types else "with"


def _with_of(node: exp.Expression | exp.Query) -> exp.Expression | None:
    found = node.args.get(_WITH_KEY)
    return found if isinstance(found, exp.Expression) else None


def _table_of(node: exp.Expression | None) -> exp.Table | None:
    """The target of a write without a column list (with one, DuckDB runs it as written)."""
    return node if isinstance(node, exp.Table) else None
