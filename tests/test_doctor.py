"""`sqlsandbox doctor`: the plan for four little projects as they were before conversion
(tests/doctor_projects/<shape>), checked three ways: its text against a golden file, the plan applied
mechanically from --json giving a suite that passes on sqlsandbox, and the original failing as the plan says.

Set SQLSANDBOX_UPDATE_GOLDEN=1 to rewrite the golden files after a deliberate change of wording."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from sqlsandbox import doctor
from sqlsandbox.cli import main as cli_main

PROJECTS = Path(__file__).parent / "doctor_projects"
SHAPES = ["savepoint_recipe", "create_all_per_test", "asyncmock_sessions", "clashing_bases"]
# Rewrites the doctor cannot make itself (anti-patterns, clashes): the file as a person would rewrite it,
# following the plan's "better:" and "fix:" lines. Everything else is applied from the JSON alone.
AFTER = PROJECTS / "_after"
# The suites below run in subprocesses, and make test runs this file on every database and driver: what does
# not depend on the database runs once (the run without SQLSANDBOX_URL), and the converted projects, which are
# sync, run once per server (with its sync driver; an async-driver run would repeat that run exactly).
_URL = os.environ.get("SQLSANDBOX_URL", "")
without_database = pytest.mark.skipif(
    bool(_URL), reason="runs without sqlsandbox, the same on every database: the SQLite run has it"
)
per_server = pytest.mark.skipif(
    _URL.split("://")[0].partition("+")[2] in ("asyncpg", "asyncmy", "aiomysql"),
    reason="sync projects: the run on this server's sync driver has it",
)


def plan_json(root: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(doctor.render_json(doctor.make_plan(root)))
    return data


@pytest.mark.parametrize("shape", SHAPES)
def test_the_text_plan_matches_its_golden_file(shape: str) -> None:
    text = doctor.render_text(doctor.make_plan(PROJECTS / shape))
    golden = PROJECTS / "_golden" / f"{shape}.txt"
    if os.environ.get("SQLSANDBOX_UPDATE_GOLDEN"):
        golden.parent.mkdir(exist_ok=True)
        golden.write_text(text)
    assert text == golden.read_text()
    assert text == doctor.render_text(doctor.make_plan(PROJECTS / shape))  # stable from run to run


def apply_plan(project: Path, plan: dict[str, Any], shape: str) -> None:
    """What a person (or a tool) does with --json: the ini lines under their section, each listed range
    deleted (bottom up, so the line numbers above stay right) with its replacement, then the rewrites."""
    ini = plan["ini"]
    ini_path = project / ini["file"]
    text = ini_path.read_text() if ini_path.exists() else ""
    lines = text.splitlines()
    if ini["section_exists"]:
        at = lines.index(ini["section"]) + 1
        lines[at:at] = ini["lines"]
    else:
        lines += ["", ini["section"], *ini["lines"]]
    ini_path.write_text("\n".join(lines) + "\n")
    ranges: dict[str, dict[tuple[int, int], str]] = {}
    for finding in plan["findings"]:
        if finding["section"] == "delete" or finding["kind"] == "shadowed-fixture":
            span = (finding["line"], finding["end_line"])
            ranges.setdefault(finding["file"], {})[span] = finding.get("replacement") or ""
    for file, spans in ranges.items():
        source = (project / file).read_text().splitlines(keepends=True)
        done: list[tuple[int, int]] = []
        for (start, end), replacement in sorted(spans.items(), reverse=True):
            if any(s <= start and end <= e for s, e in done):
                continue  # inside a range already deleted (a fixture both replaced and shadowing ours)
            source[start - 1 : end] = [replacement] if replacement else []
            done.append((start, end))
        (project / file).write_text("".join(source))
    if (AFTER / shape).exists():
        shutil.copytree(AFTER / shape, project, dirs_exist_ok=True)


def run_suite(project: Path, *, sandboxed: bool) -> subprocess.CompletedProcess[str]:
    """The project's own suite, as its developers run it. Sandboxed: sqlsandbox on the outer run's server
    (SQLSANDBOX_URL passed through); not: as before conversion, no sqlsandbox setting in the environment."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SQLSANDBOX_", "PYTEST_"))}
    if sandboxed and "SQLSANDBOX_URL" in os.environ:
        env["SQLSANDBOX_URL"] = os.environ["SQLSANDBOX_URL"]
    before = [] if sandboxed else ["-p", "no:sqlsandbox"]  # before conversion: not even installed
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:randomly", "-p", "no:cacheprovider", *before],
        cwd=project,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


def copy_of(shape: str, tmp_path: Path) -> Path:
    project = tmp_path / shape
    shutil.copytree(PROJECTS / shape, project, ignore=shutil.ignore_patterns("__pycache__", "*.db"))
    return project


@per_server
@pytest.mark.parametrize("shape", SHAPES)
def test_the_applied_plan_gives_a_green_suite(shape: str, tmp_path: Path) -> None:
    project = copy_of(shape, tmp_path)
    apply_plan(project, plan_json(project), shape)
    result = run_suite(project, sandboxed=True)
    assert result.returncode == 0, result.stdout + result.stderr
    assert " passed" in result.stdout and "failed" not in result.stdout
    assert not list(project.rglob("*_dev.db"))  # the development database was never opened


def test_after_the_plan_the_doctor_finds_only_what_it_keeps(tmp_path: Path) -> None:
    project = copy_of("asyncmock_sessions", tmp_path)
    apply_plan(project, plan_json(project), "asyncmock_sessions")
    after = plan_json(project)
    assert after["ini"]["lines"] == [] and after["ini"]["already_set"] == [
        "sqlsandbox_metadata",
        "sqlsandbox_bind",
        "sqlsandbox_asgi_app",
    ]
    assert [f["kind"] for f in after["findings"]] == ["testclient-async-engine"]


@without_database
def test_the_original_clashing_bases_fails_as_the_plan_says(tmp_path: Path) -> None:
    """Its own db_session builds the empty shared metadata: the plan's warning, 'no such table'."""
    result = run_suite(copy_of("clashing_bases", tmp_path), sandboxed=False)
    assert result.returncode == 1
    assert "no such table: users" in result.stdout


@per_server
def test_a_shadowing_db_session_turns_an_installed_sqlsandbox_on(tmp_path: Path) -> None:
    """The plan's clash: with sqlsandbox installed, tests asking for 'db_session' turn it on, and the suite's
    own fixture then reaches its development database past the blocker's rules."""
    project = copy_of("clashing_bases", tmp_path)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SQLSANDBOX_", "PYTEST_"))}
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:randomly", "-p", "no:cacheprovider"],
        cwd=project,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert "DatabaseAccessBlocked" in result.stdout and "4 errors" in result.stdout, result.stdout


@without_database
def test_the_original_seed_fixture_loses_its_rows(tmp_path: Path) -> None:
    """The module-scoped seed commits once; the per-test clean-up takes it away after the first test."""
    result = run_suite(copy_of("create_all_per_test", tmp_path), sandboxed=False)
    assert "2 failed, 1 passed" in result.stdout, result.stdout


@without_database
def test_the_original_hand_built_operational_error_is_a_type_error(tmp_path: Path) -> None:
    result = run_suite(copy_of("asyncmock_sessions", tmp_path), sandboxed=False)
    assert "FAILED tests/test_notes.py::test_database_down - TypeError" in result.stdout, result.stdout


@without_database
def test_the_original_savepoint_recipe_leaks_from_test_to_test(tmp_path: Path) -> None:
    """The hand-written recipe, as written, does not isolate on SQLite's default driver (pysqlite begins no
    transaction for it to roll back): the first test's user is there in the next. Converted, its tests pass
    unchanged (test_the_applied_plan_gives_a_green_suite)."""
    result = run_suite(copy_of("savepoint_recipe", tmp_path), sandboxed=False)
    assert "FAILED tests/test_users.py::test_starts_empty - assert 1 == 0" in result.stdout, result.stdout


def test_json_deletions_cover_whole_fixtures_with_their_decorators() -> None:
    findings = plan_json(PROJECTS / "savepoint_recipe")["findings"]
    session = next(f for f in findings if f["message"].startswith("session:"))
    source = (PROJECTS / "savepoint_recipe" / session["file"]).read_text().splitlines()
    assert source[session["line"] - 1] == "@pytest.fixture"
    assert source[session["line"]] == "def session(connection):"
    assert source[session["end_line"] - 1].strip() == "transaction.rollback()"
    assert set(findings[0]) >= {"file", "line", "end_line", "kind", "message", "fix"}


def write(root: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)
    return root


def test_a_server_url_is_an_ini_line_without_its_password(tmp_path: Path) -> None:
    write(
        tmp_path,
        {
            "pyproject.toml": "[project]\nname = 'app'\n",
            "app/__init__.py": "",
            "app/db.py": "from sqlalchemy import create_engine\n"
            "engine = create_engine('postgresql+psycopg://me:secret@db:5432/app_dev')\n",
            "tests/test_it.py": "from app.db import engine\n",
        },
    )
    plan = plan_json(tmp_path)
    assert plan["ini"] == {
        "file": "pyproject.toml",
        "section": "[tool.pytest.ini_options]",
        "section_exists": False,
        "lines": [
            'sqlsandbox_url = "postgresql+psycopg://me:***@db:5432/app_dev"',
            'sqlsandbox_bind = ["app.db:engine"]',
        ],
        "already_set": [],
    }


def test_an_app_that_fails_to_import_is_a_finding_not_a_traceback(tmp_path: Path) -> None:
    write(
        tmp_path,
        {
            "app/__init__.py": "",
            "app/broken.py": "import not_installed_anywhere\n",
            "app/connects.py": "from sqlalchemy import create_engine, text\n"
            "engine = create_engine('sqlite:///dev.db')\n"
            "with engine.connect() as conn:\n    conn.execute(text('select 1'))\n",
            "tests/test_it.py": "import app\n",
        },
    )
    text = doctor.render_text(doctor.make_plan(tmp_path))
    assert "app/broken.py:1  importing app.broken failed: ModuleNotFoundError: No module named" in text
    assert "importing app.connects failed: DatabaseAccessBlocked: sqlsandbox doctor" in text
    assert not (tmp_path / "dev.db").exists()  # the import never reached the database
    assert "Traceback" not in text
    assert "app.broken" not in sys.modules and "app" not in sys.modules  # the project's modules are gone


def test_usage_errors_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert doctor.main([str(tmp_path / "missing")]) == 2
    assert doctor.main(["--no-such-option"]) == 2
    assert cli_main(["frobnicate"]) == 2
    assert cli_main([]) == 2
    assert doctor.main([str(tmp_path)]) == 0  # an empty project: a plan with nothing in it
    assert "Summary: 0 ini lines to add" in capsys.readouterr().out


def test_the_entry_points_print_the_same_plan() -> None:
    shape = PROJECTS / "clashing_bases"
    expected = (PROJECTS / "_golden" / "clashing_bases.txt").read_text()
    module = subprocess.run(
        [sys.executable, "-m", "sqlsandbox", "doctor", str(shape)], capture_output=True, text=True, timeout=120
    )
    assert (module.returncode, module.stdout) == (0, expected)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SQLSANDBOX_", "PYTEST_"))}
    plugin = subprocess.run(
        [sys.executable, "-m", "pytest", "--sqlsandbox-doctor=json", "-p", "no:cacheprovider"],
        cwd=shape,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert plugin.returncode == 0, plugin.stderr
    assert json.loads(plugin.stdout) == plan_json(shape)


def test_awkward_layouts_are_findings_or_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """What real checkouts hold: a database volume this user cannot read (root reads it anyway), a symlink
    looping back up, a broken symlink named like a test, a test file with a null byte; and a pyproject
    pytest cannot read either."""
    write(
        tmp_path,
        {
            "app/__init__.py": "",
            "app/db.py": "from sqlalchemy import create_engine\nengine = create_engine('sqlite:///dev.db')\n",
            "tests/test_ok.py": "from app.db import engine\n",
            "tests/test_null.py": "x = 1\0\n",
        },
    )
    volume = tmp_path / "data" / "postgres"
    volume.mkdir(parents=True)
    volume.chmod(0)
    (tmp_path / "tests" / "loop").symlink_to(tmp_path)
    (tmp_path / "tests" / "test_gone.py").symlink_to(tmp_path / "nowhere.py")
    try:
        plan = plan_json(tmp_path)
    finally:
        volume.chmod(0o700)
    assert plan["ini"]["lines"] == ["sqlsandbox_bind =", "    app.db:engine"]
    assert [f["file"] for f in plan["findings"] if f["kind"] == "syntax-error"] == ["tests/test_null.py"]
    (tmp_path / "pyproject.toml").write_text("[tool.pytest.ini_options\n")
    assert doctor.main([str(tmp_path)]) == 2
    assert "cannot read the project's pytest configuration: pyproject.toml: " in capsys.readouterr().err
