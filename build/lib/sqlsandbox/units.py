"""Units of work on the one shared sandbox connection, and the order they may run in.

Everything a test's code opens (sessions, engine.connect()) becomes a *unit of work*: a SAVEPOINT on the one
sandbox connection. Savepoints form a stack, while the app's units, each on its own connection in production,
may overlap in any order. The UnitStack keeps them correct:
- a statement of a unit that is not on top waits while another live task holds the top unit (concurrent
  request handlers, scheduler ticks, gather), so savepoints never interleave and the driver never sees two
  operations at once; a wait that cannot end fails with both tasks' stacks;
- a commit of a unit that is not on top is deferred (its savepoint stays until the outer rollback), which is
  exactly what the data would look like had it committed for real;
- what cannot be emulated on one connection (rolling back a unit under another one that holds writes, or
  a rollback that would undo another unit's writes) is reported plainly, with both call sites.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from sqlalchemy.util import await_only

from .errors import SandboxDeadlockError, SandboxInterleavingError
from .loops import current_task, in_greenlet

if TYPE_CHECKING:
    from sqlalchemy.engine import Connection


@dataclass(eq=False)
class Unit:
    """One unit of work: a connection's transaction, held as a SAVEPOINT on the sandbox connection."""

    conn: Connection
    savepoint: str
    site: str
    owner: asyncio.Task[Any] | None
    wrote: bool = False
    orphaned: bool = False  # its savepoint went with an outer unit's rollback
    foreign_writes: list[str] = field(default_factory=list)
    absorbed: list[str] = field(default_factory=list)  # units committed while nested in this one

    def owner_alive_elsewhere(self) -> bool:
        return self.owner is not None and not self.owner.done() and self.owner is not current_task()

    def describe(self) -> str:
        who = f" by task {self.owner.get_name()!r}" if self.owner is not None else ""
        return f"{self.savepoint} opened{who} at {self.site}"


# The units held by this task and by the tasks that created it (a child task copies its creator's context):
# a task may nest its work inside those, and waits for anyone else's.
_held: ContextVar[tuple[Unit, ...]] = ContextVar("sqlsandbox_held_units", default=())


class TaskLock:
    """A lock owned by an asyncio task and re-entrant within it, usable from SQLAlchemy's sync layer.

    Held from a statement's check to the end of its execution, and around opening or closing a unit,
    so that the order of savepoints on the server is the order of the unit stack.
    """

    def __init__(self) -> None:
        self.owner: asyncio.Task[Any] | None = None
        self.depth = 0
        self._waiters: list[asyncio.Future[None]] = []

    def acquire(self) -> bool:
        """Take the lock (waiting inside SQLAlchemy's greenlet); False when not in async code."""
        if not in_greenlet():
            return False
        task = current_task()
        if task is None:
            return False
        if self.owner is task:
            self.depth += 1
            return True
        if self.owner is not None and not self.owner.done():
            await_only(self._wait(task))
        self.owner, self.depth = task, 1
        return True

    async def _wait(self, task: asyncio.Task[Any]) -> None:
        loop = asyncio.get_running_loop()
        while self.owner is not None and not self.owner.done():
            fut: asyncio.Future[None] = loop.create_future()
            self._waiters.append(fut)
            await fut

    def release(self) -> None:
        if self.owner is None or self.owner is not current_task():
            return
        self.depth -= 1
        if self.depth <= 0:
            self.owner, self.depth = None, 0
            waiters, self._waiters = self._waiters, []
            for fut in waiters:
                if not fut.done():
                    fut.set_result(None)

    def reset(self) -> None:
        self.owner, self.depth = None, 0
        waiters, self._waiters = self._waiters, []
        for fut in waiters:
            if not fut.done():
                fut.set_result(None)


class UnitStack:
    """The savepoint stack of the sandbox connection, with waiting and diagnostics (see module doc)."""

    def __init__(self, timeout: float, report: Callable[[str], None]) -> None:
        self.timeout = timeout
        self.report = report  # records a problem that fails the test at teardown
        self.units: list[Unit] = []
        self._waiters: list[asyncio.Future[None]] = []
        self.lock = TaskLock()

    @property
    def top(self) -> Unit | None:
        return self.units[-1] if self.units else None

    def _changed(self) -> None:
        waiters, self._waiters = self._waiters, []
        for fut in waiters:
            if not fut.done():
                fut.set_result(None)

    def _remove(self, unit: Unit) -> None:
        if unit in self.units:
            self.units.remove(unit)
        held = _held.get()
        if unit in held:
            _held.set(tuple(u for u in held if u is not unit))
        self._changed()

    def may_proceed(self, unit: Unit | None) -> bool:
        """Whether work of `unit` (or a new unit, for None) may run now without interleaving."""
        top = self.top
        return top is None or top is unit or top in _held.get() or not top.owner_alive_elsewhere()

    def _wait_until(self, ready: Callable[[], bool], waiting_fn: Callable[[], str]) -> None:
        """Wait (async, inside SQLAlchemy's greenlet) while another live task holds the top unit."""
        if ready():
            return
        top = self.top
        if top is None or not top.owner_alive_elsewhere() or not in_greenlet():
            return
        await_only(self._wait_async(ready, waiting_fn()))

    async def _wait_async(self, ready: Callable[[], bool], waiting: str) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.timeout
        while not ready():
            top = self.top
            if top is None or not top.owner_alive_elsewhere():
                return
            fut: asyncio.Future[None] = loop.create_future()
            self._waiters.append(fut)
            remaining = deadline - loop.time()
            try:
                await asyncio.wait_for(fut, max(remaining, 0))
            except asyncio.TimeoutError:
                raise self._deadlock(top, waiting) from None

    def _deadlock(self, top: Unit, waiting: str) -> SandboxDeadlockError:
        stack = ""
        if top.owner is not None:
            frames = top.owner.get_stack(limit=8)
            stack = "".join(
                f"\n      {f.f_code.co_filename}:{f.f_lineno} in {f.f_code.co_name}()" for f in frames
            )
        return SandboxDeadlockError(
            f"{waiting} waited {self.timeout:g}s for the unit of work {top.describe()}, "
            f"which never finished.\n  That task is now at:{stack or ' (no stack)'}",
            why="the sandbox is one connection: while a task's transaction is open on it, other tasks' "
            "statements queue behind it. A test or task that keeps a session open and then awaits "
            "work in another task (a scheduler, a request) waits for itself.",
            fix="commit or close the session (async with session.begin(): / await session.commit()) "
            "before awaiting other tasks; raise sqlsandbox_lock_timeout if the work is just slow.",
        )

    # --- events from the sandbox connection -------------------------------------------------

    def before_statement(self, unit: Unit | None, site_fn: Callable[[], str], write: bool) -> bool:
        """Called before each statement; in async code it returns True holding the lock, which
        after_statement() releases once the statement has run."""
        while True:
            self._wait_until(lambda: self.may_proceed(unit), lambda: f"A statement at {site_fn()}")
            locked = self.lock.acquire()
            if not locked or self.lock.depth > 1 or self.may_proceed(unit):
                break
            self.lock.release()  # another task pushed a unit while we waited: wait for it too
        top = self.top
        if top is not None and top is not unit and write:
            top.foreign_writes.append(site_fn())
        if unit is not None and write:
            unit.wrote = True
        return locked

    def after_statement(self) -> None:
        self.lock.release()

    def open(self, unit: Unit, do_savepoint: Callable[[], object]) -> None:
        """Wait until no other task's unit is open on top, then push and emit the SAVEPOINT as one
        step, so the server's savepoint order is the stack's and tasks' units never interleave."""
        while True:
            self._wait_until(lambda: self.may_proceed(None), lambda: f"Opening {unit.describe()}")
            locked = self.lock.acquire()
            if not locked or self.lock.depth > 1 or self.may_proceed(None):
                break
            self.lock.release()
        try:
            self.units.append(unit)
            try:
                do_savepoint()
            except BaseException:
                self._remove(unit)
                raise
            _held.set((*_held.get(), unit))
        finally:
            if locked:
                self.lock.release()

    def release(self, unit: Unit, do_release: Callable[[], None]) -> None:
        """Commit of a unit: RELEASE if on top, else defer (the savepoint stays until the outer rollback)."""
        if unit.orphaned:
            return
        locked = self.lock.acquire()
        try:
            index = self.units.index(unit) if unit in self.units else -1
            if index > 0:  # its work (and what it absorbed) now lives in the savepoint below it
                below = self.units[index - 1]
                below.absorbed.extend(unit.absorbed)
                if unit.wrote:
                    below.absorbed.append(unit.describe())
            if self.top is unit:
                try:
                    do_release()
                finally:
                    self._remove(unit)
            else:
                self._remove(unit)
        finally:
            if locked:
                self.lock.release()

    def rollback(self, unit: Unit, do_rollback: Callable[[], None]) -> None:
        if unit.orphaned:
            if unit.wrote:
                self.report(
                    f"{unit.describe()} rolled back writes that could not be undone: its savepoint "
                    "had been discarded by the rollback of an earlier unit of work."
                )
            return
        if self.top is not unit and unit in self.units:
            self._wait_until(lambda: self.top is unit, lambda: f"The rollback of {unit.describe()}")
        if unit in self.units and self.top is not unit:
            above = self.units[self.units.index(unit) + 1 :]
            if not unit.wrote:
                self._remove(unit)  # nothing of its own to undo; the savepoint stays, harmless
                return
            if not any(u.wrote for u in above):
                # Read-only units left open above (e.g. a leaked session): roll back through them.
                for orphan in above:
                    orphan.orphaned = True
                    self.units.remove(orphan)
            else:
                self._remove(unit)
                raise SandboxInterleavingError(
                    f"{unit.describe()} rolled back while {len(above)} later unit(s) of work are still "
                    f"open on the sandbox connection: {'; '.join(u.describe() for u in above)}.",
                    why="on the single sandbox connection units are nested savepoints; rolling back the "
                    "outer one would also discard the inner ones' work, which in production sits on "
                    "its own connection.",
                    fix="close (commit or roll back) the later session before rolling back the earlier "
                    "one, e.g. use 'with Session() as s:' / 'async with factory() as s:' blocks.",
                )
        if unit.foreign_writes:
            self.report(
                f"{unit.describe()} rolled back, and with it writes made by other sessions while it "
                f"was open: {'; '.join(unit.foreign_writes[:3])}. Those writes would survive in "
                "production. Close sessions before another one writes, or commit them."
            )
        locked = self.lock.acquire()
        try:
            do_rollback()
        finally:
            self._remove(unit)
            if locked:
                self.lock.release()
        if unit.absorbed:
            raise SandboxInterleavingError(
                f"The rollback of {unit.describe()} also discarded work that other sessions committed "
                f"while it was open: {'; '.join(unit.absorbed[:3])}.",
                why="on the single sandbox connection a session's transaction is a savepoint, and work "
                "committed after it was opened is nested inside it; in production that work would "
                "survive this rollback.",
                fix="commit or close the test's own session before other sessions or tasks write "
                "(e.g. await session.commit() after seeding).",
            )

    def clear(self) -> None:
        self.units.clear()
        self.lock.reset()
        self._changed()


def forget_held_units() -> None:
    """Reset this context's record of held units (between tests, in the test thread's context)."""
    _held.set(())
