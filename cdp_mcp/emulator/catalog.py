"""API v3's databases and tables, on the local warehouse (one DuckDB schema per database).

Names follow TD's rule (td-client-java's `validateName`): 3 to 255 characters of lower-case
letters, digits and `_`. A new table holds only its `time` column until data arrives, and
TD leaves `time` out of the `schema` it reports.
"""

from __future__ import annotations

import re
from typing import Any

from cdp_mcp.backends.base import ConflictError, NotFoundError, TableInfo
from cdp_mcp.backends.local import (
    Warehouse,
    create_empty,
    create_schema,
    list_databases,
    list_tables,
    qualified,
    retry_on_conflict,
    table_columns,
    transaction,
)
from cdp_mcp.core.sqltext import quote_ident
from cdp_mcp.emulator import shapes
from cdp_mcp.emulator.errors import RequestError

NAME = re.compile(r"^[a-z0-9_]{3,255}$")
TABLE_TYPES = ("log",)


def check_name(kind: str, name: str) -> None:
    if not NAME.match(name):
        raise RequestError(
            f"{kind} name must be 3 to 255 characters of lower-case letters, digits and '_': "
            f"{name!r}"
        )


class Catalog:
    def __init__(self, warehouse: Warehouse) -> None:
        self.warehouse = warehouse

    # databases

    def databases(self) -> list[dict[str, Any]]:
        with self.warehouse.cursor() as cur:
            out = []
            for name in list_databases(cur):
                rows = sum(self._count(cur, name, t) for t in list_tables(cur, name))
                out.append(shapes.database(name, rows))
            return out

    def database(self, name: str) -> dict[str, Any]:
        for found in self.databases():
            if found["name"] == name:
                return found
        raise NotFoundError(f"Database '{name}' does not exist")

    def create_database(self, name: str) -> None:
        check_name("Database", name)
        with self.warehouse.cursor() as cur:
            if name in list_databases(cur):
                raise ConflictError(f"Database '{name}' already exists")
            create_schema(cur, name)

    def delete_database(self, name: str) -> None:
        with self.warehouse.cursor() as cur:
            self._require_database(cur, name)
            retry_on_conflict(lambda: cur.execute(f"DROP SCHEMA {quote_ident(name)} CASCADE"))

    def require_database(self, name: str) -> None:
        with self.warehouse.cursor() as cur:
            self._require_database(cur, name)

    # tables

    def tables(self, database: str) -> list[dict[str, Any]]:
        with self.warehouse.cursor() as cur:
            self._require_database(cur, database)
            return [self._table_json(cur, database, t) for t in list_tables(cur, database)]

    def table(self, database: str, table: str) -> dict[str, Any]:
        with self.warehouse.cursor() as cur:
            self._require_table(cur, database, table)
            return self._table_json(cur, database, table)

    def create_table(self, database: str, table: str, kind: str) -> None:
        if kind not in TABLE_TYPES:
            raise RequestError(f"unknown table type {kind!r}; one of {', '.join(TABLE_TYPES)}")
        check_name("Table", table)
        with self.warehouse.cursor() as cur:
            self._require_database(cur, database)
            if table in list_tables(cur, database):
                raise ConflictError(f"Table '{database}.{table}' already exists")
            create_empty(cur, database, table)

    def delete_table(self, database: str, table: str) -> None:
        with self.warehouse.cursor() as cur:
            self._require_table(cur, database, table)
            target = qualified(database, table)
            retry_on_conflict(lambda: cur.execute(f"DROP TABLE {target}"))

    def rename_table(self, database: str, table: str, new_name: str, overwrite: bool) -> None:
        check_name("Table", new_name)
        with self.warehouse.cursor() as cur:
            self._require_table(cur, database, table)
            exists = new_name in list_tables(cur, database)
            if exists and not overwrite:
                raise ConflictError(f"Table '{database}.{new_name}' already exists")

            def rename() -> None:
                with transaction(cur):
                    if exists:
                        cur.execute(f"DROP TABLE {qualified(database, new_name)}")
                    cur.execute(
                        f"ALTER TABLE {qualified(database, table)} RENAME TO {quote_ident(new_name)}"
                    )

            retry_on_conflict(rename)

    def swap_tables(self, database: str, first: str, second: str) -> None:
        with self.warehouse.cursor() as cur:
            self._require_table(cur, database, first)
            self._require_table(cur, database, second)
            if first == second:
                return
            parking = f"__swap_{first}"

            def swap() -> None:
                with transaction(cur):
                    cur.execute(
                        f"ALTER TABLE {qualified(database, first)} RENAME TO {quote_ident(parking)}"
                    )
                    cur.execute(
                        f"ALTER TABLE {qualified(database, second)} RENAME TO {quote_ident(first)}"
                    )
                    cur.execute(
                        f"ALTER TABLE {qualified(database, parking)} RENAME TO {quote_ident(second)}"
                    )

            retry_on_conflict(swap)

    def require_table(self, database: str, table: str) -> None:
        with self.warehouse.cursor() as cur:
            self._require_table(cur, database, table)

    # helpers

    def _require_database(self, cur: Any, database: str) -> None:
        if database not in list_databases(cur):
            raise NotFoundError(f"Database '{database}' does not exist")

    def _require_table(self, cur: Any, database: str, table: str) -> None:
        self._require_database(cur, database)
        if table not in list_tables(cur, database):
            raise NotFoundError(f"Table '{database}.{table}' does not exist")

    def _count(self, cur: Any, database: str, table: str) -> int:
        row = cur.execute(f"SELECT count(*) FROM {qualified(database, table)}").fetchone()
        return int(row[0]) if row else 0

    def _table_json(self, cur: Any, database: str, table: str) -> dict[str, Any]:
        info = TableInfo(
            name=table,
            count=self._count(cur, database, table),
            columns=table_columns(cur, database, table),
        )
        return shapes.table(info)
