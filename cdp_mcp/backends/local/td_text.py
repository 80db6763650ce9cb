"""The query text Digdag's `td>` sends to TD, so the local `td>` runs exactly that text.

Ported from Digdag 0.10.5.1 (digdag-standards, `TdOperatorFactory.startJob`,
`insertCommandStatement`, `wrapStmtWithComment`; `TDOperator.escape*Ident`). With
`create_table` or `insert_into`, Digdag does not run "the query into a table": it pastes a
command into the query text, at a `-- DIGDAG_INSERT_LINE` line if the file has one, else
after a header of `--` comment lines followed by a single line, else at the very top. A
file that only works as a SELECT (a Hive query starting with `WITH`, DDL before the query)
therefore breaks on TD, and now breaks locally the same way.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Mapping
from typing import Any

# Java's `.` without DOTALL, and Java's `\s`: Python's differ (Unicode whitespace, only \n).
_JAVA_DOT = "[^\n\r\u0085\u2028\u2029]"
_JAVA_SPACE = "[ \t\n\x0b\f\r]"
_INSERT_LINE = re.compile(
    rf"(\A|\r?\n)--{_JAVA_SPACE}*DIGDAG_INSERT_LINE(?:(?!\n|\Z){_JAVA_DOT})*", re.MULTILINE
)
_HEADER_COMMENTS = re.compile(
    rf"\A([\r\n\t]*(?:(?:\A|\n)--[^\n]*)+)\n?({_JAVA_DOT}*)\Z", re.MULTILINE
)


def insert_command(command: str, original: str) -> str:
    """Digdag's insertCommandStatement(command, original)."""
    marker = _INSERT_LINE.search(original)
    if marker is not None:
        return original[: marker.start()] + marker.group(1) + command + original[marker.end() :]
    header = _HEADER_COMMENTS.search(original)
    if header is not None:
        return header.group(1) + "\n" + command + "\n" + header.group(2)
    return command + "\n" + original


def table_name(target: str, engine: str) -> str:
    """`table` or `db.table` quoted as Digdag quotes it (no escaping inside: names are
    validated identifiers here)."""
    quote = "`" if engine == "hive" else '"'
    return ".".join(f"{quote}{part}{quote}" for part in str(target).split(".", 1))


def job_statement(
    query: str, engine: str, create_table: str | None, insert_into: str | None
) -> str:
    """The statement `td>` builds before wrapping it in its comment header."""
    if insert_into:
        verb = "INSERT INTO TABLE" if engine == "hive" else "INSERT INTO"
        return insert_command(f"{verb} {table_name(insert_into, engine)}", query)
    if create_table:
        name = table_name(create_table, engine)
        if engine == "hive":
            return insert_command(f"INSERT OVERWRITE TABLE {name}", query)
        return insert_command(f"DROP TABLE IF EXISTS {name};\nCREATE TABLE {name} AS", query)
    return query


def with_comment(params: Mapping[str, Any], statement: str) -> str:
    """Digdag's wrapStmtWithComment: the header every td> job's query carries."""
    lines = [
        f"-- project_id: {params.get('project_id', '')}",
        f"-- project_name: {params.get('project_name') or ''}",
        f"-- workflow_name: {params.get('workflow_name', '')}",
        f"-- session_id: {params.get('session_id', '')}",
        f"-- attempt_id: {params.get('attempt_id', '')}",
        f"-- task_name: {params.get('task_name', '')}",
    ]
    return "\n".join(lines) + "\n" + statement


def file_lines(original: str, sent: str) -> dict[int, int]:
    """1-based line of the text sent -> line of the query file it came from (lines td>
    added, its comment header and the pasted command, have none)."""
    matcher = difflib.SequenceMatcher(a=original.splitlines(), b=sent.splitlines(), autojunk=False)
    out: dict[int, int] = {}
    for block in matcher.get_matching_blocks():
        for k in range(block.size):
            out[block.b + k + 1] = block.a + k + 1
    return out
