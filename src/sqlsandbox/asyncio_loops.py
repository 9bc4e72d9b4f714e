"""pytest-asyncio's event loops, as its versions name them.

Newer pytest-asyncio releases keep each scope's loop in an `asyncio.Runner` fixture (`_session_scoped_runner`);
1.0 keeps it in a loop fixture (`_session_event_loop`). The sandbox needs them to keep a test's loop open until
it has rolled back there, and to put async seed layers on the session loop.
"""

from __future__ import annotations

import asyncio

import pytest

SESSION = ("_session_scoped_runner", "_session_event_loop")
_SCOPES = ("function", "class", "module", "package", "session")
_LOOP_FIXTURES = frozenset(f"_{scope}_{kind}" for scope in _SCOPES for kind in ("scoped_runner", "event_loop"))


def loop_fixtures(fixturenames: list[str]) -> list[str]:
    """The pytest-asyncio loop fixtures a test uses (pytest-asyncio adds the one of its loop scope)."""
    return [name for name in fixturenames if name in _LOOP_FIXTURES]


def is_session_loop(fixtures: list[str]) -> bool:
    """Whether the test runs on the session loop alone, which outlives it."""
    return len(fixtures) == 1 and fixtures[0] in SESSION


def session_loop(request: pytest.FixtureRequest) -> asyncio.AbstractEventLoop | None:
    """pytest-asyncio's session loop (set up if need be), or None when pytest-asyncio is not active."""
    for name in SESSION:
        try:
            found = request.getfixturevalue(name)
        except pytest.FixtureLookupError:
            continue
        if isinstance(found, asyncio.AbstractEventLoop):  # pytest-asyncio 1.0
            return found
        loop: asyncio.AbstractEventLoop = found.get_loop()  # an asyncio.Runner
        return loop
    return None
