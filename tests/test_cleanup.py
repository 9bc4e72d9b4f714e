"""`pytest --sqlsandbox-clean`: what runs killed in other hosts or containers left is dropped on demand, by
age, when nobody is connected; live runs, templates, other projects and databases not ours stay."""

from __future__ import annotations

import dataclasses
import hashlib
import os
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg  # noqa: F401  (imported here, not first inside an inner run that pytester unloads)
import pytest
from sqlalchemy import create_engine
from sqlalchemy.engine import URL, Connection, make_url

from sqlsandbox import cleanup, dialects, drivers, embedded, marks
from tests import namespaces, servers

pytestmark = pytest.mark.sqlsandbox_allow_any_database

DEAD = 2**30  # above any pid_max (at most 2**22): no process has it
DAY = 86400.0


def _mark(pid: int, where: str, at: float, template: str = "") -> marks.Mark:
    mark = f"sqlsandbox: created by pid {pid} on {where} at {at:.0f}"
    if template == "kept":
        mark = mark.replace(": created", ": kept; created")
    elif template:
        mark = f"{mark}; template {template}"
    parsed = marks.Mark.parse(mark)
    assert parsed is not None
    return parsed


@pytest.mark.parametrize(
    ("pid", "where", "age", "template", "drop", "why"),
    [
        (DEAD, "ci-7~4026531836", 3 * DAY, "", True, "made on ci-7~4026531836 3 days ago"),
        (DEAD, "ci-7~4026531836", 3600, "", False, "made on ci-7~4026531836 60 min ago: its run may still"),
        (DEAD, "HERE", 60, "", True, f"made here by pid {DEAD}, which is gone"),
        (os.getppid(), "HERE", 3 * DAY, "", False, "which is still running"),
        (DEAD, "ci-7", 3 * DAY, "k of test_x; ready; run r", False, "a schema template: later runs clone it"),
        (DEAD, "ci-7", 3 * DAY, "k of test_x; uncopyable; run r", False, "a schema template"),
        (DEAD, "ci-7", 3 * DAY, "k of test_x; building; run r", True, "made on ci-7 3 days ago"),
        # kept as the user asked: never by age, nor as a dead pid's, here or elsewhere
        (DEAD, "HERE", 3 * DAY, "kept", False, "kept as the user asked (sqlsandbox_keep_db), made on"),
        (DEAD, "ci-7", 3 * DAY, "kept", False, "3 days ago: --sqlsandbox-clean-kept=db drops it"),
    ],
)
def test_judged_by_mark(pid: int, where: str, age: float, template: str, drop: bool, why: str) -> None:
    where = marks.host() if where == "HERE" else where
    now = time.time()
    verdict = cleanup.judge("db", _mark(pid, where, now - age, template), older_than=DAY, now=now)
    assert verdict.drop is drop
    assert why in verdict.why, verdict.why


def test_marks_of_every_version_parse_and_a_kept_one_is_never_stale() -> None:
    """Marks written before (a test database, a template) read as they did; a kept database's round-trips,
    and is not stale though its pid is gone on this host. It starts 'kept; ' so that earlier versions,
    which read from 'created by' on, see no mark of theirs and leave it alone."""
    here = marks.host()
    old = marks.Mark.parse(f"sqlsandbox: created by pid {DEAD} on {here} at 1764590000")
    assert old == marks.Mark(DEAD, here, 1764590000.0) and old.is_stale and not old.is_kept
    ready = marks.Mark.parse("sqlsandbox: created by pid 7 on h at 5; template k of test_a; ready; run r")
    assert ready == marks.Mark(7, "h", 5.0, "k", "test_a", marks.READY, "r")
    kept = old.kept()
    assert str(kept) == f"sqlsandbox: kept; created by pid {DEAD} on {here} at 1764590000"
    assert marks.Mark.parse(str(kept)) == kept and kept.is_kept and not kept.is_kept_template
    assert not kept.is_stale and not marks.is_stale(str(kept))
    assert not str(kept).startswith("sqlsandbox: created by")  # what earlier versions match


def test_templates_and_kept_databases_go_only_when_asked() -> None:
    now = time.time()
    template = _mark(DEAD, "ci-7", now - 3 * DAY, "k of test_x; ready; run r")  # last cloned 3 days ago
    kept = _mark(DEAD, marks.host(), now - 3 * DAY, "kept")

    def verdict(mark: marks.Mark, **asked: object) -> cleanup.Verdict:
        return cleanup.judge("test_x_1", mark, older_than=DAY, now=now, **asked)  # type: ignore[arg-type]

    assert not verdict(template).drop
    assert "(last used 3 days ago)" in verdict(template).why
    young = verdict(template, templates_unused=5 * DAY)
    assert not young.drop and young.why.endswith("(--sqlsandbox-clean-templates=5)")
    assert verdict(template, templates_unused=2 * DAY) == cleanup.Verdict(
        "test_x_1", True, "a schema template last used 3 days ago"
    )
    assert verdict(template, templates_unused=cleanup.parse_days("all")).drop
    assert not verdict(kept).drop and not verdict(kept, templates_unused=0.0).drop
    assert verdict(kept, drop_kept=True).drop
    assert verdict(kept, drop_kept=frozenset({"test_x_1"})).drop
    assert not verdict(kept, drop_kept=frozenset({"test_x_2"})).drop
    assert cleanup.parse_kept(None) is False and cleanup.parse_kept("") is True
    assert cleanup.parse_kept("a, b") == frozenset({"a", "b"})


@pytest.mark.parametrize("raw", ["soon", "-1", "nan"])
def test_a_bad_template_age_is_one_clear_error(pytester: pytest.Pytester, raw: str) -> None:
    result = pytester.runpytest(f"--sqlsandbox-clean-templates={raw}")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(
        [
            f"ERROR: sqlsandbox: --sqlsandbox-clean-templates='{raw}': the limit is neither a number of days "
            "nor 'all'.",
            "Why: *",
            "Fix: *",
        ]
    )
    assert "Traceback" not in str(result.stderr)


@pytest.mark.parametrize("raw", ["soon", "-1", "nan"])
def test_a_bad_age_is_one_clear_error(pytester: pytest.Pytester, raw: str) -> None:
    result = pytester.runpytest(f"--sqlsandbox-clean={raw}")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(
        [f"ERROR: sqlsandbox: --sqlsandbox-clean='{raw}': the age limit is not a number of hours.", "Fix: *"]
    )
    assert "Traceback" not in str(result.stderr)


def test_an_unreachable_server_is_one_clear_error(pytester: pytest.Pytester) -> None:
    result = pytester.runpytest(
        "--sqlsandbox-url=postgresql+psycopg://postgres@127.0.0.1:9/app", "--sqlsandbox-clean"
    )
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["ERROR: sqlsandbox: *127.0.0.1:9*"])
    assert "Traceback" not in str(result.stderr)


def test_embedded_has_nothing_to_clean(pytester: pytest.Pytester) -> None:
    pytester.makepyfile("def test_never_runs(): raise AssertionError")
    result = pytester.runpytest("--sqlsandbox-url=postgresql+embedded:///app", "--sqlsandbox-clean")
    assert result.ret == 0
    result.stdout.fnmatch_lines(["sqlsandbox: nothing to clean for postgresql+embedded:///app: *"])
    assert "test_never_runs" not in str(result.stdout)  # no test run


# ---- on the suite's server ---------------------------------------------------------------------------


@pytest.fixture
def server_url(monkeypatch: pytest.MonkeyPatch) -> Iterator[URL]:
    raw = os.environ.get("SQLSANDBOX_URL")
    url = make_url(raw) if raw else None
    if url is None or drivers.family(url) == "sqlite" or embedded.is_embedded(url):
        pytest.skip("a database server's databases (SQLite: test_sqlite_leftovers)")
    monkeypatch.delenv("SQLSANDBOX_URL")  # inner runs get the URL from the command line
    url = url.set(database=f"cln{uuid.uuid4().hex[:8]}")  # a project of its own on the shared server
    yield url
    kept = dialects.provisioner_for(url).project_databases()  # the inner runs' templates
    servers.drop_all(url, [name for name, _ in kept if name.startswith(dialects.naming.TEMPLATE_PREFIX)])


def _template(url: URL) -> str:
    return f"sqlsandbox_tpl_{url.database}"  # the project's own, so concurrent runs of this test never clash


@pytest.fixture
def planted(server_url: URL) -> Iterator[dict[str, marks.Mark | str]]:
    base = dialects.base_name(server_url)
    now = time.time()
    planted_marks: dict[str, marks.Mark | str] = {
        f"{base}_0000a001": _mark(DEAD, "ci-7~4026531836", now - 3 * DAY),  # elsewhere, old: goes
        f"{base}_0000a002_gw1": _mark(DEAD, "ci-7~4026531836", now - 2 * 3600 - 60),  # elsewhere, young: stays
        f"{base}_0000a004": _mark(os.getpid(), marks.host(), now - 3 * DAY),  # here, alive: stays
        f"{base}_0000a005": _mark(DEAD, "ci-7~4026531836", now - 3 * DAY),  # elsewhere, old, connected
        f"{base}_0000a006": "",  # not marked by us: never listed, never touched
        f"{base}_v2_0000a007": _mark(DEAD, "ci-7", now - 3 * DAY),  # project test_<name>_v2's: not listed
        _template(server_url): _mark(DEAD, "ci-7", now - 3 * DAY, f"k of {base}; ready; run r"),
    }
    # (one made here by a dead pid is not planted: any run on this host, such as another xdist worker's,
    # may remove it first; test_judged_by_mark and test_templates cover it)
    try:
        for name, mark in planted_marks.items():
            servers.plant(server_url, name, mark or None)
        yield planted_marks
    finally:
        servers.drop_all(server_url, list(planted_marks))


def test_clean_drops_only_what_no_run_can_be_using(
    pytester: pytest.Pytester, server_url: URL, planted: dict[str, marks.Mark | str]
) -> None:
    pytester.makepyfile("def test_never_runs(): raise AssertionError")
    base = dialects.base_name(server_url)
    busy, template = f"{base}_0000a005", _template(server_url)
    engine = create_engine(drivers.sync_url(server_url.set(database=busy)))
    url_arg = f"--sqlsandbox-url={server_url.render_as_string(hide_password=False)}"
    try:
        with engine.connect() as conn:  # a run elsewhere, still connected though its mark is old
            conn.exec_driver_sql("SELECT 1")
            result = pytester.runpytest(url_arg, "--sqlsandbox-clean")
        assert result.ret == 0, str(result.stdout) + str(result.stderr)
        out = str(result.stdout)
        assert "test_never_runs" not in out and "passed" not in out and "failed" not in out
        result.stdout.fnmatch_lines(
            [f"sqlsandbox: databases of {base}'s runs on *{server_url.database}:", "1 dropped, 4 kept."]
        )
        result.stdout.fnmatch_lines_random(
            [
                f"  dropped  {base}_0000a001 * made on ci-7~4026531836 3 days ago",
                f"  kept     {base}_0000a002_gw1 * made on ci-7~4026531836 2 h ago: its run may still be going"
                " (limit 24 h)",
                f"  kept     {base}_0000a004 * made here by pid {os.getpid()}, which is still running",
                f"  kept     {base}_0000a005 * made on ci-7~4026531836 3 days ago, but * open",
                f"  kept     {template} * a schema template: later runs clone it (last used 3 days ago)",
            ]
        )
        assert f"{base}_0000a006" not in out and "_v2_" not in out
        left = servers.names(server_url)
        assert f"{base}_0000a001" not in left
        assert {f"{base}_0000a002_gw1", f"{base}_0000a004", busy, f"{base}_0000a006"} <= left
        assert {f"{base}_v2_0000a007", template} <= left

        # a limit of its own: the young one goes now; its connection closed, the busy one goes too
        engine.dispose()
        again = pytester.runpytest(url_arg, "--sqlsandbox-clean=1")
        assert again.ret == 0
        again.stdout.fnmatch_lines(["2 dropped, 2 kept."])
        assert {f"{base}_0000a002_gw1", busy}.isdisjoint(servers.names(server_url))
        assert {f"{base}_0000a004", f"{base}_0000a006", template} <= servers.names(server_url)
    finally:
        engine.dispose()


def test_what_this_user_may_not_judge_or_drop_is_kept_and_said_so(
    pytester: pytest.Pytester, server_url: URL
) -> None:
    """Run as a user with less power than the one that made the databases: on PostgreSQL, not their owner
    (the DROP fails: that database is kept and the failure is its verdict, the rest goes on); on MariaDB,
    without the PROCESS privilege (other users' connections are invisible: nothing is dropped)."""
    base = dialects.base_name(server_url)
    user = f"cln_{uuid.uuid4().hex[:8]}"
    old = _mark(DEAD, "ci-7~4026531836", time.time() - 3 * DAY)
    names = [f"{base}_0000d001", f"{base}_0000d002"]
    postgres = server_url.get_backend_name() == "postgresql"

    def grant(conn: Connection) -> None:
        if postgres:
            conn.exec_driver_sql(f"CREATE ROLE {user} LOGIN")
        else:
            conn.exec_driver_sql(f"CREATE USER '{user}'@'%%'")  # (%%: the driver's paramstyle)
            conn.exec_driver_sql(f"GRANT ALL ON `{base}\\_%%`.* TO '{user}'@'%%'")  # but not PROCESS

    def revoke(conn: Connection) -> None:
        conn.exec_driver_sql(
            f"DROP ROLE IF EXISTS {user}" if postgres else f"DROP USER IF EXISTS '{user}'@'%%'"
        )

    try:
        for name in names:
            servers.plant(server_url, name, old)
        dialects.run_admin(servers.admin(server_url), grant)
        as_user = server_url.set(username=user, password=None).render_as_string(hide_password=False)
        result = pytester.runpytest(f"--sqlsandbox-url={as_user}", "--sqlsandbox-clean")
        assert result.ret == 0, str(result.stdout) + str(result.stderr)
        why = "dropping it failed: must be owner of database *" if postgres else "*lacks the PROCESS privilege)"
        result.stdout.fnmatch_lines(
            [f"  kept     {name}  made on * 3 days ago, but {why}" for name in names] + ["0 dropped, 2 kept."]
        )
        assert set(names) <= servers.names(server_url)
    finally:
        dialects.run_admin(servers.admin(server_url), revoke)
        servers.drop_all(server_url, names)


def test_a_run_killed_in_another_container_is_left_by_runs_and_dropped_by_clean(
    pytester: pytest.Pytester, server_url: URL
) -> None:
    """A pytest run in another pid namespace (a container sharing the host name), killed midway: later runs
    here cannot judge its pid and keep its database; --sqlsandbox-clean past the age limit drops it."""
    url_arg = f"--sqlsandbox-url={server_url.render_as_string(hide_password=False)}"
    pytester.makepyfile(
        test_hangs="""
        import sys
        from sqlsandbox import marks

        def test_hangs(sandbox, db_connection):
            db_connection.exec_driver_sql("SELECT 1")
            print("INSIDE", sandbox.db.url.database, marks.host(), flush=True)
            sys.stdin.readline()  # killed before it gets a line
        """
    )
    argv = [sys.executable, "-m", "pytest", "-s", "-p", "no:randomly", "-p", "no:cacheprovider", url_arg]
    inner, (theirs, their_host) = namespaces.start([*argv, "test_hangs.py"], str(pytester.path), "INSIDE ")
    try:
        assert their_host != marks.host()  # another "container"
        inner.send_signal(signal.SIGKILL)  # unshare --kill-child takes the run with it
        inner.wait(timeout=30)
        pytester.makepyfile(test_hangs="def test_x(db_connection): pass")
        pytester.runpytest(url_arg).assert_outcomes(passed=1)
        assert theirs in servers.names(server_url)  # a run here cannot tell it is dead: kept

        young = pytester.runpytest(url_arg, "--sqlsandbox-clean")
        young.stdout.fnmatch_lines([f"  kept     {theirs} * made on {their_host} * min ago: its run may*"])
        assert theirs in servers.names(server_url)
        aged = pytester.runpytest(url_arg, "--sqlsandbox-clean=0")
        aged.stdout.fnmatch_lines([f"  dropped  {theirs} * made on {their_host} * ago"])
        assert theirs not in servers.names(server_url)
    finally:
        if inner.poll() is None:
            inner.kill()
        servers.drop_all(server_url, [theirs])


# ---- SQLite ------------------------------------------------------------------------------------------


def test_sqlite_leftovers(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> None:
    """SQLite's test databases live in private temp dirs and its templates in pytest's cache folder: a run's
    folder and a cut-short template build from another container are judged as server databases are."""
    monkeypatch.delenv("SQLSANDBOX_URL", raising=False)
    tag = f"cln{uuid.uuid4().hex[:8]}"
    base = f"test_{tag}"
    pytester.makepyfile("def test_x(db_connection): pass")
    pytester.makeini(f"[pytest]\nsqlsandbox_url = sqlite:///{tag}.db\n")
    pytester.runpytest().assert_outcomes(passed=1)  # makes the cache folder as a run does
    now = time.time()
    folders = {}
    for label, (mark, written, db_name) in {
        "old_elsewhere": (_mark(DEAD, "ci-7~1", now - 3 * DAY), now - 3 * DAY, f"{base}_0000c001.db"),
        "young_elsewhere": (_mark(DEAD, "ci-7~1", now - 60), now - 60, f"{base}_0000c002.db"),
        # made long ago but written a minute ago: a file cannot say who has it open, its last write can
        "old_but_written": (_mark(DEAD, "ci-7~1", now - 3 * DAY), now - 60, f"{base}_0000c003_gw0.db-wal"),
        "alive_here": (_mark(os.getpid(), marks.host(), now - 3 * DAY), now - 3 * DAY, f"{base}_c004.db"),
        "other_project": (_mark(DEAD, "ci-7~1", now - 3 * DAY), now - 3 * DAY, f"{base}_v2_0000c005.db"),
        "other_project_2": (_mark(DEAD, "ci-7~1", now - 3 * DAY), now - 3 * DAY, f"{base}x_0000c006.db"),
    }.items():
        folder = Path(tempfile.mkdtemp(prefix="sqlsandbox-"))
        Path(folder, marks.MARKER_TABLE).write_text(str(mark))
        Path(folder, db_name).write_bytes(b"")
        os.utime(Path(folder, db_name), (written, written))
        folders[label] = folder
    cache = pytester.path / ".pytest_cache" / "d" / "sqlsandbox"
    assert cache.is_dir()
    old_build = cache / "0123456789abcdef.building-deadbeef-77.db"  # another host's, three days old
    older_format = cache / "0123456789abcdef.building-78.db"
    here = hashlib.sha256(marks.host().encode()).hexdigest()[:8]
    live_build = cache / f"0123456789abcdef.building-{here}-{os.getpid()}.db"  # a live run's, here
    for path in (old_build, older_format, live_build):
        path.write_bytes(b"")
        os.utime(path, (now - 3 * DAY, now - 3 * DAY))
    try:
        result = pytester.runpytest("--sqlsandbox-clean")
        assert result.ret == 0
        result.stdout.fnmatch_lines(
            ["sqlsandbox: databases of test_*'s runs on sqlite:///*:", "3 dropped, 5 kept."]
        )
        # the template the first run built, in the cache folder: listed, kept
        result.stdout.fnmatch_lines([f"  kept     {cache}/*.db  a schema template: later runs clone it (*)"])
        assert not folders["old_elsewhere"].exists() and not old_build.exists() and not older_format.exists()
        for kept in ("young_elsewhere", "old_but_written", "alive_here", "other_project", "other_project_2"):
            assert folders[kept].exists(), kept
        assert live_build.exists()
        assert "_v2_" not in str(result.stdout) and f"{base}x_" not in str(result.stdout)  # not listed
    finally:
        for folder in folders.values():
            shutil.rmtree(folder, ignore_errors=True)


def test_listing_creates_nothing(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> None:
    """On a fresh checkout clean makes no cache folder (pytest would then never add its .gitignore)."""
    monkeypatch.delenv("SQLSANDBOX_URL", raising=False)
    result = pytester.runpytest(
        f"--sqlsandbox-url=sqlite:///cln{uuid.uuid4().hex[:8]}.db", "--sqlsandbox-clean"
    )
    assert result.ret == 0
    result.stdout.fnmatch_lines(["sqlsandbox: no database of test_cln*'s runs on sqlite:///cln*.db."])
    assert not (pytester.path / ".pytest_cache").exists()


def test_a_database_whose_mark_changed_since_it_was_judged_is_kept(server_url: URL) -> None:
    """Between the listing and the drop, the database got another mark (a template sealed, a name reused):
    the verdict was about the old one, so it stays."""
    name = f"{dialects.base_name(server_url)}_0000e001"
    judged = _mark(DEAD, "ci-7", time.time() - 3 * DAY)
    try:
        servers.plant(server_url, name, _mark(os.getpid(), marks.host(), time.time()))  # what it is now
        kept = dialects.provisioner_for(server_url).drop_if_unused(name, judged)
        assert kept == "its mark changed since it was judged"
        assert name in servers.names(server_url)
        elsewhere = dataclasses.replace(judged, host="x")
        assert dialects.provisioner_for(server_url).drop_if_unused(name, elsewhere) != ""
        now = dict(dialects.provisioner_for(server_url).project_databases())[name]
        assert dialects.provisioner_for(server_url).drop_if_unused(name, now) == ""  # the mark judged: gone
        assert name not in servers.names(server_url)
    finally:
        servers.drop_all(server_url, [name])


# ---- kept databases (sqlsandbox_keep_db), on the suite's database --------------------------------------


@pytest.mark.parametrize("spelling", ["env", "cli", "ini"])
def test_a_kept_database_outlives_later_runs_until_its_drop_command(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, spelling: str
) -> None:
    """Kept at the end of its run (each spelling of sqlsandbox_keep_db), the test database is named in the
    report with the command that drops it; a later run on this host, which removes what dead runs left, and
    --sqlsandbox-clean leave it; the command given drops it."""
    raw = os.environ.get("SQLSANDBOX_URL")
    monkeypatch.delenv("SQLSANDBOX_URL", raising=False)  # inner runs get the URL from their ini file
    tag = f"kpt{uuid.uuid4().hex[:8]}"  # a project of its own on the shared server
    url = make_url(raw).set(database=tag) if raw else make_url(f"sqlite:///{tag}.db")
    if embedded.is_embedded(url):
        pytest.skip("the embedded server stops with its run (its report line says where the database is)")
    ini = f"[pytest]\nsqlsandbox_url = {url.render_as_string(hide_password=False)}\n"
    pytester.makeini(ini + ("sqlsandbox_keep_db = true\n" if spelling == "ini" else ""))
    pytester.makepyfile("def test_x(db_connection): db_connection.exec_driver_sql('SELECT 1')")
    sqlite = drivers.family(url) == "sqlite"

    def exists(name: str) -> bool:
        return Path(name).is_dir() if sqlite else name in servers.names(url)

    name = ""
    try:
        with monkeypatch.context() as patch:
            if spelling == "env":
                patch.setenv("SQLSANDBOX_KEEP_DB", "1")
            # a process of its own: once it ends its pid is gone, as a finished run's is
            kept = pytester.runpytest_subprocess(*(["--sqlsandbox-keep-db"] if spelling == "cli" else []))
        kept.assert_outcomes(passed=1)
        line = next((x for x in kept.outlines if x.startswith("Kept test database ")), "")
        assert line, kept.outlines
        name = line.split()[3]
        assert f"test_{tag}_" in name or sqlite
        command = line.split("(or: ", 1)[1].rstrip(")")
        assert line == (
            f"Kept test database {name} (sqlsandbox_keep_db): no later run drops it. Drop it with: "
            f"pytest --sqlsandbox-clean-kept={name}  (or: {command})"
        )
        assert exists(name)

        pytester.runpytest_subprocess().assert_outcomes(passed=1)  # used to drop it, "after a killed run"
        assert exists(name)
        listed = pytester.runpytest("--sqlsandbox-clean=0")  # even with no age limit
        listed.stdout.fnmatch_lines(
            [
                f"  kept     {name}  kept as the user asked (sqlsandbox_keep_db), made on {marks.host()} "
                f"* ago: --sqlsandbox-clean-kept={name} drops it"
            ]
        )
        assert exists(name)

        if spelling == "cli":  # the server's own command, where its client is installed
            tool = shlex.split(command)[0]
            if shutil.which(tool) is None:
                pytest.skip(f"{tool} is not installed here")
            subprocess.run(shlex.split(command), check=True, capture_output=True, timeout=60)
        else:
            dropped = pytester.runpytest(f"--sqlsandbox-clean-kept={name}")
            assert dropped.ret == 0
            dropped.stdout.fnmatch_lines([f"  dropped  {name}  kept as the user asked *"])
        assert not exists(name)
    finally:
        if sqlite and name:
            shutil.rmtree(name, ignore_errors=True)
        elif not sqlite:
            left = [n for n, _ in dialects.provisioner_for(url).project_databases()]
            servers.drop_all(url, left)
