"""The `query` path's first guard, on the TD-dialect text: one statement, of a read kind.

Both backends run it before anything reaches an engine. It reads the text with sqlglot's
tokenizer and answers either a `Select` (a SELECT / WITH / VALUES / set operation, as its
tokens without comments, so an engine whose comment rules differ from sqlglot's, e.g.
DuckDB's nested `/* */`, runs exactly what was checked) or a `Show` (SHOW TABLES / SCHEMAS /
COLUMNS or DESCRIBE, parsed by the small grammar below, never passed through as text).
The local backend checks the translated DuckDB text again (`local/readonly.py`); Treasure
Data gets the checked text, re-rendered.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

import sqlglot
from sqlglot import Token, TokenType, exp
from sqlglot.dialects.dialect import Dialect

from cdp_mcp.backends.base import QueryError
from cdp_mcp.core.sqltext import quiet_sqlglot

_DIALECTS = {"presto": "presto", "trino": "trino", "hive": "hive"}
KINDS = "SELECT, WITH, SHOW TABLES / SCHEMAS / COLUMNS or DESCRIBE"
_REFUSED = "`query` is read-only"
_QUERY_STARTS = {
    TokenType.SELECT,
    TokenType.WITH,
    TokenType.VALUES,
    TokenType.TABLE,  # Presto's `TABLE t`, i.e. SELECT * FROM t
    TokenType.L_PAREN,
}
_ROOTS = (exp.Select, exp.SetOperation, exp.Subquery, exp.Values)
# Nodes that write, change the session or reach outside the warehouse, wherever they appear
# (sqlglot turns Presto's `SELECT ... INTO t` into CREATE TABLE AS, so Into is one of them).
_NOT_READS = (
    exp.Into,
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
    exp.Revoke,
    exp.Copy,
    exp.Pragma,
    exp.Transaction,
    exp.Commit,
    exp.Rollback,
    exp.Attach,
    exp.Detach,
    exp.Install,
    exp.Export,
    exp.LoadData,
    exp.Cache,
    exp.Uncache,
    exp.Refresh,
    exp.Kill,
    exp.Analyze,
    exp.Lock,
)
# What may sit between two tokens: whitespace and comments as sqlglot reads them (a `/*`
# inside a comment does not nest).
_GAP = re.compile(r"(?:\s+|--[^\n]*(?:\n|$)|/\*.*?\*/)*", re.S)
_BARE_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_CLAUSES = {"FROM", "IN", "LIKE", "ESCAPE"}


class ReadOnlyError(QueryError):
    """`query` refused the statement before running it; the message says what to send."""


@dataclass(frozen=True)
class Select:
    text: str  # the statement's tokens, comments dropped
    tree: exp.Expr  # sqlglot's parse of `text`


@dataclass(frozen=True)
class Show:
    what: Literal["tables", "schemas", "columns"]
    database: str | None = None  # FROM / IN, or the qualifier of DESCRIBE's table
    table: str | None = None  # columns only
    like: str | None = None
    escape: str | None = None

    def presto(self) -> str:
        """The statement as Treasure Data's Presto reads it, from the checked parts only."""
        if self.what == "columns":
            assert self.table is not None
            name = _ident(self.table)
            return f"SHOW COLUMNS FROM {_ident(self.database) + '.' if self.database else ''}{name}"
        text = f"SHOW {self.what.upper()}"
        if self.database and self.what == "tables":
            text += f" FROM {_ident(self.database)}"
        if self.like is not None:
            text += f" LIKE {_string(self.like)}"
            if self.escape is not None:
                text += f" ESCAPE {_string(self.escape)}"
        return text


ReadStatement = Select | Show


def read_statement(sql: str, engine: str = "presto") -> ReadStatement:
    """The one read statement in `sql`, or ReadOnlyError saying why it is refused."""
    dialect = _DIALECTS.get(engine.lower())
    if dialect is None:
        raise QueryError(f"unknown engine {engine!r}; use presto or hive")
    tokens = _tokens(sql, dialect)
    if not tokens:
        raise ReadOnlyError(f"no SQL statement to run; `query` runs one {KINDS}")
    first = tokens[0]
    word = first.text.upper()
    if word in ("SHOW", "DESCRIBE", "DESC") and _GAP.fullmatch(sql[: first.start]):
        # sqlglot reads SHOW as an opaque command; the words after it tokenize normally.
        return _show(sql[first.end + 1 :], dialect, word)
    if first.token_type not in _QUERY_STARTS:
        raise ReadOnlyError(
            f"{_REFUSED}: {word} statements are refused; use {KINDS} (changes to tables "
            "belong in a phase's workflow, run with `cdp-mcp wf` or start_workflow)"
        )
    tokens = _one_statement(sql, tokens)
    text = _joined(sql, tokens)
    try:
        with quiet_sqlglot():  # it warns of syntax it keeps as a command
            trees = [t for t in sqlglot.parse(text, read=dialect) if t is not None]
    except sqlglot.errors.SqlglotError as e:
        first_line = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise ReadOnlyError(f"the query does not parse as {dialect} SQL: {first_line}") from None
    if len(trees) != 1:
        raise ReadOnlyError(f"send one statement at a time (got {len(trees)}); use {KINDS}")
    tree = trees[0]
    if not isinstance(tree, _ROOTS):
        raise ReadOnlyError(f"{_REFUSED}: {tree.key.upper()} statements are refused; use {KINDS}")
    for node in tree.walk():
        if isinstance(node, _NOT_READS):
            what = "SELECT ... INTO (it creates a table)" if isinstance(node, exp.Into) else None
            raise ReadOnlyError(
                f"{_REFUSED}: the statement contains {what or node.key.upper()}; use {KINDS}"
            )
    return Select(text, tree)


def _tokens(sql: str, dialect: str) -> list[Token]:
    try:
        tokens = list(Dialect.get_or_raise(dialect).tokenize(sql))
    except sqlglot.errors.SqlglotError as e:
        first = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise ReadOnlyError(f"the query does not parse as {dialect} SQL: {first}") from None
    return tokens


def _one_statement(sql: str, tokens: list[Token]) -> list[Token]:
    """The tokens of the only statement in `sql` (trailing `;` dropped), gaps checked."""
    statement = list(tokens)
    while statement and statement[-1].token_type == TokenType.SEMICOLON:
        statement.pop()
    if not statement:
        raise ReadOnlyError(f"no SQL statement to run; `query` runs one {KINDS}")
    if any(t.token_type == TokenType.SEMICOLON for t in statement):
        raise ReadOnlyError(
            f"send one statement at a time; `query` runs a single {KINDS} (no `;` inside)"
        )
    _check_gaps(sql, tokens)
    return statement


def _check_gaps(sql: str, tokens: list[Token]) -> None:
    """Between tokens there is only whitespace and comments (nothing the reader skipped)."""
    edges = [-1, *[x for t in tokens for x in (t.start, t.end)], len(sql)]
    for end, start in zip(edges[::2], edges[1::2], strict=True):
        gap = sql[end + 1 : start]
        if not _GAP.fullmatch(gap):
            raise ReadOnlyError(
                f"the query does not parse: unexpected text {gap.strip()[:40]!r} (an unclosed "
                "comment?)"
            )


def _joined(sql: str, tokens: list[Token]) -> str:
    """The tokens as written, with each gap that held a comment replaced by one space."""
    parts: list[str] = []
    previous: Token | None = None
    for token in tokens:
        if previous is not None:
            gap = sql[previous.end + 1 : token.start]
            parts.append(gap if gap.isspace() or not gap else " ")
        parts.append(sql[token.start : token.end + 1])
        previous = token
    return "".join(parts)


# SHOW / DESCRIBE


class _Words:
    """A cursor over the tokens after SHOW / DESCRIBE."""

    def __init__(self, source: str, tokens: list[Token], statement: str) -> None:
        self.source = source
        self.tokens = tokens
        self.i = 0
        self.statement = statement

    def fail(self, expected: str) -> ReadOnlyError:
        got = self.tokens[self.i].text if self.i < len(self.tokens) else "the end"
        return ReadOnlyError(
            f"{_REFUSED}: cannot read {self.statement} here (expected {expected}, got {got!r}); "
            "it takes SHOW TABLES [FROM db] [LIKE 'pattern'], SHOW SCHEMAS [LIKE 'pattern'], "
            "SHOW COLUMNS FROM [db.]table or DESCRIBE [db.]table"
        )

    def _bare(self) -> str | None:
        """The next token's text when it is written unquoted (a keyword or a plain name)."""
        if self.i < len(self.tokens):
            token = self.tokens[self.i]
            if self.source[token.start : token.end + 1] == token.text:
                return token.text
        return None

    def keyword(self, *words: str) -> str | None:
        bare = self._bare()
        if bare is not None and bare.upper() in words:
            self.i += 1
            return bare.upper()
        return None

    def name(self) -> str:
        bare = self._bare()
        if bare is not None and _BARE_NAME.match(bare) and bare.upper() not in _CLAUSES:
            self.i += 1
            return bare.lower()  # Presto folds unquoted names to lower case
        if self.i < len(self.tokens) and self.tokens[self.i].token_type == TokenType.IDENTIFIER:
            self.i += 1
            return self.tokens[self.i - 1].text
        raise self.fail("a name")

    def qualified(self) -> tuple[str | None, str]:
        first = self.name()
        if self.keyword("."):
            return first, self.name()
        return None, first

    def string(self) -> str:
        if self.i < len(self.tokens) and self.tokens[self.i].token_type == TokenType.STRING:
            self.i += 1
            return self.tokens[self.i - 1].text
        raise self.fail("a quoted pattern")

    def end(self) -> None:
        if self.i != len(self.tokens):
            raise self.fail("the end of the statement")


def _show(rest: str, dialect: str, first: str) -> Show:
    """SHOW TABLES / SCHEMAS / COLUMNS or DESCRIBE, from the words after the first one."""
    tokens = _tokens(rest, dialect)
    _check_gaps(rest, tokens)
    if any(t.token_type != TokenType.SEMICOLON for t in tokens):
        tokens = _one_statement(rest, tokens)
    words = _Words(rest, tokens, first)
    if first in ("DESCRIBE", "DESC"):
        database, table = words.qualified()
        words.end()
        return Show("columns", database, table)
    kind = words.keyword("TABLES", "SCHEMAS", "DATABASES", "COLUMNS")
    if kind is None:
        raise words.fail("TABLES, SCHEMAS or COLUMNS")
    words.statement = f"SHOW {kind}"
    if kind == "COLUMNS":
        if not words.keyword("FROM", "IN"):
            raise words.fail("FROM")
        database, table = words.qualified()
        words.end()
        return Show("columns", database, table)
    database = None
    if words.keyword("FROM", "IN"):
        database = words.name()
    like = escape = None
    if words.keyword("LIKE"):
        like = words.string()
        if words.keyword("ESCAPE"):
            escape = words.string()
    words.end()
    if kind == "TABLES":
        return Show("tables", database, like=like, escape=escape)
    return Show("schemas", like=like, escape=escape)  # SHOW SCHEMAS FROM names a catalog


def _ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _string(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"
