"""Helpers shared by the tests (no fixtures here: see conftest.py)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from sqlalchemy.orm import Session

from biomapper.db.cache_models import utcnow
from biomapper.db.session import SessionManager

RowCount = Callable[..., Awaitable[int]]
"""Type of the ``row_count`` fixture."""
Fetch = Callable[..., Awaitable[Any]]
"""Type of the ``fetch`` fixture."""


class ObservingSessionManager(SessionManager):
    """A real SessionManager that shows each new session to ``on_new_session`` before use.

    Nothing is replaced: sessions still come from the app's own ``async_cache_session`` factory,
    whether asked for through ``get_async_cache_session()`` or by calling the factory directly
    (as the MappingExecutor does).
    """

    def __init__(self) -> None:
        super().__init__()
        factory: Any = _ObservingFactory(self.async_cache_session, self)
        self.async_cache_session = factory

    def on_new_session(self, session: AsyncSession) -> None:
        """Called with every session the app's factory makes through this manager."""


class _ObservingFactory:
    def __init__(self, factory: async_sessionmaker[AsyncSession], owner: ObservingSessionManager):
        self.factory = factory
        self.owner = owner

    def __call__(self, **kw: Any) -> AsyncSession:
        session = self.factory(**kw)
        self.owner.on_new_session(session)
        return session


class RecordingSessionManager(ObservingSessionManager):
    """Remembers the sessions it handed out; SQLAlchemy session events record their commits
    and rollbacks."""

    def __init__(self) -> None:
        super().__init__()
        self.sessions: list[AsyncSession] = []
        self.events: dict[int, list[str]] = {}

    def on_new_session(self, session: AsyncSession) -> None:
        self.sessions.append(session)
        log = self.events.setdefault(len(self.sessions) - 1, [])

        def after_commit(sync_session: Session) -> None:
            log.append("commit")

        def after_rollback(sync_session: Session) -> None:
            log.append("rollback")

        event.listen(session.sync_session, "after_commit", after_commit)
        event.listen(session.sync_session, "after_rollback", after_rollback)

    def events_of(self, index: int) -> list[str]:
        """Commits and rollbacks of the index-th session, in order."""
        return self.events[index]

    def rolled_back(self, index: int) -> bool:
        """The index-th session rolled back and never committed."""
        events = self.events[index]
        return "rollback" in events and "commit" not in events


def recent(dt: datetime | None, slack: timedelta = timedelta(minutes=5)) -> bool:
    """A naive UTC timestamp written during this test."""
    if dt is None or dt.tzinfo is not None:
        return False
    return abs(utcnow() - dt) < slack


def as_any(value: Any) -> Any:
    """Pass a deliberately ill-typed value to the app (malformed-input tests)."""
    return value
