"""Installing sqlsandbox changes nothing in a suite that has not configured it: no blocker, no database, no
clean-up, one header line. A setting, or a test asking for a sandbox, turns it on."""

from __future__ import annotations

import os

import psycopg  # noqa: F401  (imported here, not first inside an inner run that pytester unloads)
import pytest

pytestmark = pytest.mark.filterwarnings("ignore::pytest.PytestAssertRewriteWarning")

OWN_DATABASE = """
from sqlalchemy import create_engine, text

def test_the_suites_own_database(tmp_path):
    engine = create_engine(f"sqlite:///{tmp_path / 'app.db'}")
    with engine.begin() as conn:
        conn.execute(text("CREATE TABLE t (id INTEGER)"))
        conn.execute(text("INSERT INTO t VALUES (1)"))
    with engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM t")).scalar() == 1
"""


@pytest.fixture
def unconfigured(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> pytest.Pytester:
    for name in [name for name in os.environ if name.startswith("SQLSANDBOX_")]:
        monkeypatch.delenv(name)
    pytester.makeini("[pytest]\nasyncio_default_fixture_loop_scope = function\n")
    return pytester


def test_an_unconfigured_suite_runs_as_before(unconfigured: pytest.Pytester) -> None:
    unconfigured.makepyfile(OWN_DATABASE)
    result = unconfigured.runpytest_subprocess("-p", "no:randomly")  # as a user runs it: no outer run
    result.assert_outcomes(passed=1)
    out = result.stdout.str()
    header = [line for line in out.splitlines() if line.startswith("sqlsandbox")]
    assert header == [
        "sqlsandbox: no sqlsandbox_* setting, so off unless a test asks for its fixtures or marker "
        "(sqlsandbox_url / sqlsandbox_metadata in the pytest config turn it on)"
    ]
    assert not (unconfigured.path / ".pytest_cache" / "d" / "sqlsandbox").exists()  # no template, no database


def test_a_test_asking_for_a_sandbox_turns_it_on(unconfigured: pytest.Pytester) -> None:
    unconfigured.makepyfile(
        OWN_DATABASE
        + """
from sqlalchemy import text as sql

def test_wants_a_sandbox(db_connection):
    assert db_connection.execute(sql("SELECT 1")).scalar() == 1
"""
    )
    result = unconfigured.runpytest_subprocess("-p", "no:randomly")  # as a user runs it: no outer run
    result.assert_outcomes(passed=1, failed=1)  # on, the blocker guards the whole run
    result.stdout.fnmatch_lines(["*DatabaseAccessBlocked: *test_the_suites_own_database tried to connect to*"])


def test_a_setting_turns_it_on(unconfigured: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SQLSANDBOX_LOCK_TIMEOUT", "5")
    unconfigured.makepyfile(OWN_DATABASE)
    result = unconfigured.runpytest_subprocess("-p", "no:randomly")  # as a user runs it: no outer run
    result.assert_outcomes(failed=1)
    assert "sqlsandbox: no sqlsandbox_* setting" not in result.stdout.str()


def test_a_suites_own_db_url_fixture_does_not_turn_it_on(unconfigured: pytest.Pytester) -> None:
    """db_url is a common fixture name: a suite's own (here, its SQLite file) is the suite's, and sqlsandbox
    stays off; only sqlsandbox's own db_url asks for a sandbox."""
    unconfigured.makeconftest(
        """
        import pytest

        @pytest.fixture(scope="session")
        def db_url(tmp_path_factory):
            return f"sqlite:///{tmp_path_factory.mktemp('own') / 'app.db'}"
        """
    )
    unconfigured.makepyfile(
        """
        from sqlalchemy import create_engine, text

        def test_the_suites_own_url(db_url):
            with create_engine(db_url).begin() as conn:
                conn.execute(text("CREATE TABLE t (id INTEGER)"))
                conn.execute(text("INSERT INTO t VALUES (1)"))
        """
    )
    result = unconfigured.runpytest_subprocess("-p", "no:randomly")
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(["sqlsandbox: no sqlsandbox_* setting, so off*"])
