"""Committed mode (`@pytest.mark.sqlsandbox(committed=True)`): work commits for real, so other threads,
processes and servers see it, and the tables the test wrote to are emptied afterwards."""

from __future__ import annotations

import asyncio
import weakref
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from sqlalchemy import MetaData
from sqlalchemy.engine import Connection, Engine

from .binding import real_connect
from .connection import discard
from .loops import run_on_idle_loop, running_loop
from .sqltext import is_write, tables_written

if TYPE_CHECKING:
    from .database import TestDatabase


class CommittedMode:
    def __init__(self, db: TestDatabase, metadatas: Iterable[MetaData]) -> None:
        self._db = db
        self._metadatas = list(metadatas)
        self.touched: set[str] = set()  # tables written, cleaned after the test
        self._real: list[tuple[asyncio.AbstractEventLoop | None, weakref.ref[Connection]]] = []

    def connection(self, engine: Engine) -> Connection:
        """A real connection of its own to the test database, committing for real."""
        conn = real_connect(engine)  # past the per-test patch of connect()
        self._real.append((running_loop() if engine.dialect.is_async else None, weakref.ref(conn)))
        return conn

    def saw(self, statement: str, context: Any) -> None:
        if is_write(statement, context):
            self.touched.update(tables_written(statement, context))

    def close(self) -> None:
        """End what the test left open (a fixture session's transaction holds locks), then empty the
        tables the test wrote to (and restart their sequences)."""
        for loop, ref in self._real:
            conn = ref()
            if conn is not None and not conn.closed:
                run_on_idle_loop(loop, conn.close, lambda conn=conn: discard(conn))  # type: ignore[misc]
        self._real.clear()
        names = {t.name for m in self._metadatas for t in m.tables.values()}
        touched = sorted(t for t in self.touched if t in names)
        if touched:
            self._db.clean_tables(touched)
