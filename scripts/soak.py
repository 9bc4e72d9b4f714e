"""The soak: a few hundred randomized tests on one database while the sandbox connection is killed from outside.

    python scripts/soak.py [--url URL] [--tests N] [--seed S] [--no-kill]

The tests (generated in a temp project, run by pytest in random order) commit, roll back, nest savepoints,
raise inside transactions, write from concurrent tasks and from worker threads, and each checks that it starts
on an empty table and ends with exactly its own rows. Meanwhile this script kills the run's sandbox connection
at random moments (pg_terminate_backend / KILL; SQLite has no server session to kill). It passes when:
- every failed test had its connection killed while it ran (a kill, from when it was issued until the
  server no longer lists the session, overlaps that test's set-up to tear-down), and failed on the lost
  connection;
- every other test passed;
- the run's end-of-run check found every table as the schema build left it (no row left);
- no database of the run is left on the server.
It prints the counts. `make test` runs it on each database with 300 tests.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import subprocess
import sys
import tempfile
import threading
import time
import uuid
import xml.etree.ElementTree as ET
from pathlib import Path

from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

MODELS = """
from sqlalchemy import ForeignKey, String, create_engine
from sqlalchemy.ext.asyncio import async_sessionmaker, create_async_engine
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, sessionmaker

class Base(DeclarativeBase):
    pass

class Item(Base):
    __tablename__ = "items"
    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(40))

class Tag(Base):
    __tablename__ = "tags"
    id: Mapped[int] = mapped_column(primary_key=True)
    item_id: Mapped[int] = mapped_column(ForeignKey("items.id"))

engine = create_engine("sqlite:////nonexistent/dev.db")
SessionLocal = sessionmaker(bind=engine)
async_engine = create_async_engine("sqlite+aiosqlite:////nonexistent/dev.db")
AsyncSessionLocal = async_sessionmaker(async_engine, expire_on_commit=False)
"""

CONFTEST = """
import json, os, time

def _log(**entry):
    with open(os.environ["SOAK_LOG"], "a") as log:
        log.write(json.dumps(entry) + "\\n")

def pytest_runtest_logstart(nodeid, location):
    _log(test=nodeid, start=time.time())

def pytest_runtest_logfinish(nodeid, location):
    _log(test=nodeid, end=time.time())
"""

TESTS = """
import asyncio
import random
from concurrent.futures import ThreadPoolExecutor

import pytest
from sqlalchemy import func, select

from soakmodels import AsyncSessionLocal, Item, SessionLocal, Tag

TOTAL = int(__import__("os").environ["SOAK_TESTS"])
N = TOTAL // 2


def rows(session):
    return session.scalar(select(func.count()).select_from(Item))


def write(session, rng, n=None):
    items = [Item(name=f"i{rng.random()}") for _ in range(n or rng.randint(1, 4))]
    session.add_all(items)
    session.flush()
    session.add_all([Tag(item_id=item.id) for item in items])
    return len(items)


@pytest.mark.parametrize("seed", range(N))
def test_sync(seed, db_session):
    rng = random.Random(seed)
    assert rows(db_session) == 0  # nothing of an earlier test
    expected = 0
    for _ in range(rng.randint(1, 6)):
        op = rng.choice(["commit", "rollback", "nested_rollback", "nested_commit", "threads", "raise"])
        if op == "commit":
            expected += write(db_session, rng)
            db_session.commit()
        elif op == "rollback":  # what the session's transaction held so far is committed first
            db_session.commit()
            write(db_session, rng)
            db_session.rollback()
        elif op == "nested_rollback":
            savepoint = db_session.begin_nested()
            write(db_session, rng)
            savepoint.rollback()
        elif op == "nested_commit":
            with db_session.begin_nested():
                expected += write(db_session, rng)
        elif op == "threads":
            db_session.commit()  # threads queue behind a transaction that has written

            def worker(n):
                with SessionLocal() as session:
                    write(session, random.Random(n), n)
                    session.commit()

            with ThreadPoolExecutor(max_workers=3) as pool:
                list(pool.map(worker, [1, 2, 3]))
            expected += 6
        else:
            try:
                with SessionLocal.begin() as session:
                    write(session, rng)
                    raise ValueError("rolled back")
            except ValueError:
                pass
    db_session.commit()
    assert rows(db_session) == expected


@pytest.mark.parametrize("seed", range(TOTAL - N))
async def test_async(seed, async_db_session):
    rng = random.Random(-seed - 1)
    count = select(func.count()).select_from(Item)
    assert await async_db_session.scalar(count) == 0
    expected = 0
    for _ in range(rng.randint(1, 6)):
        op = rng.choice(["commit", "rollback", "nested", "tasks"])
        if op == "commit":
            expected += await async_db_session.run_sync(write, rng)
            await async_db_session.commit()
        elif op == "rollback":
            await async_db_session.commit()
            await async_db_session.run_sync(write, rng)
            await async_db_session.rollback()
        elif op == "nested":
            savepoint = await async_db_session.begin_nested()
            await async_db_session.run_sync(write, rng)
            await savepoint.rollback()
        else:
            await async_db_session.commit()

            async def task(n):
                async with AsyncSessionLocal() as session:
                    await session.run_sync(write, random.Random(n), n)
                    await session.commit()

            await asyncio.gather(*(task(n) for n in (1, 2, 3)))
            expected += 6
    await async_db_session.commit()
    assert await async_db_session.scalar(count) == expected
"""

INI = """
[pytest]
pythonpath = .
asyncio_mode = auto
asyncio_default_fixture_loop_scope = session
asyncio_default_test_loop_scope = session
sqlsandbox_metadata = soakmodels:Base
sqlsandbox_bind =
    soakmodels:SessionLocal
    soakmodels:AsyncSessionLocal
"""

# how a test fails when its connection is killed, as each driver words it
LOST = (
    "terminating connection",
    "server closed the connection",
    "connection is closed",
    "ConnectionDoesNotExistError",
    "Lost connection",
    "gone away",
    "Connection was killed",
    "connection was closed",
    "Not connected",
    "closed the connection",
    "ConnectionResetError",
    "InterfaceError",
    "query execution was interrupted",
    "Broken pipe",
    "BrokenPipe",
    # asyncpg, for a statement sent after the server's goodbye arrived and before the socket closed
    "another operation (2) is in progress",
)


def sessions(admin: str, family: str, prefix: str) -> list[int]:
    engine = create_engine(admin, isolation_level="AUTOCOMMIT")
    try:
        with engine.connect() as conn:
            if family == "postgresql":
                query = "SELECT pid FROM pg_stat_activity WHERE datname LIKE :p AND pid <> pg_backend_pid()"
            else:
                query = (
                    "SELECT ID FROM information_schema.PROCESSLIST WHERE DB LIKE :p AND ID <> CONNECTION_ID()"
                )
            return [int(row[0]) for row in conn.execute(text(query), {"p": prefix + "%"})]
    finally:
        engine.dispose()


def kill(admin: str, family: str, session: int) -> None:
    engine = create_engine(admin, isolation_level="AUTOCOMMIT")
    try:
        with engine.connect() as conn:
            statement = (
                f"SELECT pg_terminate_backend({session})" if family == "postgresql" else f"KILL {session}"
            )
            with contextlib.suppress(Exception):  # it ended by itself meanwhile
                conn.exec_driver_sql(statement)
    finally:
        engine.dispose()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", default=os.environ.get("SQLSANDBOX_URL", ""))
    parser.add_argument("--tests", type=int, default=300)
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument("--no-kill", action="store_true", help="the same tests, with no connection killed")
    args = parser.parse_args()
    seed = args.seed if args.seed is not None else random.randrange(10**6)
    chaos = random.Random(seed)
    family = make_url(args.url).get_backend_name() if args.url else "sqlite"
    family = "mysql" if family in ("mysql", "mariadb") else family
    tag = f"soak{uuid.uuid4().hex[:6]}"
    url = str(make_url(args.url).set(database=tag)) if args.url else ""
    admin = ""
    if args.url:
        base = make_url(args.url).set(database="postgres" if family == "postgresql" else "mysql")
        driver = "postgresql+psycopg" if family == "postgresql" else "mysql+pymysql"
        admin = base.set(drivername=driver).render_as_string(hide_password=False)

    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder)
        (root / "soakmodels.py").write_text(MODELS)
        (root / "conftest.py").write_text(CONFTEST)
        (root / "test_soak.py").write_text(TESTS)
        (root / "pytest.ini").write_text(INI)
        log, junit = root / "times.jsonl", root / "junit.xml"
        env = dict(os.environ, SOAK_LOG=str(log), SOAK_TESTS=str(args.tests), SQLSANDBOX_URL=url)
        command = [sys.executable, "-m", "pytest", "-q", f"--randomly-seed={seed}", f"--junitxml={junit}"]
        started = time.time()
        run = subprocess.Popen(
            command, cwd=root, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
        )
        kills: list[tuple[float, float]] = []
        output: list[str] = []
        reader = threading.Thread(target=lambda: output.extend(run.stdout or []), daemon=True)
        reader.start()
        deadline = started + 900  # a safety limit: a soak that hangs fails
        while run.poll() is None:
            time.sleep(chaos.uniform(0.05, 0.6))  # chaos: when to strike, not a wait for anything
            if time.time() > deadline:
                run.kill()
                output.append("\nsoak: the run did not end within 900 s and was killed\n")
                break
            # only while tests run: the schema build and the end-of-run check are not tests
            ended = log.read_text().count('"end"') if log.exists() else 0
            running = log.exists() and ended < args.tests
            if admin and not args.no_kill and running and run.poll() is None:
                for session in sessions(admin, family, f"test_{tag}"):
                    issued = time.time()
                    kill(admin, family, session)
                    # the kill takes effect a little later: from when it was issued until the session is gone
                    deadline = issued + 5
                    while session in sessions(admin, family, f"test_{tag}") and time.time() < deadline:
                        pass
                    kills.append((issued, time.time()))
        reader.join(30)
        seconds = time.time() - started
        out = "".join(output)

        windows: dict[str, list[float]] = {}
        for line in log.read_text().splitlines():
            entry = json.loads(line)
            windows.setdefault(entry["test"], []).append(entry.get("start", entry.get("end", 0.0)))
        outcomes: dict[str, str] = {}
        for case in ET.parse(junit).getroot().iter("testcase"):
            name = f"test_soak.py::{case.get('name')}"
            problem = case.find("failure") if case.find("failure") is not None else case.find("error")
            # a test that failed and then errored at teardown has a record for each
            why = "" if problem is None else f"{problem.get('message')}\n{problem.text}"
            outcomes[name] = "\n".join(part for part in (outcomes.get(name, ""), why) if part)
        left = sessions(admin, family, f"test_{tag}") if admin else []
        databases = _databases(admin, family, f"test_{tag}") if admin else []

    failed = {name: why for name, why in outcomes.items() if why}
    unexplained = []
    for name, why in failed.items():
        start, end = min(windows.get(name, [0.0])), max(windows.get(name, [0.0]))
        hit = any(issued <= end and start <= gone for issued, gone in kills)
        if not hit or not any(marker in why for marker in LOST):
            before = [(max(w), other) for other, w in windows.items() if max(w) <= start]
            previous = max(before)[1] if before else "none"
            unexplained.append(
                f"{name} (after {previous}, {'failed' if outcomes.get(previous) else 'passed'}): "
                + "\n    ".join(why.strip().splitlines()[:8])
            )
    clean = "Every table is as the schema build left it." in out
    print(
        f"soak on {args.url or 'SQLite'} (seed {seed}): {len(outcomes)} tests in {seconds:.1f}s, "
        f"{len(outcomes) - len(failed)} passed, {len(failed)} lost to a killed connection "
        f"({len(kills)} kills); rows left: {'none' if clean else 'SOME'}; databases left: {len(databases)}"
    )
    problems = []
    if len(outcomes) != args.tests:
        problems.append(f"{args.tests} tests were generated, {len(outcomes)} reported:\n{out[-3000:]}")
    problems += [f"a failure no kill explains: {line}" for line in unexplained]
    if not clean:
        problems.append(
            "the end-of-run check did not find every table as the schema build left it:\n" + out[-3000:]
        )
    if databases or left:
        problems.append(f"left on the server: databases {databases}, sessions {left}")
    for problem in problems:
        print(f"FAIL: {problem}")
    if problems:
        saved = Path(tempfile.gettempdir()) / f"sqlsandbox-soak-{tag}.txt"
        saved.write_text(out)
        print(f"The run's whole output: {saved}")
    return 1 if problems else 0


def _databases(admin: str, family: str, prefix: str) -> list[str]:
    engine = create_engine(admin, isolation_level="AUTOCOMMIT")
    try:
        with engine.connect() as conn:
            query = (
                "SELECT datname FROM pg_database WHERE datname LIKE :p"
                if family == "postgresql"
                else "SELECT SCHEMA_NAME FROM information_schema.SCHEMATA WHERE SCHEMA_NAME LIKE :p"
            )
            return [str(row[0]) for row in conn.execute(text(query), {"p": prefix + "%"})]
    finally:
        engine.dispose()


if __name__ == "__main__":
    sys.exit(main())
