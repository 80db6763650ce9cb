"""The `query` tool's guard: one read-only statement, decided on sqlglot's parse tree."""

from __future__ import annotations

import sqlglot
from sqlglot import exp

from cdp_mcp.generate.check import quiet_sqlglot
from cdp_mcp.pipeline.models import PipelineError

# Statement kinds a person may run through `query`; anything else is refused.
_ALLOWED = (exp.Select, exp.Union, exp.Intersect, exp.Except, exp.Describe, exp.Show)
# Nodes that write or change state, refused wherever they appear (e.g. inside a CTE).
_WRITES = (
    exp.Insert,
    exp.Update,
    exp.Delete,
    exp.Merge,
    exp.Create,
    exp.Drop,
    exp.Alter,
    exp.TruncateTable,
    exp.Command,
    exp.Set,
    exp.Use,
    exp.Grant,
)


def check_read_only(sql: str, dialect: str = "presto") -> None:
    """Raise PipelineError unless `sql` is exactly one SELECT / WITH / SHOW / DESCRIBE."""
    try:
        with quiet_sqlglot():
            statements = [s for s in sqlglot.parse(sql, read=dialect) if s is not None]
    except sqlglot.errors.ParseError as e:
        first = str(e).splitlines()[0]
        raise PipelineError(f"the query does not parse as {dialect} SQL: {first}") from None
    if len(statements) != 1:
        raise PipelineError(
            f"send one statement at a time (got {len(statements)}); `query` runs a single "
            "SELECT, WITH, SHOW or DESCRIBE"
        )
    tree = statements[0]
    # sqlglot's Presto reader keeps SHOW as an opaque command; SHOW only ever reads.
    if isinstance(tree, exp.Command) and str(tree.this).upper() == "SHOW":
        return
    if not isinstance(tree, _ALLOWED):
        kind = tree.key.upper()
        raise PipelineError(
            f"`query` is read-only: {kind} statements are refused; use SELECT, WITH, SHOW "
            "or DESCRIBE (changes to tables belong in a phase's workflow)"
        )
    for node in tree.walk():
        if isinstance(node, _WRITES):
            raise PipelineError(
                f"`query` is read-only: the statement contains a {node.key.upper()}; "
                "use SELECT, WITH, SHOW or DESCRIBE"
            )
