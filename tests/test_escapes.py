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
from sqlalchemy.ext.asyncio import async_sessionmaker, create_async_engine
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, sessionmaker

class Base(DeclarativeBase):
    pass

class Item(Base):
    __tablename__ = "items"
    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(20))

engine = create_engine("sqlite:////nonexistent/dev.db")
SessionLocal = sessionmaker(bind=engine)
async_engine = create_async_engine("sqlite+aiosqlite:////nonexistent/dev.db")
AsyncSessionLocal = async_sessionmaker(async_engine, expire_on_commit=False)
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
        sqlsandbox_bind =
            appmodels:SessionLocal
            appmodels:AsyncSessionLocal
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


SEEDED = """
from sqlalchemy import DDL, event
from appmodels import Item

# a row the schema build seeds, as a migration's data step would: it must survive every clean-up
event.listen(Item.__table__, "after_create", DDL("INSERT INTO items (name) VALUES ('seed')"))
"""


@pytest.fixture
def seeded(inner: pytest.Pytester) -> pytest.Pytester:
    inner.makepyfile(seeds=SEEDED)
    inner.makeconftest("import seeds  # noqa: F401\n")
    return inner


def test_driver_level_commits_fail_their_test_and_are_undone(seeded: pytest.Pytester) -> None:
    seeded.makepyfile(
        """
        import pytest
        from sqlalchemy import select, text, update
        from sqlsandbox import SandboxEscapeError
        from appmodels import Item

        def names(session):
            return sorted(session.scalars(select(Item.name)))

        def test_1_dbapi_commit(db_session):
            db_session.add(Item(name="one"))
            db_session.execute(update(Item).where(Item.name == "seed").values(name="changed"))
            db_session.flush()
            db_session.connection().connection.dbapi_connection.commit()

        def test_2_clean(db_session):
            assert names(db_session) == ["seed"]

        def test_3_raw_cursor_commit_then_more_work(db_session):
            db_session.add(Item(name="three"))
            db_session.flush()
            cursor = db_session.connection().connection.dbapi_connection.cursor()
            cursor.execute("COMMIT")
            cursor.close()
            with pytest.raises(SandboxEscapeError, match="ended past SQLAlchemy between"):
                db_session.execute(select(Item)).all()

        def test_4_clean(db_session):
            assert names(db_session) == ["seed"]

        def test_5_multi_statement_string(db_session, sandbox):
            db_session.add(Item(name="five"))
            db_session.flush()
            if sandbox.db.family == "sqlite":  # sqlite3 runs one statement at a time, and says so itself
                with pytest.raises(Exception, match="one statement at a time"):
                    db_session.connection().exec_driver_sql("select 1; commit; select 2")
                return
            with pytest.raises(SandboxEscapeError, match="one of the statements in"):
                db_session.connection().exec_driver_sql("select 1; commit; select 2")

        async def test_6_async_driver_commit(async_db_session):
            async_db_session.add(Item(name="six"))
            await async_db_session.flush()
            conn = await async_db_session.connection()
            await conn.run_sync(lambda c: c.connection.dbapi_connection.commit())

        def test_7_clean(db_session):
            assert names(db_session) == ["seed"]
        """
    )
    result = run_in_order(seeded, "-rA")
    out = result.stdout.str()
    # 1, 3 and 6 fail at teardown; 5 was refused before its COMMIT ran, and fails there too (on SQLite the
    # driver refuses a multi-statement string itself)
    failing = ["test_1_dbapi_commit", "test_3_raw_cursor", "test_5_multi", "test_6_async_driver_commit"]
    if family() == "sqlite":
        failing.remove("test_5_multi")
    result.assert_outcomes(passed=7, errors=len(failing))
    for name in failing:
        assert f"ERROR at teardown of {name}" in out, out
    assert "and the end of the test: what the test wrote until then was committed for real" in out
    committed_past = [line for line in out.splitlines() if line.startswith("COMMITTED PAST THE SANDBOX: ")]
    assert [line.split("::")[1] for line in committed_past] == [
        "test_1_dbapi_commit (tables put back: items)",
        "test_3_raw_cursor_commit_then_more_work (tables put back: items)",
        "test_6_async_driver_commit (tables put back: items)",
    ]
    assert "LEAK" not in out and "Every table is as the schema build left it." in out


def family() -> str:
    url = os.environ.get("SQLSANDBOX_URL", "")
    if url.startswith("postgres"):
        return "postgresql"
    return "mysql" if url.startswith(("mysql", "mariadb")) else "sqlite"


# per database: a session setting one test changes, how a later test reads it, and its value untouched
SESSION_STATE = {
    "mysql": [
        ("SET SESSION TRANSACTION READ ONLY", "SELECT 1", 1),  # the later test's write is the proof
        ("SET time_zone = '+05:00'", "SELECT @@SESSION.time_zone", "SYSTEM"),
        ("SET SESSION sql_mode = 'ANSI_QUOTES'", "SELECT @@SESSION.sql_mode LIKE '%%ANSI_QUOTES%%'", 0),
        ("SET foreign_key_checks = 0", "SELECT @@SESSION.foreign_key_checks", 1),
        ("SET @leftover = 1", "SELECT @leftover", None),
    ],
    "sqlite": [
        ("PRAGMA case_sensitive_like = 1", "SELECT 'a' LIKE 'A'", 1),
        ("PRAGMA recursive_triggers = ON", "PRAGMA recursive_triggers", 0),
    ],
    # PostgreSQL's SET is transactional: the sandbox's rollback undoes it, session-level or not
    "postgresql": [
        ("SET SESSION statement_timeout = '1234ms'", "SELECT current_setting('statement_timeout')", "0"),
        ("SET SESSION CHARACTERISTICS AS TRANSACTION READ ONLY", "SHOW default_transaction_read_only", "off"),
    ],
}


@pytest.mark.parametrize("flavor", ["sync", "async"])
def test_session_settings_do_not_outlive_their_test(inner: pytest.Pytester, flavor: str) -> None:
    cases = SESSION_STATE[family()]
    lines = ["from sqlalchemy import select, text", "from appmodels import Item", f"CASES = {cases!r}", ""]
    for index, (change, read, _) in enumerate(cases):
        if flavor == "sync":
            lines += [
                f"def test_{index}_a_changes_it(db_connection):",
                f"    db_connection.exec_driver_sql({change!r})",
                f"def test_{index}_b_sees_the_default_and_can_write(db_session):",
                f"    assert db_session.connection().exec_driver_sql({read!r}).scalar() == CASES[{index}][2]",
                "    db_session.add(Item(name='w')); db_session.commit()",
            ]
        else:
            lines += [
                f"async def test_{index}_a_changes_it(async_db_connection):",
                f"    await async_db_connection.exec_driver_sql({change!r})",
                f"async def test_{index}_b_sees_the_default_and_can_write(async_db_session):",
                "    conn = await async_db_session.connection()",
                f"    assert (await conn.exec_driver_sql({read!r})).scalar() == CASES[{index}][2]",
                "    async_db_session.add(Item(name='w')); await async_db_session.commit()",
            ]
    inner.makepyfile("\n".join(lines) + "\n")
    run_in_order(inner).assert_outcomes(passed=2 * len(cases))


def test_work_left_running_by_a_test_never_reaches_the_next_tests_data(inner: pytest.Pytester) -> None:
    """The README's fast path (one session loop for every test): a task the first test left behind wakes up
    during the second. It is refused, naming the test that started it; the second test's data is untouched."""
    inner.makepyfile(
        """
        import asyncio
        import threading
        from sqlalchemy import select
        from sqlsandbox import SandboxLateWorkError
        from appmodels import Item, SessionLocal
        from appmodels import AsyncSessionLocal

        LATE = {}

        async def write(name):
            async with AsyncSessionLocal() as session:
                session.add(Item(name=name))
                await session.commit()

        async def test_1_leaves_a_task_behind():
            LATE["go"] = asyncio.Event()

            async def late():
                await LATE["go"].wait()
                await write("late")

            LATE["task"] = asyncio.create_task(late())
            await write("own")  # its own work is its own

        async def test_2_is_not_touched(async_db_session):
            async_db_session.add(Item(name="mine"))
            await async_db_session.commit()
            LATE["go"].set()
            done, _ = await asyncio.wait([LATE["task"]])
            error = LATE["task"].exception()
            assert isinstance(getattr(error, "orig", error), SandboxLateWorkError), error  # SQLAlchemy wraps it
            assert "test_1_leaves_a_task_behind" in str(error)
            assert (await async_db_session.scalars(select(Item.name))).all() == ["mine"]

        def test_3_a_thread_left_behind(db_session):
            LATE["thread_go"] = threading.Event()

            def late():
                LATE["thread_go"].wait(30)
                try:
                    with SessionLocal() as session:
                        session.add(Item(name="late"))
                        session.commit()
                except Exception as exc:
                    LATE["thread_error"] = exc

            # a thread copies no context by itself: started through the test's context, as
            # anyio.to_thread and run_in_executor do
            import contextvars
            context = contextvars.copy_context()
            LATE["thread"] = threading.Thread(target=context.run, args=(late,))
            LATE["thread"].start()

        def test_4_is_not_touched(db_session):
            db_session.add(Item(name="mine")); db_session.commit()
            LATE["thread_go"].set()
            LATE["thread"].join(30)
            assert "test_3_a_thread_left_behind" in str(LATE["thread_error"])
            assert db_session.scalars(select(Item.name)).all() == ["mine"]
        """
    )
    result = run_in_order(inner)
    result.assert_outcomes(passed=4)
    out = result.stdout.str()
    assert result.ret == pytest.ExitCode.TESTS_FAILED  # the run fails: a test left work that ran on
    late = [line for line in out.splitlines() if line.startswith("LATE WORK: ")]
    assert len(late) == 2, late
    assert "::test_1_leaves_a_task_behind (at " in late[0] and late[0].endswith("::test_2_is_not_touched")
    assert "::test_3_a_thread_left_behind (at " in late[1] and late[1].endswith("::test_4_is_not_touched")


def test_a_task_still_holding_the_sandbox_at_teardown_fails_its_test(inner: pytest.Pytester) -> None:
    inner.makepyfile(
        """
        import asyncio
        import contextlib
        from appmodels import Item
        from appmodels import AsyncSessionLocal

        LEFT = {}

        async def test_1_returns_while_its_task_holds_a_transaction():
            flushed, LEFT["go"] = asyncio.Event(), asyncio.Event()

            async def writer():
                async with AsyncSessionLocal() as session:
                    session.add(Item(name="x"))
                    await session.flush()
                    flushed.set()
                    await LEFT["go"].wait()

            LEFT["task"] = asyncio.create_task(writer(), name="writer")
            await flushed.wait()

        async def test_2_cleans_up_after_it():
            LEFT["task"].cancel()
            with contextlib.suppress(BaseException):
                await LEFT["task"]
        """
    )
    result = run_in_order(inner)
    result.assert_outcomes(passed=2, errors=1)
    out = result.stdout.str()
    assert "ERROR at teardown of test_1_returns_while_its_task_holds_a_transaction" in out
    assert "opened by task 'writer'" in out and "is still open as the test ends" in out


@pytest.mark.skipif(family() != "mysql", reason="MariaDB/MySQL commit implicitly before DDL")
def test_mariadb_ddl_in_a_test_is_refused_as_ddl(inner: pytest.Pytester) -> None:
    inner.makepyfile(
        """
        import pytest
        from sqlsandbox import SandboxEscapeError

        @pytest.mark.parametrize("ddl", ["CREATE TABLE scratch (id INT)", "TRUNCATE TABLE items",
                                         "ALTER TABLE items ADD COLUMN x INT"])
        def test_ddl(db_connection, ddl):
            with pytest.raises(SandboxEscapeError) as refused:
                db_connection.exec_driver_sql(ddl)
            message = str(refused.value)
            assert "MariaDB and MySQL commit implicitly before it" in message
            assert "use session.commit()" not in message and "DELETE instead of TRUNCATE" in message

        def test_a_temporary_table_is_fine(db_connection):
            db_connection.exec_driver_sql("CREATE TEMPORARY TABLE scratch (id INT)")
            db_connection.exec_driver_sql("INSERT INTO scratch VALUES (1)")
            assert db_connection.exec_driver_sql("SELECT count(*) FROM scratch").scalar() == 1
            db_connection.exec_driver_sql("DROP TEMPORARY TABLE scratch")
        """
    )
    result = run_in_order(inner)
    result.assert_outcomes(passed=4, errors=3)  # each refusal also fails its teardown, as a caught problem


def test_an_engine_of_the_tests_own_on_the_test_database_joins_the_sandbox(inner: pytest.Pytester) -> None:
    """Its connect() joins the sandbox (binding.py adopts it); only its pool's raw DBAPI connection, which
    would commit past the sandbox, is refused."""
    inner.makepyfile(
        """
        import pytest
        from sqlalchemy import create_engine, func, select, text
        from sqlsandbox import DatabaseAccessBlocked
        from appmodels import Item

        def own_engine(sandbox):
            sync_url = sandbox.sync_engine.url.render_as_string(hide_password=False)
            return create_engine(sync_url)

        def test_1_joins(sandbox, db_session):
            engine = own_engine(sandbox)
            with engine.begin() as conn:
                conn.execute(text("INSERT INTO items (name) VALUES ('mine')"))
            assert db_session.scalar(select(func.count()).select_from(Item)) == 1
            with pytest.raises(DatabaseAccessBlocked, match="through an engine of its own, past the sandbox"):
                engine.raw_connection()
            engine.dispose()

        @pytest.mark.sqlsandbox(committed=True)
        def test_2_committed_mode_may(sandbox):
            engine = own_engine(sandbox)
            with engine.begin() as conn:
                assert conn.execute(select(func.count()).select_from(Item)).scalar() == 0
            engine.dispose()

        def test_3_nothing_was_written(db_session):
            assert db_session.scalar(select(func.count()).select_from(Item)) == 0
        """
    )
    run_in_order(inner).assert_outcomes(passed=3)
