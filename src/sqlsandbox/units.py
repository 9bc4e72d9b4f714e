"""Units of work on the one shared sandbox connection, and the order they may run in.

Everything a test's code opens (sessions, engine.connect()) becomes a *unit of work*: a SAVEPOINT on the one
sandbox connection. Savepoints form a stack, while the app's units, each on its own connection in production,
may overlap in any order. The UnitStack keeps them correct:
- a statement of a unit that is not on top waits while another live actor (an asyncio task, or a thread:
  worker threads, TestClient, FastAPI's `def` routes) holds the top unit (concurrent request handlers,
  scheduler ticks, gather), so savepoints never interleave and the driver never sees two operations at
  once; a wait that cannot end fails with both actors' stacks;
- a unit that has only read does not make others wait: its savepoint is released while they need the
  connection, and taken again at its next statement (what it read stays read; under READ COMMITTED its next
  statement would see their commits in production too);
- a commit of a unit that is not on top is deferred (its savepoint stays until the outer rollback), which is
  exactly what the data would look like had it committed for real;
- what cannot be emulated on one connection (rolling back a unit under another one that holds writes, or
  a rollback that would undo another unit's writes) is reported plainly, with both call sites.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable, Collection
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from .actors import SLICE, Actor, ActorLock, Waiters, current_actor, describe_actor, is_alive, where_is
from .errors import SandboxClosedError, SandboxDeadlockError, SandboxInterleavingError

if TYPE_CHECKING:
    from sqlalchemy.engine import Connection


@dataclass(eq=False)
class Unit:
    """One unit of work: a connection's transaction, held as a SAVEPOINT on the sandbox connection."""

    conn: Connection
    savepoint: str
    site: str
    owner: Actor
    wrote: bool = False
    orphaned: bool = False  # its savepoint went with an outer unit's rollback
    suspended: bool = False  # read-only, its savepoint released while others needed the connection
    # ran something other than plain SELECTs (text SQL, SET, FOR UPDATE, a streamed result...): it may hold
    # settings or state that releasing its savepoint would hand to others, so it is never suspended
    pinned: bool = False
    foreign_writes: list[str] = field(default_factory=list)
    absorbed: list[str] = field(default_factory=list)  # units committed while nested in this one

    def owner_alive_elsewhere(self) -> bool:
        return self.owner is not current_actor() and is_alive(self.owner)

    def describe(self) -> str:
        return f"{self.savepoint} opened by {describe_actor(self.owner)} at {self.site}"


# The units held by this actor and by those that started it (a child task copies its creator's context, and
# so does a thread started by anyio.to_thread / run_in_threadpool): it may nest its work inside those, and
# waits for anyone else's.
_held: ContextVar[tuple[Unit, ...]] = ContextVar("sqlsandbox_held_units", default=())


def _holds(unit: Unit) -> bool:
    """Whether the current actor may work inside `unit`: its own, or one it inherited. A task's units pass
    to the tasks it creates and to the threads it hands work to (anyio.to_thread, run_in_threadpool), which
    it awaits; a thread's pass to no other thread: one blocked in a call (TestClient's) waits for no one."""
    if unit not in _held.get():
        return False
    return not isinstance(unit.owner, threading.Thread) or unit.owner is threading.current_thread()


class UnitStack:
    """The savepoint stack of the sandbox connection, with waiting and diagnostics (see module doc)."""

    def __init__(
        self,
        timeout: float,
        report: Callable[[str], None],
        raw_execute: Callable[[str], None] | None = None,
        next_name: Callable[[], str] | None = None,
    ) -> None:
        self.timeout = timeout
        self.report = report  # records a problem that fails the test at teardown
        self.units: list[Unit] = []
        self._waiters = Waiters()
        self.lock = ActorLock()
        # SQL on the sandbox connection past SQLAlchemy (no events): how read-only units let others pass
        self._raw_execute = raw_execute
        self._next_name = next_name
        self.ended = False  # the test ended: work still waiting here (or coming late) is refused

    def end(self) -> None:
        """The test is over: wake whatever still waits for a turn, to be refused (_check_not_ended)."""
        self.ended = True
        self._changed()

    def _check_not_ended(self) -> None:
        if self.ended:
            raise SandboxClosedError(
                f"{describe_actor(current_actor())} waited for the sandbox connection until its test ended.",
                why="a task or thread of the test was still waiting for its turn when the test returned; its "
                "sandbox is rolled back, and the next test's connection is not its to use.",
                fix="await or cancel the tasks a test starts (and join its threads) before it returns.",
            )

    @property
    def top(self) -> Unit | None:
        return self.units[-1] if self.units else None

    def _changed(self) -> None:
        self._waiters.changed()

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
        return top is None or top is unit or _holds(top) or not top.owner_alive_elsewhere()

    def _remaining(self, deadline: float) -> float:
        return max(deadline - time.monotonic(), 0.0)

    def _take_turn(self, unit: Unit | None, waiting_fn: Callable[[], str]) -> None:
        """Wait until work of `unit` (None: a new unit) may run, and take the statement lock."""
        deadline = time.monotonic() + self.timeout
        while True:
            seen = self._waiters.version
            self.lock.acquire(self._remaining(deadline), lambda owner: self._busy(owner, waiting_fn()))
            try:
                self._check_not_ended()
                if self.lock.depth == 1:
                    self._suspend_idle_readers(unit)
                # a suspended unit (another actor released its savepoint) comes back as a new one, on top
                resuming = unit is not None and unit.suspended
                if self.lock.depth > 1 or self.may_proceed(None if resuming else unit):
                    if resuming:
                        assert unit is not None
                        self._resume(unit)
                    return
                top = self.top
            except BaseException:
                self.lock.release()
                raise
            self.lock.release()
            assert top is not None
            if time.monotonic() >= deadline and top is self.top and top.owner_alive_elsewhere():
                raise self._deadlock(top, waiting_fn())
            self._waiters.wait(seen, min(self._remaining(deadline), SLICE))

    def _wait_until(self, ready: Callable[[], bool], waiting_fn: Callable[[], str]) -> None:
        """Wait while another live actor holds the top unit, until ready()."""
        deadline = time.monotonic() + self.timeout
        while True:
            seen = self._waiters.version
            self._check_not_ended()
            if ready():
                return
            top = self.top
            if top is None or not top.owner_alive_elsewhere():
                return
            if time.monotonic() >= deadline:
                raise self._deadlock(top, waiting_fn())
            self._waiters.wait(seen, min(self._remaining(deadline), SLICE))

    def _suspend_idle_readers(self, unit: Unit | None) -> None:
        """Release the savepoints of read-only units on top that other live actors hold, so that `unit`
        need not wait for them (called holding the statement lock: nobody is mid-statement)."""
        while self._raw_execute is not None:
            top = self.top
            if top is None or top is unit or top.wrote or top.pinned or _holds(top):
                return
            if not top.owner_alive_elsewhere():
                return
            if getattr(top.conn, "_nested_transaction", None) is not None:
                return  # its begin_nested() savepoints would go with it
            self._raw_execute(f"RELEASE SAVEPOINT {top.savepoint}")
            top.suspended = True
            self.units.remove(top)
            self._changed()

    def _resume(self, unit: Unit) -> None:
        """A suspended unit's next statement: take a savepoint again, on top, for the actor using it now."""
        assert self._raw_execute is not None and self._next_name is not None
        name = self._next_name()
        self._raw_execute(f"SAVEPOINT {name}")
        unit.savepoint, unit.suspended, unit.owner = name, False, current_actor()
        self.units.append(unit)
        _held.set((*_held.get(), unit))

    def _busy(self, owner: Actor, waiting: str) -> SandboxDeadlockError:
        return SandboxDeadlockError(
            f"{waiting} waited {self.timeout:g}s for the sandbox connection, which {describe_actor(owner)} "
            f"was using all that time.\n  It is now at:{where_is(owner) or ' (no stack)'}",
            why="the sandbox is one connection, and one statement at a time runs on it.",
            fix="raise sqlsandbox_lock_timeout if that statement is just slow.",
        )

    def _deadlock(self, top: Unit, waiting: str) -> SandboxDeadlockError:
        kind = describe_actor(top.owner).split()[0]
        if top.owner is threading.current_thread():  # a task of this thread waits for the thread's own work
            why = (
                "the sandbox is one connection, and this thread's own sync work holds an open transaction "
                "that has written on it; the task now waiting runs on the same thread, so nothing can finish "
                "that transaction while it waits: it waits for itself."
            )
        else:
            why = (
                "the sandbox is one connection: while a transaction that has written is open on it, the "
                f"statements of other tasks and threads queue behind it. That {kind} has not finished its "
                "transaction; most often it is waiting, in turn, for the work that waits here (a test that "
                "keeps a session open and awaits a scheduler, or calls the app through TestClient)."
            )
        return SandboxDeadlockError(
            f"{waiting} waited {self.timeout:g}s for the unit of work {top.describe()}, "
            f"which never finished.\n  That {kind} is now at:{where_is(top.owner) or ' (no stack)'}",
            why=why,
            fix="commit or close the session (async with session.begin(): / await session.commit()) "
            "before awaiting other tasks or calling the app; raise sqlsandbox_lock_timeout if the work is "
            "just slow.",
        )

    # --- events from the sandbox connection -------------------------------------------------

    def before_statement(
        self, unit: Unit | None, site_fn: Callable[[], str], write: bool, plain_read: bool = False
    ) -> bool:
        """Called before each statement: returns holding the statement lock (True), which after_statement()
        releases once the statement has run."""
        self._take_turn(unit, lambda: f"A statement at {site_fn()}")
        if unit is not None and not plain_read:
            unit.pinned = True
        top = self.top
        if top is not None and top is not unit and write:
            top.foreign_writes.append(site_fn())
        if unit is not None and write:
            unit.wrote = True
        return True

    def after_statement(self) -> None:
        self.lock.release()

    def open(self, unit: Unit, do_savepoint: Callable[[], object]) -> None:
        """Wait until no other actor's unit is open on top, then push and emit the SAVEPOINT as one
        step, so the server's savepoint order is the stack's and units never interleave."""
        self._take_turn(None, lambda: f"Opening {unit.describe()}")
        try:
            self.units.append(unit)
            try:
                do_savepoint()
            except BaseException:
                self._remove(unit)
                raise
            _held.set((*_held.get(), unit))
        finally:
            self.lock.release()

    def release(self, unit: Unit, do_release: Callable[[], None]) -> None:
        """Commit of a unit: RELEASE if on top, else defer (the savepoint stays until the outer rollback)."""
        if unit.orphaned:
            return
        self._lock(unit)
        try:
            if unit.suspended:  # it only read, and its savepoint is gone already
                self._remove(unit)
                return
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
            self.lock.release()

    def rollback(self, unit: Unit, do_rollback: Callable[[], None]) -> None:
        if unit.orphaned:
            self._report_orphan(unit)
            return
        if self.top is not unit and unit in self.units:
            self._wait_until(
                lambda: self.top is unit or unit not in self.units, lambda: f"The rollback of {unit.describe()}"
            )
        self._lock(unit)  # what follows looks at and changes the stack: no one else may meanwhile
        try:
            if unit.orphaned:
                self._report_orphan(unit)
                return
            if unit.suspended:  # it only read: nothing to undo
                self._remove(unit)
                return
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
            try:
                do_rollback()
            finally:
                self._remove(unit)
        finally:
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

    def _report_orphan(self, unit: Unit) -> None:
        if unit.wrote:
            self.report(
                f"{unit.describe()} rolled back writes that could not be undone: its savepoint "
                "had been discarded by the rollback of an earlier unit of work."
            )

    def _lock(self, unit: Unit) -> None:
        self.lock.acquire(self.timeout, lambda owner: self._busy(owner, f"Closing {unit.describe()}"))

    def held_by_pending_tasks(self, started_by_test: Collection[Actor]) -> list[Unit]:
        """Units whose task, one the test's body started, has not finished: at the test's end, work the test
        started and did not await."""
        return [
            u
            for u in self.units
            if isinstance(u.owner, asyncio.Task) and not u.owner.done() and u.owner in started_by_test
        ]

    def clear(self, keep_lock: bool = False) -> None:
        self.units.clear()
        if not keep_lock:
            self.lock.reset()
        self._changed()


def forget_held_units() -> None:
    """Reset this context's record of held units (between tests, in the test thread's context)."""
    _held.set(())
