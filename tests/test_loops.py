"""One async connection for every event loop of the test process (asyncpg, asyncmy and aiomysql through the
owner loop; aiosqlite and psycopg by themselves): tests on pytest-asyncio's per-test loops keep it instead of
reconnecting, Starlette's TestClient reaches it from its own loop and thread, and a statement cancelled by its
caller leaves the driver idle for the next one."""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from sqlsandbox import Sandbox
from tests import app

api = FastAPI()


@api.post("/owners")
async def create(name: str) -> dict[str, int]:
    return {"id": await app.acreate_owner(name)}


@api.get("/owners")
async def names() -> list[str]:
    return await app.aowner_names()


def test_testclient_runs_an_async_app_on_the_sandbox() -> None:
    with TestClient(api) as client:
        assert client.post("/owners", params={"name": "ann"}).status_code == 200
        assert client.get("/owners").json() == ["ann"]


def test_sixteen_concurrent_async_requests_from_four_threads() -> None:
    with TestClient(api) as client, ThreadPoolExecutor(max_workers=4) as pool:
        responses = list(pool.map(lambda i: client.post("/owners", params={"name": f"c{i}"}), range(16)))
        assert [r.status_code for r in responses] == [200] * 16
        assert len(client.get("/owners").json()) == 16


def test_and_none_of_their_rows_is_left() -> None:
    with TestClient(api) as client:
        assert client.get("/owners").json() == []


async def test_a_test_on_its_own_loop_and_testclient_share_the_sandbox(async_db_session: AsyncSession) -> None:
    await app.acreate_owner("seed")  # committed: the app's request sees it
    with TestClient(api) as client:  # blocks this test's loop; the app runs on TestClient's
        assert client.get("/owners").json() == ["seed"]


def test_per_test_loops_keep_one_connection(pytester: pytest.Pytester) -> None:
    """pytest-asyncio's default: a new loop for every test. The connection is opened once, not per test."""
    pytester.makeini("[pytest]\nasyncio_mode = auto\nasyncio_default_fixture_loop_scope = function\n")
    pytester.makepyfile(
        """
        import asyncio
        seen = []

        async def driver(async_db_session):
            conn = await async_db_session.connection()
            return conn.sync_connection.connection.dbapi_connection, asyncio.get_running_loop()

        async def test_one(async_db_session):
            seen.append(await driver(async_db_session))

        async def test_two(async_db_session):
            seen.append(await driver(async_db_session))
            (first, loop_one), (second, loop_two) = seen
            assert loop_one is not loop_two  # a loop each
            assert first is second  # one connection
        """
    )
    pytester.runpytest("-p", "no:randomly").assert_outcomes(passed=2)


async def test_a_statement_cancelled_by_its_caller_leaves_the_driver_idle(
    sandbox: Sandbox, async_db_session: AsyncSession
) -> None:
    if sandbox.db.family != "postgresql":
        pytest.skip("a statement that sleeps server-side: PostgreSQL's pg_sleep")
    await async_db_session.execute(text("SELECT 1"))
    with pytest.raises(asyncio.TimeoutError):
        await asyncio.wait_for(async_db_session.execute(text("SELECT pg_sleep(5)")), timeout=0.2)
    await async_db_session.rollback()
    assert (await async_db_session.execute(text("SELECT 2"))).scalar() == 2


def test_the_owner_loop_stopping_fails_that_test_only(pytester: pytest.Pytester, sandbox: Sandbox) -> None:
    if sandbox.db.async_engine.sync_engine.dialect.driver in ("aiosqlite", "psycopg"):
        pytest.skip("this driver's connection serves every loop by itself: it does not live on the owner loop")
    pytester.makeini("[pytest]\nasyncio_mode = auto\nasyncio_default_fixture_loop_scope = function\n")
    pytester.makepyfile(
        """
        from sqlalchemy import text

        async def test_1_loses_it(sandbox, async_db_session):
            await async_db_session.execute(text("SELECT 1"))
            sandbox.db.owner.stop()  # as if its thread died
            await async_db_session.execute(text("SELECT 2"))

        async def test_2_gets_a_fresh_one(async_db_session):
            assert (await async_db_session.execute(text("SELECT 3"))).scalar() == 3
        """
    )
    result = pytester.runpytest("-p", "no:randomly")
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines(
        ["*SandboxOwnerLoopError: The owner loop that holds the sandbox's async connection is not running.*"]
    )


def test_committed_mode_as_the_first_async_use_of_a_run(pytester: pytest.Pytester) -> None:
    """Committed mode connects for real, on the owner loop too, even before any sandbox connection has."""
    pytester.makeini("[pytest]\nasyncio_mode = auto\nasyncio_default_fixture_loop_scope = function\n")
    pytester.makepyfile(
        """
        import pytest
        from sqlalchemy import text

        @pytest.mark.sqlsandbox(committed=True)
        async def test_committed(async_db_session):
            assert (await async_db_session.execute(text("SELECT 1"))).scalar() == 1
        """
    )
    pytester.runpytest_subprocess("-p", "no:randomly").assert_outcomes(passed=1)


@pytest.mark.sqlsandbox(committed=True)  # LISTEN and NOTIFY take effect at commit: never inside the sandbox
async def test_a_driver_callback_runs_on_the_loop_that_registered_it(sandbox: Sandbox) -> None:
    if sandbox.db.async_engine.sync_engine.dialect.driver != "asyncpg":
        pytest.skip("asyncpg's add_listener")
    loop, heard, where = asyncio.get_running_loop(), asyncio.Event(), []

    def on_notify(connection: object, pid: int, channel: str, payload: str) -> None:
        where.append((payload, asyncio.get_running_loop() is loop))
        heard.set()  # an asyncio.Event: set from another thread, it would not wake the test

    async with sandbox.async_engine.connect() as conn:
        await conn.execution_options(isolation_level="AUTOCOMMIT")  # LISTEN takes effect at once
        driver = (await conn.get_raw_connection()).driver_connection
        await driver.add_listener("sqlsandbox_test", on_notify)
        async with sandbox.async_engine.begin() as other:
            await other.exec_driver_sql("NOTIFY sqlsandbox_test, 'hello'")
        await asyncio.wait_for(heard.wait(), timeout=10)
        await driver.remove_listener("sqlsandbox_test", on_notify)
    assert where == [("hello", True)]
