"""`td_ddl>`: create, empty, drop and rename tables and databases, as Digdag's operator does.

Order of work is Digdag's: databases are dropped, emptied and created first, then tables are
dropped, emptied, created and renamed. A rename replaces an existing destination table.
"""

from __future__ import annotations

from typing import Any, ClassVar

import duckdb

from cdp_mcp.backends.base import NotFoundError
from cdp_mcp.backends.local import tables
from cdp_mcp.backends.local.operators.base import OperatorContext, OperatorResult, TaskFailure
from cdp_mcp.backends.local.warehouse import SYSTEM_SCHEMAS, qualified, require_database
from cdp_mcp.core.sqltext import quote_ident


def _names(value: Any, key: str) -> list[str]:
    if value is None:
        return []
    if isinstance(value, str):
        return [value]
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return list(value)
    raise TaskFailure(f"td_ddl>: {key} must be a list of names")


def _renames(value: Any) -> list[tuple[str, str]]:
    if value is None:
        return []
    if not isinstance(value, list):
        raise TaskFailure("td_ddl>: rename_tables must be a list of {from: x, to: y}")
    out = []
    for item in value:
        if not (
            isinstance(item, dict)
            and isinstance(item.get("from"), str)
            and isinstance(item.get("to"), str)
        ):
            raise TaskFailure("td_ddl>: each rename_tables entry needs `from` and `to` table names")
        out.append((item["from"], item["to"]))
    return out


def _database_name(name: str) -> str:
    if name.lower() in SYSTEM_SCHEMAS:
        raise TaskFailure(
            f"td_ddl>: {name!r} is reserved by the local warehouse; choose another database name"
        )
    return name


class TdDdlOperator:
    name: ClassVar[str] = "td_ddl"

    def run(self, ctx: OperatorContext) -> OperatorResult:
        cfg = ctx.config
        database = ctx.database()
        plan = {
            key: _names(cfg.get(key), key)
            for key in (
                "drop_databases",
                "empty_databases",
                "create_databases",
                "drop_tables",
                "empty_tables",
                "create_tables",
            )
        }
        renames = _renames(cfg.get("rename_tables"))
        uses_tables = (
            plan["drop_tables"] or plan["empty_tables"] or plan["create_tables"] or renames
        )
        if uses_tables and not database:
            raise TaskFailure(
                "td_ddl>: table operations need `database:` (or td.database in _export)"
            )
        try:
            with ctx.services.cursor() as cur:
                self._databases(ctx, cur, plan)
                if uses_tables:
                    self._tables(ctx, cur, str(database), plan, renames)
        except NotFoundError as e:
            raise TaskFailure(f"td_ddl>: {e}") from None
        except duckdb.Error as e:
            raise TaskFailure(f"td_ddl>: {str(e).strip()}") from None
        return OperatorResult()

    def _databases(
        self, ctx: OperatorContext, cur: duckdb.DuckDBPyConnection, plan: dict[str, list[str]]
    ) -> None:
        for name in plan["drop_databases"] + plan["empty_databases"]:
            cur.execute(f"DROP SCHEMA IF EXISTS {quote_ident(_database_name(name))} CASCADE")
            ctx.log.info(f"dropped database {name}")
        for name in plan["empty_databases"] + plan["create_databases"]:
            tables.create_schema(cur, _database_name(name))
            ctx.log.info(f"created database {name} (if missing)")

    def _tables(
        self,
        ctx: OperatorContext,
        cur: duckdb.DuckDBPyConnection,
        database: str,
        plan: dict[str, list[str]],
        renames: list[tuple[str, str]],
    ) -> None:
        def target(name: str) -> tuple[str, str]:
            db, table = tables.split_table(name, database)
            require_database(cur, db)
            return db, table

        for name in plan["drop_tables"] + plan["empty_tables"]:
            db, table = target(name)
            cur.execute(f"DROP TABLE IF EXISTS {qualified(db, table)}")
            ctx.log.info(f"dropped table {db}.{table}")
        for name in plan["empty_tables"] + plan["create_tables"]:
            db, table = target(name)
            tables.create_empty(cur, db, table)
            ctx.log.info(f"created table {db}.{table} (if missing)")
        for old, new in renames:
            db, table = target(old)
            _, new_table = tables.split_table(new, db)
            with tables.transaction(cur):
                cur.execute(f"DROP TABLE IF EXISTS {qualified(db, new_table)}")
                cur.execute(
                    f"ALTER TABLE {qualified(db, table)} RENAME TO {quote_ident(new_table)}"
                )
            ctx.log.info(f"renamed table {db}.{table} to {db}.{new_table}")
