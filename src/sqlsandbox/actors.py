"""Who is using the sandbox right now: an asyncio task, or a thread outside any task (a worker thread, the
thread Starlette's TestClient or FastAPI's threadpool runs a `def` route in, the test's own thread), and how
one actor waits for another, whichever kind each is.

A task waits inside SQLAlchemy's async bridge (await_only), so its event loop keeps running; a thread waits on
an Event. Either is woken from any thread.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
import threading
import time
from collections.abc import Callable
from typing import Any, TypeAlias

from sqlalchemy.util import await_only

from .callsite import app_frames
from .loops import current_task, in_greenlet

Actor: TypeAlias = "asyncio.Task[Any] | threading.Thread"


def current_actor() -> Actor:
    """The task, inside SQLAlchemy's async bridge (where it can await); else the thread, even one running an
    event loop: sync code in a coroutine does not yield, and blocks its loop when it waits."""
    task = current_task() if in_greenlet() else None
    return task if task is not None else threading.current_thread()


def is_alive(actor: Actor) -> bool:
    return actor.is_alive() if isinstance(actor, threading.Thread) else not actor.done()


def describe_actor(actor: Actor) -> str:
    if isinstance(actor, threading.Thread):
        return f"thread {actor.name!r}"
    return f"task {actor.get_name()!r}"


def where_is(actor: Actor, limit: int = 8) -> str:
    """The actor's current stack, innermost last, as indented 'file:line in fn()' lines ('' if unknown)."""
    if isinstance(
        actor, threading.Thread
    ):  # the app's and the test's frames: a thread's innermost are a library's
        frames = list(reversed(app_frames(sys._current_frames().get(actor.ident or -1), limit)))
    else:
        frames = actor.get_stack(limit=limit)
    return "".join(f"\n      {f.f_code.co_filename}:{f.f_lineno} in {f.f_code.co_name}()" for f in frames)


# Waits are cut into slices this long, after each of which the waiter looks again: an actor that ended
# (a finished task, an ended thread) wakes nobody, and neither does a nested savepoint's end.
SLICE = 0.05


class Waiters:
    """Actors waiting for a change; changed() wakes them all, from any thread.

    A waiter reads `version` before it looks at what it waits for, and passes it to wait(): a change made in
    between returns at once, so no wake-up is ever lost."""

    def __init__(self) -> None:
        self._mutex = threading.Lock()
        self._waiting: list[Callable[[], None]] = []
        self.version = 0

    def wait(self, seen: int, timeout: float) -> bool:
        """Block the current actor until a change after version `seen`, or until timeout seconds passed:
        False on time-out."""
        task = current_task() if in_greenlet() else None
        with self._mutex:
            if self.version != seen:
                return True
            if task is None:
                event = threading.Event()
                self._waiting.append(event.set)
            else:
                loop = asyncio.get_running_loop()
                fut: asyncio.Future[None] = loop.create_future()
                self._waiting.append(lambda: _wake_on(loop, fut))
        if task is None:
            return event.wait(max(timeout, 0))
        return bool(await_only(_wait_for(fut, timeout)))

    def changed(self) -> None:
        with self._mutex:
            self.version += 1
            waiting, self._waiting = self._waiting, []
        for wake in waiting:
            wake()


def _wake_on(loop: asyncio.AbstractEventLoop, fut: asyncio.Future[None]) -> None:
    with contextlib.suppress(RuntimeError):  # its loop is closed: nobody waits any more
        loop.call_soon_threadsafe(_resolve, fut)


def _resolve(fut: asyncio.Future[None]) -> None:
    if not fut.done():
        fut.set_result(None)


async def _wait_for(fut: asyncio.Future[None], timeout: float) -> bool:
    try:
        await asyncio.wait_for(fut, max(timeout, 0))
    except asyncio.TimeoutError:
        return False
    return True


class ActorLock:
    """A lock owned by a task or a thread and re-entrant within it, usable from SQLAlchemy's sync layer.

    Held from a statement's check to the end of its execution, and around opening or closing a unit, so
    that one statement at a time reaches the driver and the order of savepoints on the server is the order
    of the unit stack. An owner that died (a finished task, an ended thread) holds it no more.
    """

    def __init__(self) -> None:
        self.owner: Actor | None = None
        self.depth = 0
        self._mutex = threading.Lock()
        self._waiters = Waiters()

    def acquire(self, timeout: float, on_timeout: Callable[[Actor], BaseException]) -> None:
        """Take the lock, waiting while another live actor holds it; on_timeout(owner) is raised after
        timeout seconds."""
        me = current_actor()
        deadline = time.monotonic() + timeout
        while True:
            seen = self._waiters.version
            with self._mutex:
                if self.owner is me:
                    self.depth += 1
                    return
                if self.owner is None or not is_alive(self.owner):
                    self.owner, self.depth = me, 1
                    return
                owner = self.owner
            left = deadline - time.monotonic()
            if left <= 0:
                raise on_timeout(owner)
            self._waiters.wait(seen, min(left, SLICE))

    def release(self) -> None:
        with self._mutex:
            if self.owner is None or self.owner is not current_actor():
                return
            self.depth -= 1
            if self.depth > 0:
                return
            self.owner, self.depth = None, 0
        self._waiters.changed()

    def reset(self) -> None:
        with self._mutex:
            self.owner, self.depth = None, 0
        self._waiters.changed()
