"""Where sqlglot's Hive/Presto -> DuckDB translation changes what a function returns, the
rewrite that keeps TD's semantics. Each rewrite takes a node of the parsed tree and returns
the node DuckDB should run (or the node itself).

Hive here is TD's stable Hive (2.3): `unix_timestamp` parses with Java's lenient
SimpleDateFormat in UTC and gives NULL, not an error, for text it cannot parse;
`get_json_object` gives NULL for text that is not JSON; `regexp_replace` takes Java's `$1`
group references; `round` of a double rounds half up its shortest decimal form
(BigDecimal.valueOf); `substr` reads position 0 as 1. Presto's `json_extract_scalar` gives
NULL for text that is not JSON and for values that are objects or arrays.
"""

from __future__ import annotations

import re
from collections.abc import Callable

from sqlglot import exp

# Widths of the strftime fields a Java pattern maps to, when they are fixed; with them the
# text SimpleDateFormat would read (it ignores whatever follows the pattern) is cut out.
_FIELD_WIDTHS = {"%Y": 4, "%m": 2, "%d": 2, "%H": 2, "%M": 2, "%S": 2, "%y": 2, "%j": 3}
_DEFAULT_HIVE_FORMAT = "%Y-%m-%d %H:%M:%S"  # unix_timestamp(s) without a pattern


def _fn(name: str, *args: exp.Expression) -> exp.Expression:
    return exp.Anonymous(this=name, expressions=list(args))


def _bigint(node: exp.Expression) -> exp.Expression:
    return exp.Cast(this=node, to=exp.DataType.build("BIGINT"))


def _text(node: exp.Expression) -> exp.Expression:
    return exp.Cast(this=node, to=exp.DataType.build("VARCHAR"))


def duckdb_format(literal: str) -> str:
    """sqlglot's internal form of a Hive pattern (`%mstrict` ...) as DuckDB's strftime."""
    return literal.replace("strict", "")


def pattern_width(fmt: str) -> int | None:
    """Characters a text matching `fmt` (DuckDB strftime) takes, if every field is fixed."""
    width, i = 0, 0
    while i < len(fmt):
        if fmt[i] == "%":
            field = fmt[i : i + 2]
            if field not in _FIELD_WIDTHS:
                return None
            width += _FIELD_WIDTHS[field]
            i += 2
        else:
            width += 1
            i += 1
    return width


def _hive_unix_timestamp(node: exp.StrToUnix) -> exp.Expression:
    """unix_timestamp() / unix_timestamp(s) / unix_timestamp(s, pattern), as a BIGINT."""
    value = node.this
    if value is None or isinstance(value, exp.CurrentTimestamp):
        return _bigint(_fn("epoch", exp.CurrentTimestamp()))
    fmt_node = node.args.get("format")
    if fmt_node is None:
        fmt = _DEFAULT_HIVE_FORMAT
    elif isinstance(fmt_node, exp.Literal) and fmt_node.is_string:
        fmt = duckdb_format(fmt_node.this)
    else:  # a pattern computed per row cannot be mapped to strftime: leave sqlglot's
        return node
    text = _text(value)
    parsed: exp.Expression = _fn("TRY_STRPTIME", text, exp.Literal.string(fmt))
    width = pattern_width(fmt)
    if width is not None:
        # SimpleDateFormat reads the pattern and ignores the rest ('2024-01-05T10:00' with
        # 'yyyy-MM-dd' is that day); strptime wants the whole text to match.
        prefix = exp.Substring(
            this=text.copy(), start=exp.Literal.number(1), length=exp.Literal.number(width)
        )
        parsed = exp.Coalesce(
            this=parsed, expressions=[_fn("TRY_STRPTIME", prefix, exp.Literal.string(fmt))]
        )
    return _bigint(_fn("epoch", parsed))


def _json_guard(node: exp.JSONExtractScalar, scalar_only: bool) -> exp.Expression:
    """`j ->> path` errors on text that is not JSON; TD's functions give NULL."""
    doc = node.this
    condition: exp.Expr = _fn("json_valid", doc.copy())
    path = node.expression
    if scalar_only and path is not None:
        kind = _fn(
            "json_type", doc.copy(), exp.Literal.string(path.sql(dialect="duckdb").strip("'"))
        )
        condition = exp.and_(
            condition,
            exp.Not(
                this=exp.In(
                    this=kind,
                    expressions=[exp.Literal.string("OBJECT"), exp.Literal.string("ARRAY")],
                )
            ),
        )
    return exp.Case(ifs=[exp.If(this=condition, true=node)])


_JAVA_REPLACEMENT = re.compile(r"\\(.)|\$(\d)|(\\)")


def _re2_replacement(java: str) -> str:
    r"""Java's replacement text (`$1` = group 1, `\x` = the character x) in RE2's form
    (`\1` = group 1, `\\` = a backslash)."""

    def one(m: re.Match[str]) -> str:
        if m.group(1) is not None:  # an escaped character stands for itself
            return "\\\\" if m.group(1) == "\\" else m.group(1)
        if m.group(2) is not None:
            return "\\" + m.group(2)
        return "\\\\"

    return _JAVA_REPLACEMENT.sub(one, java)


def _hive_regexp_replace(node: exp.RegexpReplace) -> exp.Expression:
    replacement = node.args.get("replacement")
    if isinstance(replacement, exp.Literal) and replacement.is_string:
        converted = _re2_replacement(replacement.this)
        if converted != replacement.this:
            node.set("replacement", exp.Literal.string(converted))
    return node


def _is_double(node: exp.Expression) -> bool:
    if isinstance(node, exp.Cast):
        return node.to.this in (exp.DataType.Type.DOUBLE, exp.DataType.Type.FLOAT)
    return isinstance(node, exp.Literal) and not node.is_string and "." in node.this


def _hive_round(node: exp.Round) -> exp.Expression:
    """round(double, d): Hive rounds half up the double's shortest decimal text (2.675 ->
    2.68), DuckDB the binary value (2.67). Only where the argument is known to be a double
    (a CAST or a literal): Hive's round of an integer stays an integer."""
    value, decimals = node.this, node.args.get("decimals")
    if not _is_double(value) or not isinstance(decimals, exp.Literal) or decimals.is_string:
        return node
    exact = exp.TryCast(this=_text(value.copy()), to=exp.DataType.build("DECIMAL(38, 18)"))
    rounded = exp.Cast(
        this=exp.Round(this=exact, decimals=decimals.copy()), to=exp.DataType.build("DOUBLE")
    )
    # Beyond DECIMAL(38, 18) (|x| >= 1e20) the binary rounding is the same digits anyway.
    return exp.Coalesce(this=rounded, expressions=[node])


def _hive_substr(node: exp.Substring) -> exp.Expression:
    start = node.args.get("start")
    if start is None or (
        isinstance(start, exp.Literal) and not start.is_string and start.this != "0"
    ):
        return node
    if isinstance(start, exp.Literal) and start.this == "0":
        node.set("start", exp.Literal.number(1))
        return node
    zero = exp.EQ(this=start.copy(), expression=exp.Literal.number(0))
    node.set("start", exp.Case(ifs=[exp.If(this=zero, true=exp.Literal.number(1))], default=start))
    return node


def _hive_date_format(node: exp.TimeToStr) -> exp.Expression:
    """date_format('text', f): Hive gives NULL for text that is not a timestamp."""
    inner = node.this
    if isinstance(inner, exp.TimeStrToTime):
        node.set("this", exp.TryCast(this=inner.this, to=exp.DataType.build("TIMESTAMP")))
    return node


def rewrite(tree: exp.Expr, fun: Callable[[exp.Expr], exp.Expr]) -> exp.Expr:
    """`tree` with `fun` applied to every node, children first (a rewrite that wraps a node
    still sees its arguments rewritten). Rewrites in place; returns the (new) root."""
    root = tree
    for node in reversed(list(tree.dfs())):
        parent, arg_key, index = node.parent, node.arg_key, node.index
        new = fun(node)
        if new is node:
            continue
        if parent is None:
            root = new
        elif arg_key:
            parent.set(arg_key, new, index)
    return root


def hive(node: exp.Expr) -> exp.Expr:
    """One node of a Hive statement, rewritten to keep Hive's result in DuckDB."""
    if isinstance(node, exp.StrToUnix):
        return _hive_unix_timestamp(node)
    if isinstance(node, exp.JSONExtractScalar):
        return _json_guard(node, scalar_only=False)
    if isinstance(node, exp.RegexpReplace):
        return _hive_regexp_replace(node)
    if isinstance(node, exp.Round):
        return _hive_round(node)
    if isinstance(node, exp.Substring):
        return _hive_substr(node)
    if isinstance(node, exp.TimeToStr):
        return _hive_date_format(node)
    return node


def presto(node: exp.Expr) -> exp.Expr:
    """One node of a Presto statement, rewritten to keep Presto's result in DuckDB."""
    if isinstance(node, exp.JSONExtractScalar):
        return _json_guard(node, scalar_only=True)
    return node
