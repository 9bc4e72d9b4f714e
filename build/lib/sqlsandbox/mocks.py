"""Correct mocks of SQLAlchemy's async session API, for pure unit tests that still want one.

The usual hand-built version (a bare `AsyncMock()` as a session) gets three things wrong: every method becomes
a coroutine (so `session.add(x)` silently returns an un-awaited coroutine), `async with factory() as s` does
not yield the session, and the error it raises is built with the wrong arguments. These are autospecced from
the real classes, so a misspelled method fails, sync methods stay sync, async ones are awaitable, and results
are real `Result` objects. Prefer the sandbox and a real database where you can.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any
from unittest.mock import MagicMock, create_autospec

from sqlalchemy.engine import Result
from sqlalchemy.engine.result import IteratorResult, SimpleResultMetaData
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.ext.asyncio import async_sessionmaker as real_async_sessionmaker


def result(rows: Sequence[Sequence[Any]] = (), columns: Sequence[str] | None = None) -> Result[Any]:
    """A real SQLAlchemy Result over `rows`: .all(), .scalars(), .scalar_one(), .first() all behave."""
    rows = [tuple(row) for row in rows]
    width = len(rows[0]) if rows else len(columns or ()) or 1
    names = list(columns) if columns is not None else [f"column_{i}" for i in range(width)]
    return IteratorResult(SimpleResultMetaData(names), iter(rows))


def async_session(rows: Sequence[Sequence[Any]] = (), columns: Sequence[str] | None = None) -> Any:
    """An autospecced AsyncSession: `add`/`add_all`/`expunge` are sync, `commit`/`execute`/... awaitable,
    `async with session` yields itself, and `execute()` returns a fresh real Result over `rows`."""
    session: Any = create_autospec(AsyncSession, instance=True)
    session.__aenter__.return_value = session
    session.__aexit__.return_value = False  # exceptions propagate, as with a real session
    session.execute.side_effect = lambda *a, **k: result(rows, columns)
    session.scalars.side_effect = lambda *a, **k: result(rows, columns).scalars()
    session.scalar.side_effect = lambda *a, **k: result(rows, columns).scalar()
    begin_ctx = MagicMock()
    begin_ctx.__aenter__.return_value = session
    begin_ctx.__aexit__.return_value = False
    session.begin.return_value = begin_ctx
    return session


def async_sessionmaker(session: Any = None) -> Any:
    """An autospecced async_sessionmaker: `factory()` returns `session` (a new async_session() by default),
    usable as `async with factory() as s:`; `async with factory.begin() as s:` yields it too."""
    session = session if session is not None else async_session()
    factory: Any = create_autospec(real_async_sessionmaker, instance=True)
    factory.return_value = session
    begin_ctx = MagicMock()
    begin_ctx.__aenter__.return_value = session
    begin_ctx.__aexit__.return_value = False
    factory.begin.return_value = begin_ctx
    return factory
