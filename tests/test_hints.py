"""Errors whose own words do not say the cause get a plain explanation under the failure, and the one
SQLite strictness sqlsandbox adds (foreign keys) can be turned off."""

from __future__ import annotations

import os

import psycopg  # noqa: F401  (imported here, not first inside an inner run that pytester unloads)
import pytest
from sqlalchemy.engine import make_url

pytestmark = pytest.mark.filterwarnings("ignore::pytest.PytestAssertRewriteWarning")

MODELS = """
from sqlalchemy import ForeignKey, String
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

class Base(DeclarativeBase):
    pass

class Parent(Base):
    __tablename__ = "parents"
    id: Mapped[int] = mapped_column(primary_key=True)
    kids: Mapped[list["Kid"]] = relationship()

class Kid(Base):
    __tablename__ = "kids"
    id: Mapped[int] = mapped_column(primary_key=True)
    parent_id: Mapped[int] = mapped_column(ForeignKey("parents.id"))
"""

ORPHAN = """
from sqlalchemy import func, select
from appmodels import Kid

def test_orphan(db_session):
    db_session.add(Kid(id=1, parent_id=42))  # no parent 42
    db_session.flush()
    assert db_session.scalar(select(func.count()).select_from(Kid)) == 1
"""


def _on_sqlite() -> bool:
    url = os.environ.get("SQLSANDBOX_URL", "")
    return not url or make_url(url).get_backend_name() == "sqlite"


@pytest.fixture
def project(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> pytest.Pytester:
    for name in [name for name in os.environ if name.startswith("SQLSANDBOX_") and name != "SQLSANDBOX_URL"]:
        monkeypatch.delenv(name)
    pytester.makepyfile(appmodels=MODELS)
    pytester.makeini(
        """
        [pytest]
        pythonpath = .
        asyncio_mode = auto
        asyncio_default_fixture_loop_scope = function
        sqlsandbox_metadata = appmodels:Base
        """
    )
    return pytester


@pytest.mark.skipif(not _on_sqlite(), reason="SQLite's foreign keys")
def test_sqlite_foreign_keys_are_checked_and_the_failure_says_how_to_turn_them_off(
    project: pytest.Pytester,
) -> None:
    project.makepyfile(ORPHAN)
    result = project.runpytest_subprocess()
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(
        ["*FOREIGN KEY constraint failed*", "*sqlsandbox turns SQLite's foreign keys on*"]
    )
    result.stdout.fnmatch_lines(["*sqlsandbox_sqlite_foreign_keys = false*"])
    off = project.runpytest_subprocess("-o", "sqlsandbox_sqlite_foreign_keys=false")
    off.assert_outcomes(passed=1)


def test_missing_greenlet_is_explained(project: pytest.Pytester) -> None:
    project.makepyfile(
        """
        from appmodels import Parent

        async def test_lazy_load(async_db_session):
            parent = Parent(id=1)
            async_db_session.add(parent)
            await async_db_session.flush()
            async_db_session.expire(parent, ["kids"])
            assert parent.kids == []  # a lazy load in sync code, inside the session's transaction
        """
    )
    result = project.runpytest_subprocess()
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(
        ["*MissingGreenlet*", "*What it means: SQLAlchemy needed the database from plain*"]
    )
    result.stdout.fnmatch_lines(["*sandbox.async_session(expire_on_commit=False)*"])


def test_our_error_inside_a_task_group_is_still_one_message(project: pytest.Pytester) -> None:
    """An app's lifespan under anyio gathers errors into an exception group: the short message is found
    inside it, not buried under SQLAlchemy's pool traceback."""
    project.makepyfile(
        """
        import anyio
        from sqlalchemy import create_engine, text

        async def test_lifespan_connects_elsewhere(sandbox):
            def connect():
                with create_engine("sqlite:////nonexistent/dev.db").connect() as conn:
                    conn.execute(text("select 1"))

            async def startup():
                await anyio.to_thread.run_sync(connect)

            async with anyio.create_task_group() as group:
                group.start_soon(startup)
        """
    )
    result = project.runpytest_subprocess()
    result.assert_outcomes(failed=1)
    out = result.stdout.str()
    assert "DatabaseAccessBlocked: " in out and "build it on the db_url / async_db_url fixture's URL" in out
    assert "pool/base.py" not in out  # no traceback through SQLAlchemy's pool
