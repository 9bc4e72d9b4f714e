"""Ctrl-C and other ends of a run: pytest exits promptly, as its own interrupt does, and leaves nothing behind,
even when the interrupted test holds an open transaction (and, on MariaDB, the metadata locks that would
hold the DROP), or is in the middle of a statement; an admin statement that another session's lock holds
up gives up within its bound and says so in one line."""

from __future__ import annotations

import os
import queue
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import psycopg  # noqa: F401  (imported here, not first inside an inner run that pytester unloads)
import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import URL, Connection

from sqlsandbox import dialects, drivers
from sqlsandbox.dialects.base import ADMIN_LOCK_SECONDS
from tests import servers

# the outer test looks at the server from admin connections of its own
pytestmark = [
    pytest.mark.sqlsandbox_allow_any_database,
    pytest.mark.filterwarnings("ignore::pytest.PytestAssertRewriteWarning"),
]

MODELS = """
from sqlalchemy import String
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

class Base(DeclarativeBase):
    pass

class Item(Base):
    __tablename__ = "items"
    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(20))
"""

# Each test writes, reads the table (on MariaDB the open transaction now holds the table's metadata lock),
# says where it is, and then waits: for Ctrl-C, for a line on stdin, or inside a long statement.
TESTS = """
import asyncio, os, sys
from sqlalchemy import text

def _sleep(dialect):
    return "SELECT pg_sleep(120)" if dialect.name == "postgresql" else "SELECT SLEEP(120)"

def test_sync(sandbox, db_connection):
    db_connection.execute(text("INSERT INTO items (id, name) VALUES (1, 'x')"))
    db_connection.execute(text("SELECT * FROM items")).all()
    print("INSIDE", sandbox.db.url.database, flush=True)
    if os.environ.get("IN_STATEMENT"):
        db_connection.execute(text(_sleep(db_connection.dialect)))
    sys.stdin.readline()

async def test_async(sandbox, async_db_connection):
    await async_db_connection.execute(text("INSERT INTO items (id, name) VALUES (1, 'x')"))
    (await async_db_connection.execute(text("SELECT * FROM items"))).all()
    print("INSIDE", sandbox.db.url.database, flush=True)
    if os.environ.get("IN_STATEMENT"):
        await async_db_connection.execute(text(_sleep(async_db_connection.dialect)))
    await asyncio.Event().wait()  # until Ctrl-C (a thread blocked on stdin would keep the loop from closing)
"""

# a safety limit, not a speed assert: without the fix the run waits on its own lock for ever
EXIT_LIMIT = 30.0


_RAW_URL = os.environ.get("SQLSANDBOX_URL")  # read before the project fixture takes it from the inner runs


def _server() -> URL | None:
    return dialects.parse_url(_RAW_URL) if _RAW_URL else None


@pytest.fixture
def project(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.delenv("SQLSANDBOX_URL", raising=False)  # the inner run gets it on its command line
    pytester.makepyfile(appmodels=MODELS, test_inner=TESTS)
    pytester.makeini(
        """
        [pytest]
        pythonpath = .
        asyncio_mode = auto
        asyncio_default_fixture_loop_scope = function
        sqlsandbox_metadata = appmodels:Base
        """
    )
    return pytester.path


class Inner:
    """An inner pytest run of one test, in a process of its own, and what it has printed."""

    def __init__(self, path: Path, name: str, server: URL | None, env: dict[str, str]) -> None:
        url = [f"--sqlsandbox-url={server.render_as_string(hide_password=False)}"] if server else []
        test = f"test_inner.py::{name}"
        self.process = subprocess.Popen(
            [sys.executable, "-m", "pytest", "-s", "-p", "no:randomly", "-p", "no:cacheprovider", *url, test],
            cwd=path,
            env={**os.environ, **env},
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        self.lines: queue.Queue[str | None] = queue.Queue()  # None: the output ended
        self.output: list[str] = []
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.lines.put(line)
        self.lines.put(None)

    def database(self) -> str:
        """Wait until the inner test says it is inside its transaction: its test database."""
        deadline = time.monotonic() + EXIT_LIMIT
        while True:
            try:
                line = self.lines.get(timeout=max(deadline - time.monotonic(), 0.01))
            except queue.Empty:
                line = None
            if line is None:
                raise AssertionError("the inner run never reached its test:\n" + "".join(self.output))
            self.output.append(line)
            if "INSIDE " in line:  # after pytest's "test_inner.py " on the same line
                return line.split("INSIDE ", 1)[1].strip()

    def finish(self) -> tuple[int, str, float]:
        """(exit code, whole output, seconds) once it exits; it is killed past EXIT_LIMIT."""
        started = time.monotonic()
        try:
            code = self.process.wait(timeout=EXIT_LIMIT)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
            code = None
        seconds = time.monotonic() - started
        while (line := self.lines.get(timeout=EXIT_LIMIT)) is not None:
            self.output.append(line)
        output = "".join(self.output)
        assert code is not None, f"the inner run still ran {EXIT_LIMIT:.0f} s later:\n{output}"
        return code, output, seconds

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()


@pytest.fixture
def inners() -> Iterator[list[Inner]]:
    started: list[Inner] = []
    yield started
    for inner in started:
        inner.kill()


def _exists(database: str) -> bool:
    server = _server()
    if server is None:
        return Path(database).exists()
    return database in servers.names(server)


def _wait_for_statement(database: str) -> None:
    """A bounded wait until the inner test's long statement is running on the server."""
    server = _server()
    assert server is not None

    def running(conn: Connection) -> bool:
        query = (
            "SELECT 1 FROM pg_stat_activity WHERE datname = :n AND query LIKE 'SELECT pg_sleep%%' "
            "AND state = 'active'"
            if conn.dialect.name == "postgresql"
            else "SELECT 1 FROM information_schema.PROCESSLIST WHERE DB = :n AND INFO LIKE 'SELECT SLEEP%%'"
        )
        return conn.execute(text(query), {"n": database}).first() is not None

    deadline = time.monotonic() + 20
    while not dialects.run_admin(servers.admin(server), running):
        assert time.monotonic() < deadline, "the inner test's statement never started"
        time.sleep(0.05)


@pytest.mark.parametrize("in_statement", [False, True], ids=["in-transaction", "in-statement"])
@pytest.mark.parametrize("test", ["test_sync", "test_async"])
def test_ctrl_c_exits_promptly_and_leaves_nothing(
    project: Path, inners: list[Inner], test: str, in_statement: bool
) -> None:
    if in_statement and _server() is None:
        pytest.skip("a long statement needs a server (SQLite has no sleep function)")
    inner = Inner(project, test, _server(), {"IN_STATEMENT": "1" if in_statement else ""})
    inners.append(inner)
    database = inner.database()
    if in_statement:
        _wait_for_statement(database)
    inner.process.send_signal(signal.SIGINT)
    code, output, _ = inner.finish()

    assert code == pytest.ExitCode.INTERRUPTED, output
    assert "Traceback" not in output, output
    assert "AdminShutdown" not in output, output
    assert output.count("Interrupted: sqlsandbox") == 1, output
    assert not _exists(database), f"{database} was left behind:\n{output}"


def test_a_drop_held_up_by_another_session_gives_up_within_its_bound(
    project: Path, inners: list[Inner]
) -> None:
    """Another session (this test's own, outside the inner run) holds a lock the DROP needs: the inner run
    waits at most ADMIN_LOCK_SECONDS for it, then ends with one line saying what was left."""
    server = _server()
    if server is None:
        pytest.skip("SQLite: a file is removed, no lock to wait for")
    inner = Inner(project, "test_sync", server, {})
    inners.append(inner)
    database = inner.database()
    on_pg = server.get_backend_name() == "postgresql"
    holder_url = drivers.sync_url(server.set(database="postgres" if on_pg else database))
    holder = create_engine(holder_url).connect()
    try:
        if holder.dialect.name == "postgresql":
            # an uncommitted COMMENT ON DATABASE locks the database object that DROP DATABASE locks
            holder.exec_driver_sql(f"COMMENT ON DATABASE \"{database}\" IS 'held by test_interrupt'")
        else:
            holder.exec_driver_sql("SELECT * FROM items").all()  # an open transaction's metadata lock
        assert inner.process.stdin is not None
        inner.process.stdin.write("\n")  # the inner test ends; its run drops the database
        inner.process.stdin.flush()
        code, output, seconds = inner.finish()
        assert _exists(database), output  # held: left for the next run on this host
    finally:
        holder.rollback()
        holder.close()
        holder.engine.dispose()
        if _exists(database):
            servers.drop_all(server, [database])  # this test's own inner run made it

    assert "1 passed" in output, output
    assert code == pytest.ExitCode.TESTS_FAILED, output
    assert "Traceback" not in output, output
    line = next((line for line in output.splitlines() if "could not drop the test database" in line), "")
    assert database in line and "the next run on this host removes it" in line, output
    assert seconds < ADMIN_LOCK_SECONDS + EXIT_LIMIT / 2, output
