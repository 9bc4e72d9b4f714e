"""The library without pytest: `import sqlsandbox` stays pytest-free, the README's script runs as written, and a
Sandbox that was never activated refuses to be used."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy import text

from sqlsandbox import Sandbox, SandboxError
from sqlsandbox.keeper import RootKeeper

README = Path(__file__).resolve().parent.parent / "README.md"


def _readme_example() -> str:
    section = README.read_text().split("## Using sqlsandbox without pytest", 1)[1]
    found = re.search(r"```python\n(.*?)```", section, re.S)
    assert found is not None, "the README's section has no python example"
    return found.group(1)


def test_importing_sqlsandbox_does_not_import_pytest() -> None:
    probe = "import sys, sqlsandbox; print(sorted(m for m in ('pytest', '_pytest') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_the_readme_script_runs_as_written(tmp_path: Path) -> None:
    script = tmp_path / "example.py"
    script.write_text(_readme_example() + "\nimport sys\nprint('ok', 'pytest' in sys.modules)\n")
    done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["ok", "False"]


def test_a_script_that_commits_for_real_is_told_at_the_block(tmp_path: Path) -> None:
    """The misuse the plugin reports at a test's teardown is raised by `with run.sandbox()` in a script."""
    script = tmp_path / "escape.py"
    script.write_text(
        "import sqlsandbox\n"
        "from sqlalchemy import MetaData\n"
        "with sqlsandbox.Run(metadata=[MetaData()]) as run:\n"
        "    with run.sandbox() as sandbox:\n"
        "        conn = sandbox.connection()\n"
        "        try:\n"
        "            conn.exec_driver_sql('COMMIT')\n"
        "        except sqlsandbox.SandboxEscapeError:\n"
        "            pass\n"
    )
    done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, cwd=tmp_path)
    assert done.returncode == 1
    assert "SandboxError: The sandbox caught a problem in this test" in done.stderr
    assert "COMMIT issued as SQL" in done.stderr


def test_a_sandbox_never_activated_refuses_to_be_used(sandbox: Sandbox) -> None:
    idle = Sandbox(sandbox.db, RootKeeper(), "by hand")
    for use in (idle.session, idle.async_session, idle.connection, lambda: idle.bind(sandbox.db.sync_engine)):
        with pytest.raises(SandboxError, match="used before it was activated"):
            use()
    # the test's own sandbox is untouched by the attempt
    assert sandbox.connection().execute(text("SELECT 1")).scalar() == 1


def test_rows_committed_past_the_sandbox_fail_the_run_at_its_end(tmp_path: Path) -> None:
    """Nothing lost silently: a commit through an engine of the script's own (not through the sandbox) is
    named when the `with Run(...)` block ends, and the test database is dropped all the same."""
    script = tmp_path / "leak.py"
    script.write_text(
        _readme_example() + "from sqlalchemy import create_engine\n"
        "from pathlib import Path\n"
        "try:\n"
        "    with sqlsandbox.Run(metadata=Base) as run:\n"
        "        url = run.database().url\n"
        "        with create_engine(url).begin() as conn:\n"
        "            conn.execute(User.__table__.insert().values(name='leaked'))\n"
        "except sqlsandbox.SandboxError as exc:\n"
        "    print('ERROR', exc)\n"
        "print('EXISTS', Path(str(url.database)).exists())\n"
    )
    done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "ERROR Rows outlived their sandboxes: users (1 rows, 0 after the schema build)" in done.stdout
    assert "EXISTS False" in done.stdout


UNITTEST_SUITE = """
import unittest

from sqlalchemy import func, select
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, sessionmaker

import sqlsandbox


class Base(DeclarativeBase):
    pass


class User(Base):
    __tablename__ = "users"
    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str]


SessionLocal = sessionmaker()


def add_user(name):
    with SessionLocal() as session:
        session.add(User(name=name))
        session.commit()


class UserTests(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.run_ = sqlsandbox.Run(metadata=Base, bind=SessionLocal).__enter__()

    @classmethod
    def tearDownClass(cls):
        cls.run_.__exit__(None, None, None)

    def setUp(self):
        self.sandbox = self.run_.new_sandbox(self.id())

    def tearDown(self):
        self.sandbox.close()

    def count(self):
        return self.sandbox.session().scalar(select(func.count()).select_from(User))

    def test_a_adds(self):
        add_user("ann")
        add_user("bob")
        self.assertEqual(self.count(), 2)

    def test_b_starts_clean(self):
        self.assertEqual(self.count(), 0)
"""


def test_unittest_gets_a_sandbox_per_test(tmp_path: Path) -> None:
    (tmp_path / "test_users.py").write_text(UNITTEST_SUITE)
    done = subprocess.run(
        [sys.executable, "-m", "unittest", "-v", "test_users"], capture_output=True, text=True, cwd=tmp_path
    )
    assert done.returncode == 0, done.stderr
    assert "Ran 2 tests" in done.stderr and "OK" in done.stderr


def test_a_bind_entry_of_the_wrong_kind_is_one_error_at_start(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(myapp="settings = {'url': 'sqlite://'}")
    pytester.makeini("[pytest]\npythonpath = .\nsqlsandbox_bind = myapp:settings\n")
    pytester.makepyfile(test_x="def test_sync():\n    assert True\n")
    result = pytester.runpytest()
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(
        ["ERROR: sqlsandbox: sqlsandbox_bind entry 'myapp:settings' is {'url': 'sqlite://'} (a dict), *"]
    )
    assert "UnboundLocalError" not in result.stdout.str() + result.stderr.str()


def test_run_takes_settings_and_keywords_the_keywords_winning() -> None:
    from sqlsandbox import ConfigError, Run, Settings

    run = Run(Settings(url="sqlite:///a.db", lock_timeout=3.0), url="sqlite:///b.db", bind=[], run_id="r-1/x")
    assert (run.settings.url, run.settings.lock_timeout, run.settings.bind) == ("sqlite:///b.db", 3.0, ())
    assert run.run_id == "r1x"  # part of database names and marks: letters and digits only
    with pytest.raises(ConfigError, match="unknown setting among urll"):
        Run(urll="sqlite://")
