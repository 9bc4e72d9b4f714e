"""Database engine and session factory.

The URL comes from ``OPS_CORE_DATABASE_URL``; the default is a local SQLite file for development.
"""

import os

from sqlalchemy.ext.asyncio import async_sessionmaker, create_async_engine

engine = create_async_engine(
    os.environ.get("OPS_CORE_DATABASE_URL", "sqlite+aiosqlite:///./ops_core_dev.db")
)
SessionLocal = async_sessionmaker(engine, expire_on_commit=False)
