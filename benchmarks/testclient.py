"""`make bench`, TestClient phase: FastAPI `def` routes called through Starlette's TestClient, as FastAPI's
SQL tutorial tests them, under three ways of isolating the tests, side by side in one run on each database.

    sqlsandbox   the plugin, the app's engine in sqlsandbox_bind: the routes' worker threads share the sandbox
    committed    the plugin with @pytest.mark.sqlsandbox(committed=True): real commits, written tables emptied
    truncate     no plugin: the app on a test database of its own, every table emptied after each test
                 (TRUNCATE on PostgreSQL and MariaDB, DELETE on SQLite)

Each test seeds a row with its own session and commits, reads it through a GET, writes one through a POST, and
reads both back: 3 requests and 4 statements of its own. Per test: the wall time from the first test's set-up to
the last test's tear-down, divided by the number of tests (so the requests' own cost is in every column; the
difference between columns is the isolation). Writes results/testclient.md and results/testclient.json.

    .venv/bin/python benchmarks/testclient.py [--tests N] [--only sqlite pg maria]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

from run import reachable  # benchmarks/run.py, beside this file

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"
PG = os.environ.get("SQLSANDBOX_BENCH_POSTGRES", "postgresql://postgres@127.0.0.1:5432")
MARIA = os.environ.get("SQLSANDBOX_BENCH_MARIADB", "mysql://root@127.0.0.1:3306")
DATABASES = {
    "sqlite": "sqlite:///bench_tc.db",
    "pg": f"{PG.replace('postgresql://', 'postgresql+psycopg://')}/bench_tc",
    "maria": f"{MARIA.replace('mysql://', 'mysql+pymysql://')}/bench_tc",
}
STRATEGIES = ("sqlsandbox", "committed", "truncate")

APP = """
import os
from fastapi import Depends, FastAPI
from sqlalchemy import String, create_engine, select
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column

class Base(DeclarativeBase):
    pass

class Item(Base):
    __tablename__ = "items"
    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(50))

class Tag(Base):
    __tablename__ = "tags"
    id: Mapped[int] = mapped_column(primary_key=True)
    label: Mapped[str] = mapped_column(String(50))

engine = create_engine(os.environ.get("APP_DATABASE_URL", "sqlite:///./dev.db"))

def get_session():
    with Session(engine) as session:
        yield session

app = FastAPI()

@app.get("/items/{item_id}")
def read_item(item_id: int, session: Session = Depends(get_session)):
    item = session.get(Item, item_id)
    return {"name": item.name}

@app.post("/items")
def create_item(name: str, session: Session = Depends(get_session)):
    item = Item(name=name)
    session.add(item)
    session.commit()
    return {"id": item.id}

@app.get("/items")
def list_items(session: Session = Depends(get_session)):
    return [i.name for i in session.scalars(select(Item).order_by(Item.name))]
"""

TEST = """
from fastapi.testclient import TestClient
from main import Item, app

client = TestClient(app)

def test_{i}(db_session):
    item = Item(name="seed")
    db_session.add(item)
    db_session.flush()
    item_id = item.id
    db_session.commit()  # no transaction left open: SQLite's committed mode would lock out the app's writes
    assert client.get(f"/items/{{item_id}}").json() == {{"name": "seed"}}
    assert client.post("/items", params={{"name": "new"}}).status_code == 200
    assert client.get("/items").json() == ["new", "seed"]
"""

TIMING = """
import json, os, time
import pytest

_marks = {}

@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item):
    _marks.setdefault("start", time.perf_counter())

@pytest.hookimpl(trylast=True)
def pytest_runtest_teardown(item, nextitem):
    _marks["end"] = time.perf_counter()
    _marks["n"] = _marks.get("n", 0) + 1

def pytest_sessionfinish(session):
    if "end" in _marks:
        with open(os.environ["BENCH_OUT"], "w") as f:
            json.dump(_marks, f)
"""

COMMITTED = """
import pytest

def pytest_collection_modifyitems(items):
    for item in items:
        item.add_marker(pytest.mark.sqlsandbox(committed=True))
"""

TRUNCATE = '''
import pytest
from sqlalchemy.orm import Session
import main

@pytest.fixture(scope="session", autouse=True)
def schema():
    main.Base.metadata.create_all(main.engine)
    yield
    main.Base.metadata.drop_all(main.engine)

@pytest.fixture
def db_session():
    with Session(main.engine) as session:
        yield session

@pytest.fixture(autouse=True)
def _empty_tables():
    """As benchmarks/harness/strat_truncate.py empties them: Django's TransactionTestCase."""
    yield
    names = [t.name for t in main.Base.metadata.sorted_tables]
    with main.engine.begin() as conn:
        if conn.dialect.name == "postgresql":
            conn.exec_driver_sql(f"TRUNCATE {', '.join(names)} RESTART IDENTITY CASCADE")
        elif conn.dialect.name in ("mysql", "mariadb"):
            conn.exec_driver_sql("SET FOREIGN_KEY_CHECKS=0")
            for name in names:
                conn.exec_driver_sql(f"TRUNCATE TABLE {name}")
            conn.exec_driver_sql("SET FOREIGN_KEY_CHECKS=1")
        else:
            for name in names:
                conn.exec_driver_sql(f"DELETE FROM {name}")
'''


def write_project(folder: Path, tests: int, strategy: str, url: str) -> None:
    (folder / "main.py").write_text(APP)
    (folder / "test_items.py").write_text("".join(TEST.format(i=i) for i in range(tests)))
    conftest = TIMING + {"sqlsandbox": "", "committed": COMMITTED, "truncate": TRUNCATE}[strategy]
    (folder / "conftest.py").write_text(conftest)
    ini = "[pytest]\npythonpath = .\n"
    if strategy != "truncate":
        ini += "sqlsandbox_metadata = main:Base\nsqlsandbox_bind = main:engine\n"
        ini += f"sqlsandbox_url = {url}\n"
    (folder / "pytest.ini").write_text(ini)


def admin(url: str, sql: str) -> None:
    from sqlalchemy import create_engine
    from sqlalchemy.engine import make_url

    server = make_url(url)._replace(database="postgres" if url.startswith("postgresql") else None)
    engine = create_engine(server, isolation_level="AUTOCOMMIT")
    with engine.connect() as conn:
        conn.exec_driver_sql(sql)
    engine.dispose()


def run_one(strategy: str, db: str, url: str, tests: int) -> float | None:
    with tempfile.TemporaryDirectory(prefix="sqlsandbox-bench-tc-") as tmp:
        folder = Path(tmp)
        write_project(folder, tests, strategy, url)
        env = dict(os.environ, BENCH_OUT=str(folder / "timing.json"))
        env.pop("SQLSANDBOX_URL", None)
        args = [sys.executable, "-m", "pytest", "-q", "-p", "no:randomly", "-p", "no:cacheprovider"]
        own_db = strategy == "truncate" and db != "sqlite"
        if strategy == "truncate":
            args += ["-p", "no:sqlsandbox"]
            env["APP_DATABASE_URL"] = url if db != "sqlite" else f"sqlite:///{folder / 'bench.db'}"
            if own_db:
                quote = '"' if db == "pg" else "`"
                admin(url, f"DROP DATABASE IF EXISTS {quote}bench_tc{quote}")
                admin(url, f"CREATE DATABASE {quote}bench_tc{quote}")
        try:
            done = subprocess.run(args, cwd=folder, env=env, capture_output=True, text=True)
        finally:
            if own_db:
                quote = '"' if db == "pg" else "`"
                admin(url, f"DROP DATABASE IF EXISTS {quote}bench_tc{quote}")
        timing = folder / "timing.json"
        if done.returncode != 0 or not timing.exists():
            print(
                f"  {strategy} on {db} FAILED:\n"
                + textwrap.indent(done.stdout[-2000:] + done.stderr[-1000:], "    ")
            )
            return None
        marks = json.loads(timing.read_text())
        return float(marks["end"] - marks["start"]) / int(marks["n"])


def _median(values: list[float | None]) -> float | None:
    done = sorted(v for v in values if v is not None)
    return done[len(done) // 2] if len(done) == len(values) and done else None


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tests", type=int, default=100)
    parser.add_argument("--repeat", type=int, default=3, help="runs per cell; the median is reported")
    parser.add_argument("--only", nargs="*", default=list(DATABASES), choices=list(DATABASES))
    args = parser.parse_args()
    rows = []
    for db in args.only:
        url = DATABASES[db]
        if not url.startswith("sqlite") and not reachable(url):
            print(f"NOTE: {db} is not reachable at {url}: left out")
            continue
        runs: dict[str, list[float | None]] = {strategy: [] for strategy in STRATEGIES}
        for _ in range(args.repeat):  # interleaved, so that a busy moment does not hit one column only
            for strategy in STRATEGIES:
                runs[strategy].append(run_one(strategy, db, url, args.tests))
        per_test = {strategy: _median(values) for strategy, values in runs.items()}
        rows.append({"database": db, "tests": args.tests, "per_test_s": per_test})
    lines = [
        "| database | sqlsandbox | committed=True | truncate "
        "| committed / sqlsandbox | truncate / sqlsandbox |",
        "|---|---|---|---|---|---|",
    ]
    for row in rows:
        t = row["per_test_s"]

        def ms(v: float | None) -> str:
            return f"{v * 1000:.2f} ms" if v is not None else "failed"

        def ratio(a: float | None, b: float | None) -> str:
            return f"{a / b:.2f}x" if a is not None and b else "n/a"

        lines.append(
            f"| {row['database']} | {ms(t['sqlsandbox'])} | {ms(t['committed'])} | {ms(t['truncate'])} | "
            f"{ratio(t['committed'], t['sqlsandbox'])} | {ratio(t['truncate'], t['sqlsandbox'])} |"
        )
    table = "\n".join(lines)
    print("\nTestClient + def routes, wall time per test (3 requests + 4 statements each):\n" + table)
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "testclient.json").write_text(json.dumps(rows, indent=2) + "\n")
    (RESULTS / "testclient.md").write_text(
        "# TestClient + FastAPI `def` routes\n\nWall time per test, from the first set-up to the last "
        f"tear-down divided by the tests ({args.tests} per run, median of {args.repeat} runs); "
        f"`benchmarks/testclient.py`.\n\n{table}\n"
    )
    return 0 if all(v is not None for row in rows for v in row["per_test_s"].values()) else 1


if __name__ == "__main__":
    sys.exit(main())
