"""SQL text helpers every layer shares: quoting and the sqlglot silencer.

Nothing from a config or a source file reaches SQL except through these.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager


def sql_string(value: str) -> str:
    """A SQL string literal."""
    return "'" + value.replace("'", "''") + "'"


def quote_ident(name: str) -> str:
    """A double-quoted SQL identifier (Presto, Hive on TD via DIGDAG text, DuckDB)."""
    return '"' + name.replace('"', '""') + '"'


@contextmanager
def quiet_sqlglot() -> Iterator[None]:
    # sqlglot logs a warning for syntax it keeps as a raw command; that is not a problem.
    logger = logging.getLogger("sqlglot")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(level)
