"""What TD's Hive (2.3) refuses that a Hive parser accepts: calls of Presto functions.

sqlglot reads `TRY_CAST(...)` or `regexp_like(...)` in Hive text without complaint, and
DuckDB would run them, but TD's Hive fails the query ("Invalid function"). The generator's
check and the local runner both refuse them, naming the Hive function to use instead.
"""

from __future__ import annotations

import itertools

import sqlglot
from sqlglot import TokenType

# Presto functions TD's Hive 2.3 does not have (DuckDB would run them, TD's Hive refuses
# them: "Invalid function"), with what Hive has instead.
PRESTO_ONLY = {
    "TRY_CAST": "CAST (Hive's CAST gives NULL for a value it cannot convert)",
    "TRY": "CAST or a CASE (Hive's functions give NULL instead of failing)",
    "REGEXP_LIKE": "x RLIKE 'pattern'",
    "JSON_EXTRACT_SCALAR": "get_json_object(x, '$.key')",
    "JSON_EXTRACT": "get_json_object(x, '$.key')",
    "JSON_PARSE": "get_json_object",
    "JSON_FORMAT": "get_json_object(x, '$')",
    "TO_UNIXTIME": "unix_timestamp(...)",
    "DATE_PARSE": "unix_timestamp(x, 'yyyy-MM-dd HH:mm:ss') (a Java pattern)",
    "FROM_ISO8601_TIMESTAMP": "unix_timestamp(x, pattern) or TD_TIME_PARSE(x)",
    "FROM_ISO8601_DATE": "to_date(x)",
    "FORMAT_DATETIME": "date_format(x, pattern) or from_unixtime(seconds, pattern)",
    "PARSE_DATETIME": "unix_timestamp(x, pattern)",
    "TO_HEX": "hex(x) (or sha2(x, 256) for a SHA-256 hex digest)",
    "TO_UTF8": "the string itself (sha2 and md5 take a string)",
    "FROM_UTF8": "the string itself",
    "SHA256": "sha2(x, 256)",
    "STRPOS": "instr(x, sub)",
    "CARDINALITY": "size(x)",
    "ELEMENT_AT": "x[i] (0-based) or x['key']",
    "ARRAY_JOIN": "concat_ws(sep, x)",
    "NOW": "current_timestamp",
    "TD_TIME_STRING": "TD_TIME_FORMAT(time, pattern, tz)",
}


def presto_only_calls(sql: str) -> list[str]:
    """The Presto-only functions (PRESTO_ONLY) `sql`, read as Hive, calls; [] when none or
    when it does not tokenize (the parser reports that)."""
    try:
        tokens = sqlglot.tokenize(sql, read="hive")
    except sqlglot.errors.TokenError:
        return []
    found: list[str] = []
    for tok, nxt in itertools.pairwise(tokens):
        name = tok.text.upper()
        called = nxt.token_type == TokenType.L_PAREN and tok.token_type != TokenType.IDENTIFIER
        if called and name in PRESTO_ONLY and name not in found:
            found.append(name)
    return found
