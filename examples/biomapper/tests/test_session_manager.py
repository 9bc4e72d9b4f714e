"""SessionManager: sessions for the cache database, joined to the test's sandbox."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from biomapper.core.services.execution_trace_logger import ExecutionTraceLogger
from biomapper.db.cache_models import MappingSession
from biomapper.db.session import DEFAULT_CACHE_DB_URL, SessionManager

DEV_DB = Path("biomapper_cache_dev.db")


def test_default_url_is_the_local_dev_database() -> None:
    assert DEFAULT_CACHE_DB_URL == "sqlite+aiosqlite:///./biomapper_cache_dev.db"


def test_each_call_gives_a_new_async_session(session_manager: SessionManager) -> None:
    first = session_manager.get_async_cache_session()
    second = session_manager.get_async_cache_session()

    assert isinstance(first, AsyncSession) and isinstance(second, AsyncSession)
    assert first is not second


async def test_committed_writes_of_a_manager_session_are_visible_to_the_test(
    session_manager: SessionManager, async_db_session: AsyncSession
) -> None:
    async with session_manager.get_async_cache_session() as session:
        session.add(MappingSession(identifier="direct", status="running"))
        await session.commit()

    identifiers = await async_db_session.scalars(select(MappingSession.identifier))
    assert list(identifiers) == ["direct"]


async def test_rolled_back_writes_of_a_manager_session_are_gone(
    session_manager: SessionManager, async_db_session: AsyncSession
) -> None:
    async with session_manager.get_async_cache_session() as session:
        session.add(MappingSession(identifier="kept", status="running"))
        await session.commit()
        session.add(MappingSession(identifier="discarded", status="running"))
        await session.flush()
        await session.rollback()

    identifiers = await async_db_session.scalars(select(MappingSession.identifier))
    assert list(identifiers) == ["kept"]


async def test_the_dev_database_is_never_touched(session_manager: SessionManager) -> None:
    """The module-level engine points at ./biomapper_cache_dev.db; tests must not open it."""
    before = _stat(DEV_DB)

    logger = ExecutionTraceLogger(session_manager)
    session_id = await logger.log_mapping_session_start("dev-db-check")
    await logger.log_mapping_session_end(session_id, status="completed")

    assert _stat(DEV_DB) == before


def _stat(path: Path) -> tuple[int, int] | None:
    if not path.exists():
        return None
    stat = path.stat()
    return stat.st_size, stat.st_mtime_ns
