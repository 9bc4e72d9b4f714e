"""Each diagnostic of the seeds' failures, on a deliberately broken setup, in an inner pytest run."""

from __future__ import annotations

import os

import psycopg  # noqa: F401  (imported before any inner run, which pytester would unload)
import pytest

pytestmark = pytest.mark.filterwarnings("ignore::pytest.PytestAssertRewriteWarning")

APP = """
from fastapi import FastAPI
from sqlalchemy import String, select, func
from sqlalchemy.ext.asyncio import async_sessionmaker, create_async_engine
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

class Base(DeclarativeBase):
    pass

class Item(Base):
    __tablename__ = "items"
    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(20))

engine = create_async_engine("sqlite+aiosqlite:////nonexistent/dev.db")
SessionLocal = async_sessionmaker(engine, expire_on_commit=False)
app = FastAPI()

@app.get("/count")
async def count():
    async with SessionLocal() as session:
        return {"n": await session.scalar(select(func.count()).select_from(Item))}
"""


@pytest.fixture
def project(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> pytest.Pytester:
    pytester.makepyfile(myapp=APP)
    pytester.makeini(
        """
        [pytest]
        pythonpath = .
        asyncio_mode = auto
        asyncio_default_fixture_loop_scope = function
        sqlsandbox_metadata = myapp:Base
        sqlsandbox_bind =
            myapp:engine
            myapp:SessionLocal
        sqlsandbox_asgi_app = myapp:app
        """
    )
    return pytester


def test_testclient_with_the_async_sandbox(project: pytest.Pytester) -> None:
    """Seeds 002/004: TestClient runs the app on a loop of its own in another thread. An async driver that
    serves every loop works there; one that belongs to its loop is explained, with the fix."""
    project.makepyfile(
        """
        from fastapi.testclient import TestClient
        from myapp import app, Item

        async def test_seed_then_testclient(async_db_session):
            async_db_session.add(Item(name="a"))
            await async_db_session.commit()
            with TestClient(app) as client:  # runs the app in another thread and loop
                assert client.get("/count").json() == {"n": 1}

        async def test_the_fix(async_db_session, asgi_client):
            async_db_session.add(Item(name="a"))
            await async_db_session.commit()
            assert (await asgi_client.get("/count")).json() == {"n": 1}
        """
    )
    project.runpytest("-p", "no:randomly").assert_outcomes(passed=2)


def test_a_task_waiting_on_the_tests_open_transaction_is_a_named_deadlock(project: pytest.Pytester) -> None:
    project.makepyfile(
        """
        import asyncio
        from myapp import Item, SessionLocal

        async def test_open_transaction_then_await_other_task(async_db_session):
            started = asyncio.Event()
            async def background():
                await started.wait()
                async with SessionLocal.begin() as s:
                    s.add(Item(name="bg"))
            task = asyncio.create_task(background())  # created before the test's transaction
            async_db_session.add(Item(name="seed"))
            await async_db_session.flush()  # the test's transaction is now open
            started.set()
            await task
        """
    )
    result = project.runpytest("-o", "sqlsandbox_lock_timeout=0.5")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(
        [
            "*SandboxDeadlockError: Opening sqlsandbox_sp_* * waited 0.5s for the unit of work sqlsandbox_sp_* "
            "opened by task * at *test_a_task_waiting*.py:12 in test_open_transaction_then_await_other_task()*",
            "*That task is now at:*",
            "*test_a_task_waiting*.py:14 in test_open_transaction_then_await_other_task()",
            "Fix: commit or close the session*",
        ]
    )


def test_session_scoped_engine_on_function_loops_is_explained(
    project: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = os.environ.get("SQLSANDBOX_URL", "")
    if "asyncpg" not in url and "psycopg" not in url and "postgresql" not in url:
        url = "postgresql+asyncpg://postgres@127.0.0.1:5432/diag"
    monkeypatch.setenv("SQLSANDBOX_URL", url)
    project.makeconftest(
        """
        import pytest, pytest_asyncio
        from sqlalchemy.ext.asyncio import create_async_engine
        from sqlalchemy.engine import make_url

        @pytest_asyncio.fixture(scope="session", loop_scope="session")
        async def shared_engine(sandbox_url):
            engine = create_async_engine(sandbox_url.set(drivername="postgresql+asyncpg"))
            async with engine.connect() as conn:  # pools a connection made on the session loop
                await conn.exec_driver_sql("select 1")
            yield engine

        @pytest.fixture(scope="session")
        def sandbox_url(request):
            # another database on the test server: an engine on the test database's own URL joins the
            # sandbox (binding.py), and the cross-loop error this test explains would not happen
            from sqlsandbox.plugin import RUN
            return request.config.stash[RUN].database().url.set(database="postgres")
        """
    )
    project.makepyfile(
        """
        import pytest
        from sqlalchemy import text

        @pytest.mark.sqlsandbox_allow_any_database
        @pytest.mark.asyncio(loop_scope="function")
        async def test_uses_session_engine(shared_engine):
            async with shared_engine.connect() as conn:
                await conn.execute(text("select 1"))
        """
    )
    result = project.runpytest("-p", "no:randomly")
    if "Could not connect" in result.stderr.str() and not os.environ.get("CI"):
        pytest.skip("PostgreSQL not reachable")
    result.assert_outcomes(failed=1)
    out = result.stdout.str()
    assert "sqlsandbox" in out and "What it means: one asyncio database connection was used" in out
    assert "in test_uses_session_engine()" in out


@pytest.mark.parametrize("option", [None, "--tb=long", "--full-trace"])
def test_the_short_message_by_default_and_the_whole_chain_on_request(
    project: pytest.Pytester, option: str | None
) -> None:
    project.makepyfile(
        """
        def test_raw_commit(db_connection):
            db_connection.exec_driver_sql("/* why not */ commit")
        """
    )
    result = project.runpytest("-p", "no:randomly", *([option] if option else []))
    result.assert_outcomes(failed=1, errors=1)  # refused at the call; the caught problem fails teardown
    out = result.stdout.str()
    assert "SandboxEscapeError: COMMIT issued as SQL at " in out  # the statement named, not its comment
    through_sqlalchemy = "sqlalchemy/engine/base.py" in out
    assert through_sqlalchemy == (option is not None)
