"""Event loops and threads: which one is running, whether a connection may be used from here, running work
on a loop that is idle, and the names pytest-asyncio gives its loops.

pytest-asyncio keeps each scope's loop in an `asyncio.Runner` fixture (`_session_scoped_runner`) in newer
releases, and in a loop fixture (`_session_event_loop`) in 1.0. The sandbox needs them to keep a test's loop
open until it has rolled back there, and to put async seed layers on the session loop; the plugin looks the
fixtures up by these names.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading
from collections.abc import Callable
from typing import Any, TypeVar

from sqlalchemy.util import greenlet_spawn
from sqlalchemy.util.concurrency import in_greenlet as _sqlalchemy_in_greenlet

from .errors import SandboxLoopError

T = TypeVar("T")
SESSION_LOOP_FIXTURES = ("_session_scoped_runner", "_session_event_loop")
_SCOPES = ("function", "class", "module", "package", "session")
_LOOP_FIXTURES = frozenset(f"_{scope}_{kind}" for scope in _SCOPES for kind in ("scoped_runner", "event_loop"))


def loop_fixtures(fixturenames: list[str]) -> list[str]:
    """The pytest-asyncio loop fixtures a test uses (pytest-asyncio adds the one of its loop scope)."""
    return [name for name in fixturenames if name in _LOOP_FIXTURES]


def is_session_loop(fixtures: list[str]) -> bool:
    """Whether the test runs on the session loop alone, which outlives it."""
    return len(fixtures) == 1 and fixtures[0] in SESSION_LOOP_FIXTURES


def loop_of(found: Any) -> asyncio.AbstractEventLoop:
    """The loop of a pytest-asyncio loop fixture's value: a loop (1.0) or an asyncio.Runner."""
    if isinstance(found, asyncio.AbstractEventLoop):
        return found
    loop: asyncio.AbstractEventLoop = found.get_loop()
    return loop


def in_greenlet() -> bool:
    """Inside SQLAlchemy's async bridge. SQLAlchemy's own check: 2.0.30 marks the bridge by a greenlet
    class, newer releases by an attribute."""
    return bool(_sqlalchemy_in_greenlet())


def run_on_idle_loop(
    loop: asyncio.AbstractEventLoop | None, fn: Callable[[], T], otherwise: Callable[[], T]
) -> T:
    """Run sync SQLAlchemy work that must happen on `loop` (an async connection's loop), inside SQLAlchemy's
    async bridge: driven from here if that loop is idle, handed to it if it runs in another thread (the owner
    loop); else `otherwise()` (the loop is closed, or it is the one running this code and cannot wait for
    itself: what needed it is dropped instead)."""
    if loop is None:
        return fn()
    if loop.is_closed():
        return otherwise()
    if loop.is_running():
        if running_loop() is loop:
            return otherwise()
        try:
            return asyncio.run_coroutine_threadsafe(greenlet_spawn(fn), loop).result(_HAND_OVER_WAIT)
        except concurrent.futures.TimeoutError:  # (not the builtin before Python 3.11)
            return otherwise()
    return loop.run_until_complete(greenlet_spawn(fn))


_HAND_OVER_WAIT = 30.0


def running_loop() -> asyncio.AbstractEventLoop | None:
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        return None


def current_task() -> asyncio.Task[Any] | None:
    try:
        return asyncio.current_task()
    except RuntimeError:
        return None


def describe_loop(loop: asyncio.AbstractEventLoop | None) -> str:
    if loop is None:
        return f"no event loop (thread {threading.current_thread().name!r})"
    state = "closed" if loop.is_closed() else "running" if loop.is_running() else "idle"
    return f"{type(loop).__name__} at {id(loop):#x} ({state})"


def loop_mismatch(owner_loop: asyncio.AbstractEventLoop, site_fn: Callable[[], str]) -> SandboxLoopError | None:
    """None if the current loop may use an async connection made on owner_loop."""
    here = running_loop()
    if here is owner_loop:
        return None
    site = site_fn()
    return SandboxLoopError(
        f"The sandbox's async connection was used from {describe_loop(here)} at {site}, "
        f"but it was opened on {describe_loop(owner_loop)}.",
        why="this async driver's connection belongs to the event loop that opened it (the drivers "
        "sqlsandbox knows serve every loop; this one it does not); used from another loop it fails with "
        "'Future attached to a different loop' or "
        "'another operation is in progress'. Starlette's TestClient runs the app in its own thread "
        "and loop, and a session-scoped engine outlives a function-scoped loop.",
        fix="drive ASGI apps with the asgi_client fixture (httpx.AsyncClient over ASGITransport in "
        "the test's loop) instead of TestClient, and let the sandbox fixtures give you connections "
        "rather than creating engines or sessions in fixtures of a wider scope; or make the async "
        "driver asyncpg, psycopg, asyncmy, aiomysql or aiosqlite, whose sandbox connection serves every "
        "loop.",
    )
