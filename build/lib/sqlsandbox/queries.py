"""What the test sent to the database: every statement with parameters and timing, query-count assertions,
and the rows a piece of code inserted, updated and deleted.

Statements sqlsandbox itself issues (SAVEPOINT, RELEASE, ROLLBACK TO, its own snapshots) are not recorded.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from types import TracebackType
from typing import TYPE_CHECKING, Any

from sqlalchemy import MetaData, Table, select
from sqlalchemy.engine import Connection
from sqlalchemy.util import greenlet_spawn

from .sqltext import is_unit_sql

if TYPE_CHECKING:
    from .sandbox import Sandbox


@dataclass(frozen=True)
class Query:
    statement: str
    parameters: Any
    duration: float  # seconds
    executemany: bool = False

    def __str__(self) -> str:
        return f"{self.statement}  -- {self.parameters!r} ({self.duration * 1000:.2f} ms)"


class Queries:
    """`sandbox.queries`: the statements of this test, in order."""

    def __init__(self) -> None:
        self._items: list[Query] = []

    def __len__(self) -> int:
        return len(self._items)

    def __iter__(self) -> Iterator[Query]:
        return iter(self._items)

    def __getitem__(self, index: int) -> Query:
        return self._items[index]

    def clear(self) -> None:
        self._items.clear()

    def matching(self, pattern: str) -> list[Query]:
        regex = re.compile(pattern, re.I | re.S)
        return [q for q in self._items if regex.search(q.statement)]

    def record(self, statement: str, parameters: Any, started: float, many: bool) -> None:
        if is_unit_sql(statement):
            return
        self._items.append(Query(statement, parameters, time.perf_counter() - started, many))

    def assert_num_queries(self, expected: int, *, match: str | None = None) -> QueryCount:
        """`with sandbox.queries.assert_num_queries(2):` (or `async with`): exactly that many statements
        (matching the regex `match`, if given) run inside the block."""
        return QueryCount(self, expected, exact=True, match=match)

    def assert_max_queries(self, limit: int, *, match: str | None = None) -> QueryCount:
        """At most `limit` statements run inside the block: catches N+1 loads."""
        return QueryCount(self, limit, exact=False, match=match)


class QueryCount:
    def __init__(self, queries: Queries, expected: int, *, exact: bool, match: str | None) -> None:
        self._queries, self.expected, self.exact, self.match = queries, expected, exact, match
        self._start = 0
        self.captured: list[Query] = []

    def __enter__(self) -> QueryCount:
        self._start = len(self._queries)
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.captured = list(self._queries)[self._start :]
        if exc_type is not None:
            return
        counted = self.captured
        if self.match is not None:
            regex = re.compile(self.match, re.I | re.S)
            counted = [q for q in counted if regex.search(q.statement)]
        ok = len(counted) == self.expected if self.exact else len(counted) <= self.expected
        if not ok:
            want = f"{self.expected}" if self.exact else f"at most {self.expected}"
            listing = "\n".join(f"  {i}. {q}" for i, q in enumerate(counted, 1))
            raise AssertionError(f"expected {want} queries, {len(counted)} ran:\n{listing}")

    async def __aenter__(self) -> QueryCount:
        return self.__enter__()

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.__exit__(exc_type, exc, tb)


Row = dict[str, Any]


@dataclass
class Changes:
    """Rows written between entering and leaving the block, per table (as dicts of column values)."""

    inserted: dict[str, list[Row]] = field(default_factory=dict)
    updated: dict[str, list[tuple[Row, Row]]] = field(default_factory=dict)
    deleted: dict[str, list[Row]] = field(default_factory=dict)

    def counts(self) -> dict[str, dict[str, int]]:
        """{table: {"inserted": n, "updated": n, "deleted": n}} for the tables that changed."""
        tables = sorted(set(self.inserted) | set(self.updated) | set(self.deleted))
        return {
            t: {
                "inserted": len(self.inserted.get(t, [])),
                "updated": len(self.updated.get(t, [])),
                "deleted": len(self.deleted.get(t, [])),
            }
            for t in tables
        }


class ChangeTracker:
    """`with sandbox.changes() as changes:` / `async with ...`: snapshots the schema's tables before and
    after the block and reports the difference. Sees everything in the sandbox, committed or not."""

    def __init__(self, sandbox: Sandbox, metadatas: list[MetaData]) -> None:
        self._sandbox = sandbox
        self._tables = [t for m in metadatas for t in m.sorted_tables]
        self._before: dict[str, dict[Any, Row]] = {}
        self.result = Changes()

    def _snapshot(self, conn: Connection) -> dict[str, dict[Any, Row]]:
        snap: dict[str, dict[Any, Row]] = {}
        for table in self._tables:
            rows = [dict(r._mapping) for r in conn.execute(select(table))]
            snap[table.fullname] = {_key(table, row): row for row in rows}
        return snap

    def _take(self, conn: Connection) -> dict[str, dict[Any, Row]]:
        try:
            return self._snapshot(conn)
        finally:
            conn.close()

    def _diff(self, after: dict[str, dict[Any, Row]]) -> None:
        for name, rows in after.items():
            before = self._before.get(name, {})
            inserted = [row for key, row in rows.items() if key not in before]
            deleted = [row for key, row in before.items() if key not in rows]
            updated = [(before[k], row) for k, row in rows.items() if k in before and before[k] != row]
            if inserted:
                self.result.inserted[name] = inserted
            if deleted:
                self.result.deleted[name] = deleted
            if updated:
                self.result.updated[name] = updated

    def __enter__(self) -> Changes:
        self._before = self._take(self._sandbox._internal_connection("sync"))
        return self.result

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        self._diff(self._take(self._sandbox._internal_connection("sync")))

    async def __aenter__(self) -> Changes:
        conn = self._sandbox._internal_connection("async")
        self._before = await greenlet_spawn(self._take, conn)
        return self.result

    async def __aexit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        conn = self._sandbox._internal_connection("async")
        self._diff(await greenlet_spawn(self._take, conn))


def _key(table: Table, row: Row) -> Any:
    pk = [c.name for c in table.primary_key.columns]
    if pk:
        return tuple(row[c] for c in pk)
    return tuple(sorted(row.items(), key=lambda kv: kv[0]))
