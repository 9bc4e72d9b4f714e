"""Every fault kind, sync and async, on whichever database the run uses: the error is the driver's own,
wrapped by SQLAlchemy as in production, and the sandbox recovers."""

from __future__ import annotations

import pickle

import pytest
from sqlalchemy import func, insert, select
from sqlalchemy.exc import DBAPIError, IntegrityError, OperationalError
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Session

from sqlsandbox import ConfigError
from sqlsandbox.faults import SimulatedDriverError, dbapi_error
from tests import app
from tests.models import Owner

KINDS = {
    "operational": OperationalError,
    "deadlock": OperationalError,
    "serialization": OperationalError,
    "unique_violation": IntegrityError,
    "integrity": IntegrityError,
    "timeout": DBAPIError,  # real on PostgreSQL: asyncpg reports a timeout as a plain DBAPIError
    "disconnect": DBAPIError,
}


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_sync_statement_fault(sandbox, db_session: Session, kind: str) -> None:
    db_session.add(Owner(name="before"))
    db_session.commit()
    sandbox.faults.fail("INSERT", table="owners", error=kind)
    with pytest.raises(KINDS[kind]) as raised:
        app.create_owner("ann")
    error = raised.value
    assert error.orig is not None and error.statement
    if kind == "disconnect" and sandbox.db.family != "sqlite":
        assert error.connection_invalidated  # the server session really was terminated
    if kind == "timeout" and sandbox.db.family != "sqlite":
        assert "statement" in str(error).lower()  # the server's own timeout message
    db_session.rollback()
    app.create_owner("ann")  # the fault fired once; the sandbox works on
    expected = ["ann"] if kind == "disconnect" and sandbox.db.family != "sqlite" else ["ann", "before"]
    assert app.owner_names() == expected


@pytest.mark.parametrize("kind", sorted(KINDS))
async def test_async_statement_fault(sandbox, async_db_session: AsyncSession, kind: str) -> None:
    sandbox.faults.fail("INSERT", table="owners", error=kind)
    with pytest.raises(KINDS[kind]):
        await app.acreate_owner("ann")
    await app.acreate_owner("ann")
    assert await app.aowner_names() == ["ann"]


def test_commit_fault_discards_the_work(sandbox, db_session: Session) -> None:
    sandbox.faults.fail_next("commit")
    with pytest.raises(OperationalError), app.SessionLocal() as session:
        session.add(Owner(name="ann"))
        session.commit()
    assert db_session.scalar(select(func.count()).select_from(Owner)) == 0


async def test_async_commit_fault(sandbox, async_db_session: AsyncSession) -> None:
    sandbox.faults.fail_next("commit", error="serialization")
    with pytest.raises(OperationalError, match="could not serialize"):
        await app.acreate_owner("ann")
    assert await app.aowner_names() == []


def test_flush_fault_hits_the_next_write(sandbox, db_session: Session) -> None:
    sandbox.faults.fail_next("flush", error="deadlock")
    assert app.owner_names() == []  # reads pass
    with pytest.raises(OperationalError, match="deadlock"):
        app.create_owner("ann")


def test_nth_times_and_match(sandbox, db_connection) -> None:
    fault = sandbox.faults.fail(match=r"INSERT INTO owners", nth=2, times=None)
    db_connection.execute(insert(Owner).values(name="a"))
    for name in ("b", "c"):
        with pytest.raises(OperationalError):
            db_connection.execute(insert(Owner).values(name=name))
    assert fault.fired == 2 and fault.seen == 3
    sandbox.faults.clear()
    db_connection.execute(insert(Owner).values(name="d"))
    assert db_connection.scalar(select(func.count()).select_from(Owner)) == 2


def test_bad_fault_arguments_say_what_is_allowed(sandbox) -> None:
    with pytest.raises(ConfigError, match="use one of: deadlock"):
        sandbox.faults.fail("INSERT", error="kaboom")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="SELECT, INSERT, UPDATE, DELETE"):
        sandbox.faults.fail("MERGE")


def test_dbapi_error_builds_what_the_seed_got_wrong() -> None:
    error = dbapi_error(OperationalError, "Commit failed")
    assert isinstance(error.orig, SimulatedDriverError)
    assert "Commit failed" in str(error)
    copy = pickle.loads(pickle.dumps(error))  # xdist and pytest's reporting pickle errors
    assert type(copy) is OperationalError and "Commit failed" in str(copy)
    with pytest.raises(TypeError):
        dbapi_error(ValueError, "x")  # type: ignore[arg-type]
