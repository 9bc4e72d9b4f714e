"""What one test does to the shared sandbox connection never reaches the next test: a connection killed between
tests, real commits past the sandbox, session settings, work left running. Each case is an inner pytest run of
several tests in a fixed order, on the database this run uses."""

from __future__ import annotations

import os

import psycopg  # noqa: F401  (imported here, not first inside an inner run that pytester unloads)
import pytest

pytestmark = pytest.mark.filterwarnings("ignore::pytest.PytestAssertRewriteWarning")

MODELS = """
from sqlalchemy import ForeignKey, String, create_engine
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, sessionmaker

class Base(DeclarativeBase):
    pass

class Item(Base):
    __tablename__ = "items"
    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(20))

engine = create_engine("sqlite:////nonexistent/dev.db")
SessionLocal = sessionmaker(bind=engine)
"""

HELPERS = """
import time
from sqlalchemy import text

def session_id(sandbox, conn):
    query = sandbox.db.provisioner.session_id_query()
    return None if query is None else conn.execute(text(query)).scalar()

def kill_from_outside(sandbox, session_id):
    '''What an admin (or a server restart) does: end the session, and wait until the server has.'''
    sandbox.db.run(lambda c: c.exec_driver_sql(sandbox.db.provisioner.kill_statement(session_id)))
    if sandbox.db.family == "postgresql":
        alive = "SELECT count(*) FROM pg_stat_activity WHERE pid = %d" % session_id
    else:
        alive = "SELECT count(*) FROM information_schema.PROCESSLIST WHERE ID = %d" % session_id
    deadline = time.monotonic() + 10
    while sandbox.db.run(lambda c: c.exec_driver_sql(alive).scalar()):
        assert time.monotonic() < deadline, "the server did not end the session"
"""


@pytest.fixture
def inner(pytester: pytest.Pytester) -> pytest.Pytester:
    """A project on the database the outer run uses (SQLSANDBOX_URL is inherited)."""
    pytester.makepyfile(appmodels=MODELS, helpers=HELPERS)
    pytester.makeini(
        """
        [pytest]
        pythonpath = .
        asyncio_mode = auto
        asyncio_default_fixture_loop_scope = session
        asyncio_default_test_loop_scope = session
        sqlsandbox_metadata = appmodels:Base
        sqlsandbox_bind = appmodels:SessionLocal
        """
    )
    return pytester


def run_in_order(inner: pytest.Pytester, *args: str) -> pytest.RunResult:
    return inner.runpytest("-p", "no:randomly", "-p", "no:cacheprovider", *args)


on_a_server = pytest.mark.skipif(not os.environ.get("SQLSANDBOX_URL"), reason="SQLite: no server session")


@on_a_server
def test_a_connection_killed_between_tests_is_replaced_before_the_next_test(inner: pytest.Pytester) -> None:
    inner.makepyfile(
        """
        import pytest
        from sqlalchemy import func, select
        from appmodels import Item
        from helpers import kill_from_outside, session_id

        KEPT = {}

        def test_1_uses_the_connection(sandbox, db_session):
            KEPT["id"] = session_id(sandbox, db_session)

        def test_2_an_admin_kills_it_while_idle(sandbox):
            kill_from_outside(sandbox, KEPT["id"])

        def test_3_works_on_a_fresh_connection(sandbox, db_session):
            db_session.add(Item(name="after"))
            db_session.commit()
            assert db_session.scalar(select(func.count()).select_from(Item)) == 1
            assert session_id(sandbox, db_session) != KEPT["id"]

        async def test_4_async_uses_the_connection(sandbox, async_db_session):
            KEPT["async"] = await async_db_session.run_sync(lambda s: session_id(sandbox, s))

        def test_5_an_admin_kills_it_while_idle(sandbox):
            kill_from_outside(sandbox, KEPT["async"])

        async def test_6_async_works_on_a_fresh_connection(sandbox, async_db_session):
            async_db_session.add(Item(name="after"))
            await async_db_session.commit()
            assert await async_db_session.scalar(select(func.count()).select_from(Item)) == 1
        """
    )
    result = run_in_order(inner)
    result.assert_outcomes(passed=6)
