"""Guard: the development database (./atom_dev.db) must never be opened by the test run.

``atom.core.database`` creates a module-level engine for ``sqlite:///./atom_dev.db``; sqlsandbox
rebinds it, so no connection to that file may ever be made. Two independent checks:

* every ``sqlite3.connect()`` of the run is recorded (installed at configure time, before any
  test or fixture runs) and none may target a file named ``atom_dev.db``;
* the file must not appear (or change, if a developer already has one) in the example directory
  or in the working directory.

The check runs in ``test_dev_database.py`` after exercising the app, and again when the session
ends (teardown of the autouse session fixture), so it does not depend on test order.
"""

from __future__ import annotations

import os
import sqlite3
import sqlite3.dbapi2
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

EXAMPLE_DIR = Path(__file__).resolve().parent.parent
DEV_DB_NAME = "atom_dev.db"


def _snapshot(path: Path) -> tuple[int, int] | None:
    try:
        st = path.stat()
    except FileNotFoundError:
        return None
    return (st.st_size, st.st_mtime_ns)


@dataclass
class DevDatabaseGuard:
    paths: list[Path]
    before: dict[Path, tuple[int, int] | None] = field(default_factory=dict)
    opened: list[str] = field(default_factory=list)

    def start(self) -> None:
        self.before = {p: _snapshot(p) for p in self.paths}

    def record_connect(self, database: object) -> None:
        name = os.fsdecode(database) if isinstance(database, (str, bytes, os.PathLike)) else ""
        if DEV_DB_NAME in name:
            self.opened.append(name)

    def violations(self) -> list[str]:
        problems = [f"sqlite3.connect({name!r}) was called" for name in self.opened]
        for path, before in self.before.items():
            after = _snapshot(path)
            if after != before:
                state = "created" if before is None else "modified"
                problems.append(f"{path} was {state} during the test run")
        return problems


_guard = DevDatabaseGuard(paths=sorted({EXAMPLE_DIR / DEV_DB_NAME, Path.cwd() / DEV_DB_NAME}))
_originals = {sqlite3: sqlite3.connect, sqlite3.dbapi2: sqlite3.dbapi2.connect}


def _spy_connect(database, *args, **kwargs):
    _guard.record_connect(database)
    return _originals[sqlite3](database, *args, **kwargs)


def pytest_configure(config: pytest.Config) -> None:
    _guard.start()
    for module in _originals:
        module.connect = _spy_connect


def pytest_unconfigure(config: pytest.Config) -> None:
    for module, original in _originals.items():
        module.connect = original


@pytest.fixture(scope="session", autouse=True)
def dev_db_guard() -> Iterator[DevDatabaseGuard]:
    yield _guard
    problems = _guard.violations()
    assert not problems, "the development database was touched: " + "; ".join(problems)
