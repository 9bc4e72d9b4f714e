"""Database wiring for the Atom backend.

The development database is a local SQLite file; deployments replace this module's URL through
their own settings layer.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timezone

from sqlalchemy import create_engine
from sqlalchemy.orm import DeclarativeBase, Session, sessionmaker

DATABASE_URL = "sqlite:///./atom_dev.db"

engine = create_engine(DATABASE_URL)
SessionLocal = sessionmaker(bind=engine)


class Base(DeclarativeBase):
    """Declarative base shared by every model module (core, saas, ecommerce)."""


def utcnow() -> datetime:
    """Current UTC time as a naive datetime (all timestamps are stored naive, in UTC)."""
    return datetime.now(timezone.utc).replace(tzinfo=None)


def get_db() -> Iterator[Session]:
    """Yield a session for one unit of work (request, job, CLI command)."""
    db = SessionLocal()
    try:
        yield db
    finally:
        db.close()
