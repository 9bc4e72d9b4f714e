"""An application's own database objects, written as apps write them: module-level engines pointing at a
development database that the tests must never open. sqlsandbox_bind names them in pyproject.toml."""

from __future__ import annotations

from sqlalchemy import create_engine, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker, create_async_engine
from sqlalchemy.orm import Session, sessionmaker

from tests.models import Owner

DEV_DB = "/nonexistent-dir/app_dev.db"  # opening it would fail loudly
engine = create_engine(f"sqlite:///{DEV_DB}")
async_engine = create_async_engine(f"sqlite+aiosqlite:///{DEV_DB}")
SessionLocal = sessionmaker(bind=engine)
AsyncSessionLocal = async_sessionmaker(bind=async_engine, expire_on_commit=False)


def create_owner(name: str) -> int:
    with SessionLocal() as session:
        owner = Owner(name=name)
        session.add(owner)
        session.commit()
        return owner.id


def owner_names() -> list[str]:
    with SessionLocal() as session:
        return list(session.scalars(select(Owner.name).order_by(Owner.name)))


def create_owner_core(name: str) -> None:
    with engine.begin() as conn:
        conn.execute(Owner.__table__.insert().values(name=name))


async def acreate_owner(name: str) -> int:
    async with AsyncSessionLocal() as session:
        owner = Owner(name=name)
        session.add(owner)
        await session.commit()
        return owner.id


async def aowner_names() -> list[str]:
    async with AsyncSessionLocal() as session:
        return list(await session.scalars(select(Owner.name).order_by(Owner.name)))


async def acreate_owner_core(name: str) -> None:
    async with async_engine.begin() as conn:
        await conn.execute(Owner.__table__.insert().values(name=name))


def sync_create_in_session(session: Session, name: str) -> None:
    session.add(Owner(name=name))
    session.commit()


async def acreate_and_fail(name: str) -> None:
    async with AsyncSessionLocal() as session:
        session.add(Owner(name=name))
        await session.flush()
        raise RuntimeError("boom after flush")


__all__ = ["AsyncSession"]
