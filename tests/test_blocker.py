"""The blocker at the driver level: raw driver calls, `creator=` engines and pools in a test reach only the test
database, on the real servers; what they tried to write is checked from outside."""

from __future__ import annotations

import importlib
import importlib.util
import sqlite3
import uuid
from collections.abc import Iterator
from pathlib import Path

# pytester's in-process runs unload modules first imported inside them; re-importing a C extension can crash
# the interpreter, so the drivers the inner runs use are imported here first.
import aiomysql  # noqa: F401
import aiosqlite  # noqa: F401
import asyncmy  # noqa: F401
import psycopg2  # noqa: F401
import pymysql  # noqa: F401
import pytest
from sqlalchemy import text
from sqlalchemy.engine import URL

from sqlsandbox import blocker, dialects, drivers
from sqlsandbox.dialects.postgresql import _asyncpg_target
from sqlsandbox.dialects.sqlite import sqlite_file
from sqlsandbox.plugin import RUN
from tests import servers

pytestmark = pytest.mark.filterwarnings("ignore::pytest.PytestAssertRewriteWarning")


@pytest.fixture
def project(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> pytest.Pytester:
    monkeypatch.delenv("SQLSANDBOX_URL", raising=False)
    pytester.makeini(
        """
        [pytest]
        pythonpath = .
        asyncio_mode = auto
        asyncio_default_fixture_loop_scope = function
        """
    )
    return pytester


def _suite_server(request: pytest.FixtureRequest, family: str) -> URL:
    """This suite's server when it is of this family (the suite runs once per database)."""
    url = request.config.stash[RUN].settings.url
    if not url or drivers.family(dialects.parse_url(url)) != family:
        pytest.skip(f"the suite runs on {url or 'SQLite'}, not {family}")
    return dialects.parse_url(url)


@pytest.fixture
def foreign(request: pytest.FixtureRequest) -> Iterator[tuple[str, URL]]:
    """A database of our own on the suite's server, standing for a developer's: a table t, no rows; dropped
    afterwards with the one the MariaDB test tries to create."""
    server = _suite_server(request, request.param)
    name = f"blk_{uuid.uuid4().hex[:10]}"  # unique: concurrent runs of this suite share the servers
    try:
        servers.plant(server, name, None)
        create = text("CREATE TABLE t (a INTEGER)")
        dialects.run_admin(server.set(database=name), lambda conn: conn.execute(create))
        yield name, server.set(database=name)
    finally:
        servers.drop_all(server, [name, f"{name}_made"])


def _rows(url: URL) -> int:
    # run_admin: through a sync driver, whichever driver the suite's URL names
    return int(dialects.run_admin(url, lambda conn: conn.execute(text("SELECT count(*) FROM t")).scalar_one()))


def _blocked_lines(tests: dict[str, str]) -> list[str]:
    line = "*DatabaseAccessBlocked: *::{} tried to connect to {}, which is not*"
    return [line.format(test, url) for test, url in tests.items()]


@pytest.mark.sqlsandbox_allow_any_database
@pytest.mark.parametrize("foreign", ["postgresql"], indirect=True)
def test_raw_postgresql_drivers_reach_only_the_test_database(
    project: pytest.Pytester, foreign: tuple[str, URL]
) -> None:
    name, url = foreign
    server = url.set(database=None)
    dsn = url.set(drivername="postgresql").render_as_string(hide_password=False)
    project.makepyfile(early="from psycopg import connect  # a reference taken before the run started\n")
    project.makeconftest("import early  # noqa: F401\n")
    project.makepyfile(
        test_raw=f"""
        import asyncpg, psycopg, psycopg2, pytest
        from sqlalchemy import create_engine, text
        import early

        DSN = {dsn!r}
        INSERT = "INSERT INTO t VALUES (1)"

        def write(conn):
            conn.cursor().execute(INSERT)
            conn.commit()

        def test_psycopg():
            write(psycopg.connect(DSN))

        def test_psycopg_taken_early():
            write(early.connect(DSN))

        async def test_psycopg_async():
            conn = await psycopg.AsyncConnection.connect(DSN)
            await conn.execute(INSERT)
            await conn.commit()

        def test_psycopg2():
            write(psycopg2.connect(DSN))

        async def test_asyncpg():
            conn = await asyncpg.connect(DSN)
            await conn.execute(INSERT)

        async def test_asyncpg_pool():
            pool = await asyncpg.create_pool(DSN, min_size=1)
            await pool.execute(INSERT)

        def test_creator():
            engine = create_engine("postgresql+psycopg://", creator=lambda: psycopg.connect(DSN))
            with engine.begin() as conn:
                conn.execute(text(INSERT))

        async def test_own_database_raw(sandbox):
            own = sandbox.db.url.set(drivername="postgresql").render_as_string(hide_password=False)
            with psycopg.connect(own) as conn:
                assert conn.execute("select 1").fetchone() == (1,)
            conn = await asyncpg.connect(own)
            assert await conn.fetchval("select 1") == 1
            await conn.close()

        @pytest.mark.sqlsandbox_allow_any_database
        def test_opted_out():
            with psycopg.connect(DSN) as conn:
                assert conn.execute("select count(*) from t").fetchone() == (0,)
        """
    )
    result = project.runpytest(f"--sqlsandbox-url={server.render_as_string(hide_password=False)}")
    result.assert_outcomes(failed=7, passed=2)
    where = f"{server.username}*@{server.host}:{server.port or 5432}/{name}"
    result.stdout.fnmatch_lines_random(
        _blocked_lines(
            {
                "test_psycopg": f"postgresql+psycopg://{where}",
                "test_psycopg_taken_early": f"postgresql+psycopg://{where}",
                "test_psycopg_async": f"postgresql+psycopg://{where}",
                "test_psycopg2": f"postgresql+psycopg2://{where}",
                "test_asyncpg": f"postgresql+asyncpg://{where}",
                "test_asyncpg_pool": f"postgresql+asyncpg://{where}",
                "test_creator": f"postgresql+psycopg://{where}",
            }
        )
    )
    assert _rows(url) == 0


@pytest.mark.sqlsandbox_allow_any_database
@pytest.mark.parametrize("foreign", ["mysql"], indirect=True)
def test_raw_mysql_drivers_reach_only_the_test_database(
    project: pytest.Pytester, foreign: tuple[str, URL]
) -> None:
    name, url = foreign
    server = url.set(database=None)
    made = f"{name}_made"
    kw = {"host": server.host, "port": server.port or 3306, "user": server.username}
    kw["password"] = server.password
    project.makepyfile(
        test_raw=f"""
        import aiomysql, asyncmy, pymysql, pytest
        from sqlalchemy import create_engine, text

        KW = {kw!r}
        INSERT = "INSERT INTO t VALUES (1)"

        def write(conn):
            conn.cursor().execute(INSERT)
            conn.commit()

        def test_pymysql():
            write(pymysql.connect(database={name!r}, **KW))

        def test_pymysql_server():  # no database: the server itself, where databases are created
            pymysql.connect(**KW).cursor().execute("CREATE DATABASE {made}")

        def test_pymysql_deferred():
            conn = pymysql.connections.Connection(database={name!r}, defer_connect=True, **KW)
            conn.connect()
            write(conn)

        async def test_asyncmy():
            conn = await asyncmy.connect(database={name!r}, **KW)
            async with conn.cursor() as cur:
                await cur.execute(INSERT)
            await conn.commit()

        async def test_asyncmy_pool():
            pool = await asyncmy.create_pool(minsize=1, database={name!r}, **KW)
            async with pool.acquire() as conn, conn.cursor() as cur:
                await cur.execute(INSERT)

        async def test_aiomysql():
            conn = await aiomysql.connect(db={name!r}, **KW)
            async with conn.cursor() as cur:
                await cur.execute(INSERT)
            await conn.commit()

        def test_creator():
            engine = create_engine("mysql+pymysql://", creator=lambda: pymysql.connect(database={name!r}, **KW))
            with engine.begin() as conn:
                conn.execute(text(INSERT))

        async def test_own_database_raw(sandbox):
            own = sandbox.db.url.database
            with pymysql.connect(database=own, **KW) as conn, conn.cursor() as cur:
                cur.execute("select 1")
            conn = await asyncmy.connect(database=own, **KW)
            conn.close()

        @pytest.mark.sqlsandbox_allow_any_database
        def test_opted_out():
            with pymysql.connect(database={name!r}, **KW) as conn, conn.cursor() as cur:
                cur.execute("select count(*) from t")
                assert cur.fetchone() == (0,)
        """
    )
    result = project.runpytest(f"--sqlsandbox-url={server.render_as_string(hide_password=False)}")
    result.assert_outcomes(failed=7, passed=2)
    where = f"{server.username}*@{server.host}:{server.port or 3306}/"
    result.stdout.fnmatch_lines_random(
        _blocked_lines(
            {
                "test_pymysql": f"mysql+pymysql://{where}{name}",
                "test_pymysql_server": f"mysql+pymysql://{where}",
                "test_pymysql_deferred": f"mysql+pymysql://{where}{name}",
                "test_asyncmy": f"mysql+asyncmy://{where}{name}",
                "test_asyncmy_pool": f"mysql+asyncmy://{where}{name}",
                "test_aiomysql": f"mysql+aiomysql://{where}{name}",
                "test_creator": f"mysql+pymysql://{where}{name}",
            }
        )
    )
    assert _rows(url) == 0
    assert made not in servers.names(server)


@pytest.mark.sqlsandbox_allow_any_database
def test_raw_sqlite_reaches_only_the_test_database(project: pytest.Pytester) -> None:
    dev = project.path / "dev.db"
    with sqlite3.connect(dev) as conn:  # the app's development file
        conn.execute("CREATE TABLE t (a INTEGER)")
    conn.close()
    project.makepyfile(
        test_raw=f"""
        import sqlite3, sqlite3.dbapi2
        import aiosqlite, pytest
        from sqlalchemy import create_engine, text

        DEV = {str(dev)!r}
        INSERT = "INSERT INTO t VALUES (1)"

        def write(conn):
            conn.execute(INSERT)
            conn.commit()

        def test_sqlite3():
            write(sqlite3.connect(DEV))

        def test_dbapi2():
            write(sqlite3.dbapi2.connect(DEV))

        def test_uri():
            write(sqlite3.connect(f"file:{{DEV}}?mode=rw", uri=True))

        async def test_aiosqlite():
            async with aiosqlite.connect(DEV) as conn:
                await conn.execute(INSERT)
                await conn.commit()

        def test_creator():
            engine = create_engine("sqlite://", creator=lambda: sqlite3.connect(DEV))
            with engine.begin() as conn:
                conn.execute(text(INSERT))

        def test_in_memory():
            sqlite3.connect(":memory:").execute("CREATE TABLE x (a INTEGER)")
            sqlite3.connect("file:x?mode=memory", uri=True).execute("CREATE TABLE x (a INTEGER)")
            with create_engine("sqlite://").connect() as conn:
                assert conn.execute(text("select 1")).scalar() == 1

        def test_own_database_raw(sandbox):
            with sqlite3.connect(sandbox.db.url.database) as conn:
                assert conn.execute("select 1").fetchone() == (1,)

        @pytest.mark.sqlsandbox_allow_any_database
        def test_opted_out():
            assert sqlite3.connect(DEV).execute("select count(*) from t").fetchone() == (0,)
        """
    )
    result = project.runpytest()
    result.assert_outcomes(failed=5, passed=3)
    url = f"sqlite:///{dev}"
    result.stdout.fnmatch_lines_random(
        _blocked_lines(
            dict.fromkeys(["test_sqlite3", "test_dbapi2", "test_uri", "test_aiosqlite", "test_creator"], url)
        )
    )
    with sqlite3.connect(dev) as conn:
        assert conn.execute("select count(*) from t").fetchone() == (0,)
    conn.close()


def test_drivers_are_wrapped_only_while_a_run_is_active(pytester: pytest.Pytester) -> None:
    """A process of its own (no outer run): before the run and after it, every driver function is the
    driver's own; during a test, those of drivers imported before the run and during it are wrapped."""
    pytester.makeini("[pytest]\nsqlsandbox_lock_timeout = 10\n")  # configured: the plugin is on
    pytester.makeconftest(
        """
        import sys, sqlite3, psycopg, pymysql, pytest

        BEFORE = {
            "sqlite3.connect": sqlite3.connect,
            "psycopg": psycopg.Connection.__dict__["_get_connection_params"],
            "pymysql": pymysql.connections.Connection.__dict__["connect"],
        }
        assert "aiomysql" not in sys.modules  # imported during the run: wrapped when imported

        def checks(v):
            return getattr(getattr(v, "__func__", v), "_sqlsandbox_checks", False)  # a classmethod's function

        def now():
            import aiomysql.connection
            return {
                "sqlite3.connect": sqlite3.connect,
                "psycopg": psycopg.Connection.__dict__["_get_connection_params"],
                "pymysql": pymysql.connections.Connection.__dict__["connect"],
                "aiomysql": aiomysql.connection.Connection.__dict__["_connect"],
            }

        @pytest.hookimpl(trylast=True)  # after sqlsandbox's own unconfigure
        def pytest_unconfigure(config):
            after = now()
            wrapped = [k for k, v in after.items() if checks(v)]
            same = all(after[k] is BEFORE[k] for k in BEFORE)
            hooks = sum("_WrapOnImport" in repr(f) for f in sys.meta_path)
            print(f"\\nAFTER wrapped={wrapped} same={same} hooks={hooks}")
        """
    )
    pytester.makepyfile(
        """
        from conftest import BEFORE, checks, now

        def test_during():
            during = now()
            assert all(checks(v) for v in during.values()), during
            assert all(during[k] is not BEFORE[k] for k in BEFORE)
        """
    )
    result = pytester.runpytest_subprocess("-p", "no:randomly", "-s")
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(["AFTER wrapped=[] same=True hooks=0"])


def test_every_installed_drivers_connect_is_wrapped() -> None:
    """A new release of a driver that moved its connect function fails here, rather than going unchecked."""
    wrapped = blocker.wrapped_now()
    for family in dialects.FAMILIES.values():
        for hook in family.driver_connects():
            if importlib.util.find_spec(hook.module.split(".")[0]) is None:
                continue
            owner: object = importlib.import_module(hook.module)
            *path, name = hook.attribute.split(".")
            for part in path:
                owner = getattr(owner, part)
            assert any(o is owner and n == name for o, n in wrapped), f"{hook.module}.{hook.attribute}"


@pytest.mark.parametrize(
    ("database", "uri", "file"),
    [
        (":memory:", False, ""),
        ("", False, ""),
        ("file:x?mode=memory&cache=shared", True, ""),
        ("file::memory:", True, ""),
        ("file:///srv/app/dev.db?mode=ro", True, "/srv/app/dev.db"),
        ("file:dev%20copy.db", True, "dev copy.db"),
        ("file:dev.db", False, "file:dev.db"),  # without uri=True it is a file's name
        (Path("/srv/app/dev.db"), False, "/srv/app/dev.db"),
    ],
)
def test_sqlite_file_a_connect_opens(database: object, uri: bool, file: str) -> None:
    assert sqlite_file(database, uri) == file


def test_asyncpg_arguments_win_over_the_dsn() -> None:
    dsn = "postgresql://app:pw@db.internal:6432/prod?sslmode=require"
    assert _asyncpg_target((), {"dsn": dsn}) == ("prod", "postgresql+asyncpg://app:***@db.internal:6432/prod")
    assert _asyncpg_target((), {"dsn": dsn, "database": "other"})[0] == "other"
    assert _asyncpg_target((), {"dsn": "postgresql://h/x?database=q"})[0] == "q"
