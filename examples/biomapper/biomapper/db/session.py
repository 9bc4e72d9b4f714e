"""Engine and session management for the mapping cache database.

The cache database URL comes from the ``BIOMAPPER_CACHE_DB_URL`` environment variable and defaults
to a local SQLite file. The engine is created at import time but connects lazily, on first use.
"""

from __future__ import annotations

import os
from typing import Any

from sqlalchemy import event
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)

from biomapper.db.cache_models import Base

DEFAULT_CACHE_DB_URL = "sqlite+aiosqlite:///./biomapper_cache_dev.db"
CACHE_DB_URL = os.environ.get("BIOMAPPER_CACHE_DB_URL", DEFAULT_CACHE_DB_URL)

async_cache_engine: AsyncEngine = create_async_engine(CACHE_DB_URL, pool_pre_ping=True)

async_cache_session: async_sessionmaker[AsyncSession] = async_sessionmaker(
    async_cache_engine, expire_on_commit=False
)


if async_cache_engine.dialect.name == "sqlite":

    @event.listens_for(async_cache_engine.sync_engine, "connect")
    def _enable_sqlite_foreign_keys(dbapi_connection: Any, connection_record: Any) -> None:
        """SQLite ignores foreign keys unless asked; the cache relies on them."""
        cursor = dbapi_connection.cursor()
        try:
            cursor.execute("PRAGMA foreign_keys=ON")
        finally:
            cursor.close()


class SessionManager:
    """Hands out sessions for the cache database.

    By default it uses the module-level ``async_cache_session`` factory; another
    ``async_sessionmaker`` (e.g. for a second cache database) can be given instead.
    """

    def __init__(
        self,
        cache_sessionmaker: async_sessionmaker[AsyncSession] | None = None,
    ) -> None:
        self.async_cache_session: async_sessionmaker[AsyncSession] = (
            cache_sessionmaker if cache_sessionmaker is not None else async_cache_session
        )

    def get_async_cache_session(self) -> AsyncSession:
        """A new session on the cache database; the caller closes it (``async with``)."""
        return self.async_cache_session()

    async def init_cache_db(self) -> None:
        """Create the cache tables that do not exist yet (service start-up)."""
        async with self.get_async_cache_session() as session:
            conn = await session.connection()
            await conn.run_sync(Base.metadata.create_all)
            await session.commit()


async def dispose_cache_engine() -> None:
    """Close the pooled connections of the cache engine (service shutdown)."""
    await async_cache_engine.dispose()
