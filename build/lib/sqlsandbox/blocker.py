"""Refuse database connections during tests that do not go to the run's test database.

A connection to anything else (the app's development database, a production URL in an env var, an engine made
in the test) fails before the driver connects, with the test, the URL (password hidden) and the fix: so a test
can never write to a database sqlsandbox did not create. Installed once per process on SQLAlchemy's
`do_connect` event; in nested pytest runs (pytester) the innermost run's rules apply.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import event
from sqlalchemy.engine import Dialect, Engine

from . import dialects
from .errors import DatabaseAccessBlocked


@dataclass
class Blocker:
    allowed_names: set[str] = field(default_factory=set)
    current_test: str | None = None  # set while a test's setup, call or teardown runs
    blocked: list[str] = field(default_factory=list)

    def allow_database(self, name: str) -> None:
        self.allowed_names.add(name)
        if "/" in name or name.endswith(".db"):
            self.allowed_names.add(str(Path(name).resolve()))

    def check(self, dialect: Dialect, cargs: tuple[Any, ...], cparams: dict[str, Any]) -> None:
        if self.current_test is None:
            return
        target = _database_of(dialect, cargs, cparams)
        if target in self.allowed_names or (target and str(Path(target).resolve()) in self.allowed_names):
            return
        url = _describe(dialect, cargs, cparams)
        self.blocked.append(f"{self.current_test}: {url}")
        raise DatabaseAccessBlocked(
            f"{self.current_test} tried to connect to {url}, which is not the test database.",
            why="during tests sqlsandbox only lets connections reach the database it created for this "
            "run, so that no test can read or write a real one (a development file, a shared server).",
            fix="use the db_session / async_db_session / sandbox fixtures, list the engine or session "
            "factory in sqlsandbox_bind (or call sandbox.bind(obj)), or mark the test "
            "@pytest.mark.sqlsandbox so the app's bound factories join the sandbox.",
        )


_stack: list[Blocker] = []
_installed = False


def push(blocker: Blocker) -> None:
    global _installed
    if not _installed:
        event.listen(Engine, "do_connect", _on_connect)
        _installed = True
    _stack.append(blocker)


def pop(blocker: Blocker) -> None:
    if blocker in _stack:
        _stack.remove(blocker)


def _on_connect(dialect: Dialect, conn_rec: Any, cargs: tuple[Any, ...], cparams: dict[str, Any]) -> None:
    if _stack:
        _stack[-1].check(dialect, cargs, cparams)


def _database_of(dialect: Dialect, cargs: tuple[Any, ...], cparams: dict[str, Any]) -> str:
    return dialects.quirks(dialect.name).database_of(cargs, cparams)


def _describe(dialect: Dialect, cargs: tuple[Any, ...], cparams: dict[str, Any]) -> str:
    return dialects.quirks(dialect.name).describe_target(dialect, cargs, cparams)
