"""The schema template: built once, reused by later runs and xdist workers, rebuilt when what built it
changes; and the clean-up of runs killed midway. Inner runs use the server the suite runs against."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import psycopg  # noqa: F401  (imported here, not first inside an inner run that pytester unloads)
import pytest
from sqlalchemy import create_engine, event, text
from sqlalchemy.engine import URL, Connection, Engine, make_url

from sqlsandbox import dialects, drivers, embedded, marks, templates
from sqlsandbox.errors import NotOurDatabaseError
from tests import namespaces, servers

pytestmark = [
    pytest.mark.filterwarnings("ignore::pytest.PytestAssertRewriteWarning"),
    pytest.mark.sqlsandbox_allow_any_database,
]

# A schema of its own per project (the index name): identical schemas share a template across projects.
MODELS = """
from sqlalchemy import Index, String
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

class Base(DeclarativeBase):
    pass

class Item(Base):
    __tablename__ = "items"
    __table_args__ = (Index("ix_items_TAG", "name"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(20))
"""

TESTS = """
from sqlalchemy import inspect, text

def test_schema(db_connection):
    columns = {c["name"] for c in inspect(db_connection).get_columns("items")}
    print("COLUMNS", sorted(columns))
    db_connection.execute(text("INSERT INTO items (id, name) VALUES (1, 'x')"))
    assert db_connection.execute(text("SELECT count(*) FROM items")).scalar() == 1
"""


def _server() -> str | None:
    return os.environ.get("SQLSANDBOX_URL") or None


@pytest.fixture
def unique_url(monkeypatch: pytest.MonkeyPatch) -> Iterator[URL]:
    """The suite's server with a database name of its own, so the templates of the inner runs are their
    own even when other runs of this suite share the server; they are dropped afterwards."""
    server = _server()
    monkeypatch.delenv("SQLSANDBOX_URL", raising=False)  # inner runs get the URL from their ini file
    tag = f"tpl{uuid.uuid4().hex[:8]}"
    url = make_url(server).set(database=tag) if server else make_url(f"sqlite:///{tag}.db")
    yield url
    if server and not embedded.is_embedded(url):  # an embedded server is gone with its templates
        prov = dialects.provisioner_for(url)
        for name in _templates(url):
            prov.drop(url.set(database=name))


@pytest.fixture
def project(pytester: pytest.Pytester, unique_url: URL) -> pytest.Pytester:
    pytester.makepyfile(appmodels=MODELS.replace("TAG", str(unique_url.database)[:10]), test_schema=TESTS)
    pytester.makeini(
        f"""
        [pytest]
        pythonpath = .
        asyncio_default_fixture_loop_scope = function
        sqlsandbox_metadata = appmodels:Base
        sqlsandbox_url = {unique_url.render_as_string(hide_password=False)}
        """
    )
    return pytester


def _templates(url: URL) -> list[str]:
    """The kept templates of this project on the server (databases named sqlsandbox_tpl_...)."""
    prov = dialects.provisioner_for(url)
    base = dialects.base_name(url)

    def names(conn: Connection) -> list[str]:
        found = prov._marked(conn, dialects.naming.like_prefix(dialects.naming.TEMPLATE_PREFIX[:-1]))  # type: ignore[attr-defined]
        return [n for n, mark in found if mark.is_kept_template and mark.base == base]

    return dialects.run_admin(prov._admin_url(), names)  # type: ignore[attr-defined]


def _note(result: pytest.RunResult) -> str:
    lines = [line for line in result.outlines if line.startswith("Test database ")]
    assert len(lines) == 1, result.outlines
    return lines[0]


def test_second_run_clones_the_template(project: pytest.Pytester) -> None:
    first = project.runpytest("-p", "no:randomly")
    first.assert_outcomes(passed=1)
    assert "schema built in" in _note(first) and "kept as template" in _note(first)

    second = project.runpytest("-p", "no:randomly")
    second.assert_outcomes(passed=1)  # the first run's row is not in the template: the count is 1 again
    assert "schema cloned from template" in _note(second)


def test_a_changed_model_rebuilds_the_template(project: pytest.Pytester) -> None:
    project.runpytest().assert_outcomes(passed=1)
    models = (project.path / "appmodels.py").read_text()
    project.makepyfile(
        appmodels=models + "\n    colour: Mapped[str] = mapped_column(String(20), nullable=True)\n"
    )
    result = project.runpytest("-s")
    result.assert_outcomes(passed=1)
    assert "schema built in" in _note(result)
    assert "COLUMNS ['colour', 'id', 'name']" in str(result.stdout)


def test_rebuild_option_builds_afresh(project: pytest.Pytester) -> None:
    project.runpytest().assert_outcomes(passed=1)
    result = project.runpytest("--sqlsandbox-rebuild", "test_schema.py")  # a bare flag: the path stays a path
    result.assert_outcomes(passed=1)
    assert "schema built in" in _note(result)
    again = project.runpytest()
    assert "schema cloned from template" in _note(again)  # the rebuilt one is kept for the next runs


def test_rebuild_from_the_environment_and_the_ini_file(
    project: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    project.runpytest().assert_outcomes(passed=1)
    monkeypatch.setenv("SQLSANDBOX_REBUILD", "1")
    assert "schema built in" in _note(project.runpytest())
    monkeypatch.delenv("SQLSANDBOX_REBUILD")
    assert "schema cloned from template" in _note(project.runpytest())
    assert "schema built in" in _note(project.runpytest("-o", "sqlsandbox_rebuild=true"))  # never reuse


def test_xdist_workers_build_the_template_once(project: pytest.Pytester, unique_url: URL) -> None:
    if embedded.is_embedded(unique_url):
        pytest.skip("embedded PostgreSQL: each worker has a server of its own, so a template of its own")
    project.makepyfile(
        test_notes="""
import pytest

@pytest.mark.parametrize("n", range(4))
def test_note(db_session, request, tmp_path_factory, n):
    from sqlsandbox.plugin import RUN
    run = request.config.stash[RUN]
    folder = request.config.rootpath / "notes"
    folder.mkdir(exist_ok=True)
    (folder / run.worker).write_text(run.schema_note)
"""
    )
    result = project.runpytest_subprocess("-n", "2", "-p", "no:randomly", "--sqlsandbox-rebuild")
    result.assert_outcomes(passed=5)
    notes = [p.read_text() for p in Path(project.path).rglob("notes/gw*")]
    assert len(notes) == 2, notes
    assert sorted(note.split(" ", 2)[1] for note in notes) == ["built", "cloned"], notes


def test_a_changed_migration_rebuilds_the_template(pytester: pytest.Pytester, unique_url: URL) -> None:
    _alembic_project(pytester, unique_url, MIGRATION.format(seed="one", tag=unique_url.database))
    pytester.makepyfile(
        """
        from sqlalchemy import text

        def test_seed(db_connection):
            print("SEED", db_connection.execute(text("SELECT name FROM widgets")).scalars().all())
        """
    )
    first = pytester.runpytest("-s")
    assert "schema built in" in _note(first)
    assert "SEED ['one']" in str(first.stdout)
    same = pytester.runpytest("-s")
    assert "schema cloned from template" in _note(same)
    assert "SEED ['one']" in str(same.stdout)
    (pytester.path / "migrations" / "versions" / "0001.py").write_text(
        MIGRATION.format(seed="second", tag=unique_url.database)
    )
    changed = pytester.runpytest("-s")
    assert "schema built in" in _note(changed)
    assert "SEED ['second']" in str(changed.stdout)


ENV_PY = """
from alembic import context
config = context.config
connection = config.attributes["connection"]
context.configure(connection=connection, target_metadata=None)
with context.begin_transaction():
    context.run_migrations()
"""

MIGRATION = """# {tag}
import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None

def upgrade():
    op.create_table("widgets", sa.Column("id", sa.Integer, primary_key=True), sa.Column("name", sa.String(20)))
    op.execute("INSERT INTO widgets (name) VALUES ('{seed}')")
"""


def _alembic_project(pytester: pytest.Pytester, url: URL, migration: str) -> None:
    """An inner project whose schema is one alembic migration, run against url."""
    (pytester.path / "migrations" / "versions").mkdir(parents=True)
    (pytester.path / "migrations" / "env.py").write_text(ENV_PY)
    (pytester.path / "migrations" / "versions" / "0001.py").write_text(migration)
    (pytester.path / "alembic.ini").write_text("[alembic]\nscript_location = migrations\n")
    pytester.makeini(
        "[pytest]\nsqlsandbox_alembic = alembic.ini\nasyncio_default_fixture_loop_scope = function\n"
        f"sqlsandbox_url = {url.render_as_string(hide_password=False)}\n"
    )


def _database_exists(url: URL, name: str) -> bool:
    if drivers.family(url) == "sqlite":
        return Path(name).exists()
    admin = dialects.provisioner_for(url)._admin_url()  # type: ignore[attr-defined]
    engine = create_engine(drivers.sync_url(admin), isolation_level="AUTOCOMMIT")
    query = (
        "SELECT 1 FROM pg_database WHERE datname = :n"
        if engine.dialect.name == "postgresql"
        else "SELECT 1 FROM information_schema.SCHEMATA WHERE SCHEMA_NAME = :n"
    )
    try:
        with engine.connect() as conn:
            return conn.execute(text(query), {"n": name}).first() is not None
    finally:
        engine.dispose()


def test_a_run_killed_midway_is_cleaned_up_by_the_next(project: pytest.Pytester, unique_url: URL) -> None:
    if embedded.is_embedded(unique_url):
        pytest.skip("embedded PostgreSQL: test_embedded kills a run and checks its server is stopped")
    project.makepyfile(
        test_schema="""
import sys

def test_hangs(sandbox, db_connection):
    from sqlalchemy import text
    db_connection.execute(text("INSERT INTO items (id, name) VALUES (1, 'x')"))
    print("DATABASE", sandbox.db.url.database, flush=True)
    sys.stdin.readline()  # blocks until the outer test kills this run
"""
    )
    env = {**os.environ, "PYTHONPATH": str(project.path)}
    env.pop("SQLSANDBOX_URL", None)
    killed = subprocess.Popen(
        [sys.executable, "-m", "pytest", "-s", "-p", "no:randomly", "-p", "no:cacheprovider"],
        cwd=project.path,
        env=env,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert killed.stdout is not None
        database = ""
        for line in killed.stdout:  # the inner test says when it is inside its sandbox
            if "DATABASE " in line:
                database = line.split("DATABASE ", 1)[1].strip()
                break
        assert database, "the inner run never reached its test"
        killed.send_signal(signal.SIGKILL)
        killed.wait(timeout=30)
    finally:
        if killed.poll() is None:
            killed.kill()
    assert _database_exists(unique_url, database)  # left behind

    project.makepyfile(test_schema=TESTS)
    result = project.runpytest("-p", "no:randomly")
    result.assert_outcomes(passed=1)
    if "Cleaned up after killed runs" not in str(result.stdout):
        # under xdist another worker's inner run may have cleaned up first; alone, this run must have
        assert os.environ.get("PYTEST_XDIST_WORKER"), str(result.stdout)
    assert not _database_exists(unique_url, database)


def test_a_template_whose_build_was_killed_is_removed(unique_url: URL) -> None:
    """A template left half-built by a killed run (marked 'building' by a dead process) is dropped by the
    next run that looks for that template, and never cloned."""
    if drivers.family(unique_url) == "sqlite" or embedded.is_embedded(unique_url):
        pytest.skip("server databases only (a SQLite template is renamed into place only once built)")
    prov = dialects.provisioner_for(unique_url)
    key = uuid.uuid4().hex
    name = dialects.naming.template_name(key, "deadrun")
    base = dialects.base_name(unique_url)
    mark = marks.Mark(1073741824, marks.host(), 0, key[:16], base, "building", "deadrun")

    servers.plant(unique_url, name, mark)
    assert _database_exists(unique_url, name)
    assert prov.find_template(key) is None  # not ready: never used
    assert not _database_exists(unique_url, name)  # and its builder is dead: removed
    # under xdist another worker's run may have removed it first; alone, this run must have
    assert name in prov.removed_stale or os.environ.get("PYTEST_XDIST_WORKER")


def _server_template(url: URL, key: str, run_id: str) -> URL:
    """A ready template with two tables and rows, built as a run builds one."""
    prov = dialects.provisioner_for(url)
    template = prov.create_template(key, run_id)
    engine = create_engine(drivers.sync_url(template))
    with engine.begin() as conn:
        conn.exec_driver_sql("CREATE TABLE a (id INTEGER PRIMARY KEY)")
        conn.exec_driver_sql("CREATE TABLE b (id INTEGER PRIMARY KEY)")
        conn.exec_driver_sql("INSERT INTO a VALUES (1)")
        conn.exec_driver_sql("INSERT INTO b VALUES (1)")
    engine.dispose()
    return prov.seal_template(template, key, run_id)


@contextlib.contextmanager
def _when(statements: tuple[str, ...], action: Callable[[], None]) -> Iterator[list[str]]:
    """Runs action once, just before the first of the statements is sent; yields what was sent then."""
    done: list[str] = []

    def listener(conn: Connection, cursor: object, statement: str, *args: object) -> None:
        if statement.startswith(statements) and not done:
            done.append(statement)
            action()

    event.listen(Engine, "before_cursor_execute", listener)
    try:
        yield done
    finally:
        event.remove(Engine, "before_cursor_execute", listener)


@pytest.mark.parametrize(
    "moment",
    [
        ('CREATE DATABASE "{target}" TEMPLATE', "INSERT INTO `{target}`.`a`"),  # before any rows
        ("INSERT INTO `{target}`.`b`",),  # MariaDB: with table a copied already
        ("USE `{target}`",),  # MariaDB: before it lists the template's tables, so the copy would be empty
    ],
    ids=["before-the-rows", "between-tables", "before-listing"],
)
def test_a_template_dropped_mid_copy_is_never_half_cloned(unique_url: URL, moment: tuple[str, ...]) -> None:
    """Another run (say, on another machine sharing the server) builds a newer template of the same key and
    drops this one as surplus while this run copies it: the half copy is dropped and TemplateGone sends the
    caller to look again; never a driver error, never a test database with tables missing."""
    if drivers.family(unique_url) == "sqlite" or embedded.is_embedded(unique_url):
        pytest.skip("server databases only (a SQLite template is copied as one file)")
    if drivers.family(unique_url) == "postgresql" and len(moment) == 1:
        pytest.skip("a PostgreSQL clone is one statement")
    prov = dialects.provisioner_for(unique_url)
    key = uuid.uuid4().hex
    template = _server_template(unique_url, key, "mine")
    newer = prov.create_template(key, "theirs")
    target = f"{unique_url.database}_copy"
    # what the other run does once its template is built: seal it, dropping older ones of the same key
    statements = tuple(m.format(target=target) for m in moment)
    try:
        with (
            _when(statements, lambda: prov.seal_template(newer, key, "theirs")) as done,
            pytest.raises(dialects.TemplateGone),
        ):
            prov.create(target, template)
    finally:
        prov.drop(unique_url.set(database=target))
    assert done, "the copy never reached the moment the template is dropped"
    assert not _database_exists(unique_url, str(template.database))  # it was dropped
    assert not _database_exists(unique_url, target)  # and no half copy is left behind


def test_a_copy_that_reads_a_template_half_dropped_is_not_kept(unique_url: URL) -> None:
    """MariaDB drops a database table by table: a copy may list the tables of a template whose data tables
    are gone but whose marker table is not yet. The dropping run first takes the template's 'ready' away,
    so the copy (empty here) is not taken for the template's."""
    if drivers.family(unique_url) != "mysql":
        pytest.skip("MariaDB/MySQL copy tables one by one")
    prov = dialects.provisioner_for(unique_url)
    template = _server_template(unique_url, uuid.uuid4().hex, "mine")
    name = str(template.database)
    target = f"{unique_url.database}_copy"

    def half_dropped() -> None:  # _drop_surplus's first step, and the drop's first tables
        def work(conn: Connection) -> None:
            conn.exec_driver_sql(f"UPDATE `{name}`.`{marks.MARKER_TABLE}` SET note = 'x; being dropped'")
            conn.exec_driver_sql(f"DROP TABLE `{name}`.`a`, `{name}`.`b`")

        dialects.run_admin(prov._admin_url(), work)  # type: ignore[attr-defined]

    try:
        with _when((f"USE `{target}`",), half_dropped), pytest.raises(dialects.TemplateGone):
            prov.create(target, template)
    finally:
        prov.drop(unique_url.set(database=target))
        prov.drop(template)
    assert not _database_exists(unique_url, target)


def test_a_copy_that_fails_leaves_no_database(unique_url: URL) -> None:
    """A copy that fails for another reason shows its error, and leaves no half-made test database."""
    if drivers.family(unique_url) != "mysql":
        pytest.skip("MariaDB/MySQL copy tables one by one")
    prov = dialects.provisioner_for(unique_url)
    template = _server_template(unique_url, uuid.uuid4().hex, "mine")
    target = f"{unique_url.database}_copy"

    def fail() -> None:
        raise RuntimeError("the connection broke")

    with (
        _when((f"INSERT INTO `{target}`.`b`",), fail),
        pytest.raises(RuntimeError, match="the connection broke"),
    ):
        prov.create(target, template)
    assert not _database_exists(unique_url, target)
    assert _database_exists(unique_url, str(template.database))  # the template is fine and stays


def _dead_pid() -> int:
    pid = 2**30  # above any pid_max (at most 2**22): no process has it
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)
    return pid


def test_only_this_hosts_dead_processes_leave_stale_databases() -> None:
    """The mark's host is the host name plus, on Linux, the pid namespace: a pid is only judged where it
    means the same process."""
    here, dead = marks.host(), _dead_pid()
    assert marks.is_stale(f"sqlsandbox: created by pid {dead} on {here} at 0")
    assert not marks.is_stale(f"sqlsandbox: created by pid {os.getpid()} on {here} at 0")  # this run
    assert not marks.is_stale(f"sqlsandbox: created by pid {os.getppid()} on {here} at 0")  # alive
    assert not marks.is_stale(f"sqlsandbox: created by pid {dead} on elsewhere at 0")  # another host
    ready = f"template {'k' * 16} of test_app; ready; run r"
    assert not marks.is_stale(f"sqlsandbox: created by pid {dead} on {here} at 0; {ready}")
    if sys.platform == "linux":
        assert here.startswith(f"{socket.gethostname()}~")
        other_container = f"{socket.gethostname()}~1"  # same host name, another pid namespace
        assert not marks.is_stale(f"sqlsandbox: created by pid {dead} on {other_container} at 0")
        # made before marks named the pid namespace: judged by host name alone, as it was then
        assert marks.is_stale(f"sqlsandbox: created by pid {dead} on {socket.gethostname()} at 0")


NAMESPACED = """
import os
import sys
from sqlalchemy.engine import make_url
from sqlsandbox import dialects, drivers, marks, templates

url = make_url(sys.argv[1])
dialects.provisioner_for(url).create(str(url.database))
print(os.getpid(), marks.host(), flush=True)
sys.stdin.readline()  # lives until the test is done
"""


def test_a_live_run_in_another_pid_namespace_is_never_judged_dead(unique_url: URL, tmp_path: Path) -> None:
    """Two containers sharing a host name and a database server but not their pids: a run in one must not
    drop the other's live test database because that pid number is free in its own namespace."""
    if drivers.family(unique_url) == "sqlite" or embedded.is_embedded(unique_url):
        pytest.skip("server databases only")
    namespaces.require()
    free = _free_pid()
    script = tmp_path / "namespaced.py"
    script.write_text(NAMESPACED)
    theirs = unique_url.set(database=f"test_{unique_url.database}_theirs")
    # in a new pid namespace, the run gets pid `free`, which no process of this namespace has
    # ("; true": a shell that execs its last command would give python pid 1 instead)
    command = f"echo {free - 1} > /proc/sys/kernel/ns_last_pid && {sys.executable} {script} '{theirs}'; true"
    inner, line = namespaces.start(["sh", "-c", command])
    try:
        their_pid, their_host = int(line[0]), line[1]
        assert their_pid == free  # a pid that, on this side, no process has
        assert their_host != marks.host() and their_host.split("~")[0] == socket.gethostname()
        # so by host name and pid alone (the mark before namespaces), it would be judged dead here
        assert marks.is_stale(f"sqlsandbox: created by pid {their_pid} on {socket.gethostname()} at 0")
        prov = dialects.provisioner_for(unique_url)
        prov.create(f"test_{unique_url.database}_ours")  # sweeps dead runs' databases first
        assert _database_exists(unique_url, str(theirs.database))  # alive in its namespace: kept
        assert str(theirs.database) not in prov.removed_stale
        prov.drop(unique_url.set(database=f"test_{unique_url.database}_ours"))
    finally:
        if inner.poll() is None:
            inner.communicate(input="\n", timeout=30)
        dialects.provisioner_for(unique_url).drop(theirs)


def _free_pid() -> int:
    """A pid no process of this namespace has now (pids are handed out upwards from the last one)."""
    for pid in range(int(Path("/proc/sys/kernel/pid_max").read_text()) - 100, 300, -1):
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return pid
        except PermissionError:
            continue
    raise AssertionError("no free pid")


KEY_SCRIPT = """
from sqlalchemy import Column, ForeignKey, Integer, MetaData, Table, UniqueConstraint
from sqlalchemy.engine import make_url
from sqlsandbox.templates import SchemaSource

metadata = MetaData()
Table("a", metadata, Column("id", Integer, primary_key=True))
Table("b", metadata, Column("id", Integer, primary_key=True))
Table(
    "c", metadata, Column("id", Integer, primary_key=True),
    Column("a_id", ForeignKey("a.id"), index=True), Column("b_id", ForeignKey("b.id"), index=True),
    Column("a2_id", ForeignKey("a.id"), index=True), Column("n", Integer, index=True),
    UniqueConstraint("a_id", "b_id"), UniqueConstraint("b_id", "a2_id"),
)
print(SchemaSource([metadata]).key(make_url("postgresql://x@y/z")))
"""


def test_the_key_is_the_same_in_every_process() -> None:
    """SQLAlchemy emits a table's indexes in set order, which string-hash randomisation changes from
    process to process: the key must not (or every run would rebuild)."""
    keys = {
        subprocess.run(
            [sys.executable, "-c", KEY_SCRIPT],
            env={**os.environ, "PYTHONHASHSEED": str(seed)},
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        for seed in range(6)
    }
    assert len(keys) == 1, keys


GENERATED_MIGRATION = """# {tag}
import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None

def upgrade():
    op.create_table(
        "order_lines",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("qty", sa.Integer),
        sa.Column("price", sa.Integer),
        sa.Column("total", sa.Integer, sa.Computed("qty * price", persisted=True)),
    )
    op.execute("INSERT INTO order_lines (id, qty, price) VALUES (1, 3, 4)")
"""


def test_generated_columns_survive_the_clone(pytester: pytest.Pytester, unique_url: URL) -> None:
    """The template holds a row with a generated column: the MariaDB/MySQL copy leaves that column to the
    server (MySQL refuses values for it; MariaDB warns); every database has it computed in the clone."""
    _alembic_project(pytester, unique_url, GENERATED_MIGRATION.format(tag=unique_url.database))
    pytester.makepyfile(
        """
        from sqlalchemy import text

        def test_total(db_connection):
            db_connection.execute(text("INSERT INTO order_lines (id, qty, price) VALUES (2, 5, 6)"))
            totals = db_connection.execute(text("SELECT total FROM order_lines ORDER BY id")).scalars().all()
            assert totals == [12, 30]
        """
    )
    pytester.runpytest().assert_outcomes(passed=1)
    second = pytester.runpytest()
    second.assert_outcomes(passed=1)
    assert "schema cloned from template" in _note(second)


VIEW_MIGRATION = """# {tag}
from pathlib import Path
import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None

def upgrade():
    with Path("builds.txt").open("a") as builds:  # counts the schema builds
        builds.write("built\\n")
    op.create_table("orders", sa.Column("id", sa.Integer, primary_key=True), sa.Column("qty", sa.Integer))
    op.execute("CREATE VIEW big_orders AS SELECT id FROM orders WHERE qty > 10")
"""


def test_a_schema_with_a_view_is_built_once_per_run_where_it_cannot_be_copied(
    pytester: pytest.Pytester, unique_url: URL
) -> None:
    """PostgreSQL and SQLite clone views with the rest. A MariaDB/MySQL template copies tables only: the
    first run finds that out (building twice), and later runs build the schema once, in their test
    database, and say why."""
    _alembic_project(pytester, unique_url, VIEW_MIGRATION.format(tag=unique_url.database))
    pytester.makepyfile(
        """
        from sqlalchemy import text

        def test_view(db_connection):
            db_connection.execute(text("INSERT INTO orders (id, qty) VALUES (1, 5), (2, 50)"))
            assert db_connection.execute(text("SELECT id FROM big_orders")).scalars().all() == [2]
        """
    )
    builds = pytester.path / "builds.txt"
    pytester.runpytest().assert_outcomes(passed=1)
    first = len(builds.read_text().splitlines())
    copies_views = drivers.family(unique_url) != "mysql"
    assert first == (1 if copies_views else 2)
    for _ in range(2):
        again = pytester.runpytest()
        again.assert_outcomes(passed=1)
        now = len(builds.read_text().splitlines())
        if copies_views:
            assert now == first
            assert "schema cloned from template" in _note(again)
        else:
            assert now == first + 1  # once, not twice
            assert "for every run: it has views, triggers or routines" in _note(again)
        first = now


def test_a_database_not_ours_with_a_templates_name_is_refused(unique_url: URL) -> None:
    if drivers.family(unique_url) != "postgresql" or embedded.is_embedded(unique_url):
        pytest.skip("PostgreSQL server only")
    prov = dialects.provisioner_for(unique_url)
    key, run_id = uuid.uuid4().hex, "theirs"
    name = dialects.naming.template_name(key, run_id)
    dialects.run_admin(prov._admin_url(), lambda conn: conn.exec_driver_sql(f'CREATE DATABASE "{name}"'))  # type: ignore[attr-defined]
    try:
        with pytest.raises(NotOurDatabaseError):
            prov.create_template(key, run_id)
        assert _database_exists(unique_url, name)  # untouched
    finally:
        dialects.run_admin(prov._admin_url(), lambda conn: conn.exec_driver_sql(f'DROP DATABASE "{name}"'))  # type: ignore[attr-defined]


def _ready(key: str, base: str, at: int, run: str = "r") -> marks.Mark:
    return marks.Mark(1, "h", at, key, base, "ready", run)


def test_which_templates_are_kept_and_which_is_cloned() -> None:
    """Per database name the newest KEEP_TEMPLATES stay (the one just built among them); older ones of the
    same key always go; another project's are never counted. The clone source is this run's, else the
    newest."""
    n = templates.KEEP + 4
    ours = [(f"t{i}", _ready(f"k{i}", "test_app", at=i)) for i in range(n)]
    theirs = [("x", _ready("kx", "test_other", at=0))]
    same_key_older = [("old", _ready(f"k{n - 1}", "test_app", at=-5))]
    surplus = templates.surplus(ours + theirs + same_key_older, "test_app", f"t{n - 1}", f"k{n - 1}")
    kept = {name for name, _ in ours} - set(surplus)
    assert kept == {
        f"t{i}" for i in range(n - templates.KEEP, n)
    }  # the newest KEEP, the one just built among them
    assert "old" in surplus and "x" not in surplus
    building = marks.Mark(1, "h", 9, "k", "b", "building", "r")
    marked = [("a", _ready("k", "b", at=5, run="mine")), ("b", _ready("k", "b", at=9)), ("c", building)]
    assert templates.pick(marked, "mine") == ("a", marked[0][1])
    assert templates.pick(marked, "other") == ("b", marked[1][1])
    assert templates.pick([("c", building)], "") is None


def _kept_templates(url: URL, cache: Path) -> dict[str, marks.Mark]:
    """This project's built templates, as --sqlsandbox-clean lists them (SQLite: <cache>/<key>.db)."""
    listed = dialects.provisioner_for(url, cache).project_databases()
    return {name: mark for name, mark in listed if mark.is_kept_template}


def _last_used(url: URL, name: str, mark: marks.Mark, days: float) -> None:
    """Make a template's mark say it was last cloned `days` ago."""
    older = mark.with_time(time.time() - days * 86400)
    if drivers.family(url) == "sqlite":
        Path(name).with_suffix(".mark").write_text(str(older))
    else:
        prov = dialects.provisioner_for(url)
        dialects.run_admin(prov._admin_url(), lambda conn: prov._set_mark(conn, name, older))  # type: ignore[attr-defined]


def test_templates_unused_for_days_are_dropped_on_demand(project: pytest.Pytester, unique_url: URL) -> None:
    """A clone records the template's use; --sqlsandbox-clean-templates=DAYS drops those no run cloned for
    that long (and runs nothing else), =all every one; the next run builds it again."""
    if embedded.is_embedded(unique_url):
        pytest.skip("the embedded server has nothing to clean")
    cache = project.path / ".pytest_cache" / "d" / "sqlsandbox"
    project.runpytest("-p", "no:randomly").assert_outcomes(passed=1)  # builds it
    [(name, built)] = _kept_templates(unique_url, cache).items()
    _last_used(unique_url, name, built, days=3)

    project.runpytest("-p", "no:randomly").assert_outcomes(passed=1)  # clones it: used now
    used = _kept_templates(unique_url, cache)[name]
    assert time.time() - used.at < 600, used
    _last_used(unique_url, name, used, days=3)

    young = project.runpytest("--sqlsandbox-clean-templates=5")
    assert young.ret == 0
    young.stdout.fnmatch_lines(
        [
            f"  kept     {name}  a schema template last used 3 days ago: later runs clone it "
            "(--sqlsandbox-clean-templates=5)",
            "0 dropped, 1 kept.",
        ]
    )
    assert "passed" not in str(young.stdout)  # no tests run
    old = project.runpytest("--sqlsandbox-clean-templates=2.5")
    old.stdout.fnmatch_lines(
        [f"  dropped  {name}  a schema template last used 3 days ago", "1 dropped, 0 kept."]
    )
    assert not _kept_templates(unique_url, cache)

    rebuilt = project.runpytest("-p", "no:randomly")
    rebuilt.assert_outcomes(passed=1)
    assert "schema built in" in _note(rebuilt)
    [again] = _kept_templates(unique_url, cache)
    every = project.runpytest("--sqlsandbox-clean-templates=all")  # just used, and dropped all the same
    every.stdout.fnmatch_lines([f"  dropped  {again}  a schema template last used * ago", "1 dropped, 0 kept."])
    assert not _kept_templates(unique_url, cache)


def test_a_template_belongs_to_one_project() -> None:
    """Two projects on one server with the same (here: no) schema never share, keep or clean up each
    other's template: the project's name is part of the key."""
    from sqlalchemy import MetaData
    from sqlalchemy.engine import make_url

    from sqlsandbox.templates import SchemaSource

    url = make_url("postgresql://x@y/z")
    empty = [MetaData()]
    assert SchemaSource(empty, project="shop").key(url) != SchemaSource(empty, project="blog").key(url)
    assert SchemaSource(empty, project="shop").key(url) == SchemaSource(empty, project="shop").key(url)
