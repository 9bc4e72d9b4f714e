"""The owner loop: one long-lived event loop, in a thread of its own, that owns the run's async driver
connection, and the proxy through which SQLAlchemy's async adapter in any other loop reaches that connection.

An asyncio driver connection (asyncpg's, asyncmy's, aiomysql's) belongs to the loop that made it (psycopg's
and aiosqlite's do not: they serve any loop as they are). The tests do not keep
to one loop: pytest-asyncio gives each test its own by default, Starlette's TestClient runs the app on a loop
of its own in another thread, anyio's worker threads have none. So the connection is made on the owner loop,
and every coroutine a caller awaits on it runs there (asyncio.run_coroutine_threadsafe), its result handed
back to the caller's loop. One statement at a time reaches it: the unit-of-work stack (units.py) sees to
that. A caller that is cancelled (a timeout in its loop) cancels the statement on the owner loop and waits
until the driver is idle before it goes on, so the next statement never finds the driver busy.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import inspect
import threading
import weakref
from collections.abc import Awaitable, Callable, Coroutine, Mapping
from typing import Any, TypeVar

from .errors import SandboxOwnerLoopError

T = TypeVar("T")
# how long a cancelled caller waits for the driver to be idle again, and a blocking caller for a result
IDLE_WAIT = 10.0


class OwnerLoop:
    """An event loop running in a daemon thread until stop()."""

    def __init__(self) -> None:
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._mutex = threading.Lock()

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        with self._mutex:
            thread_gone = self._thread is not None and not self._thread.is_alive()
            if self._loop is None or self._loop.is_closed() or thread_gone:
                ready = threading.Event()
                loop = asyncio.new_event_loop()

                def serve() -> None:
                    asyncio.set_event_loop(loop)
                    loop.call_soon(ready.set)
                    loop.run_forever()

                self._thread = threading.Thread(target=serve, name="sqlsandbox owner loop", daemon=True)
                self._thread.start()
                ready.wait()
                self._loop = loop
            return self._loop

    def interrupted(self) -> None:
        """Ctrl-C: what callers still await on this loop ends as cancelled."""
        if self._loop is not None:
            _interrupted.add(self._loop)

    def stop(self) -> None:
        with self._mutex:
            loop, thread, self._loop, self._thread = self._loop, self._thread, None, None
        if loop is None or loop.is_closed():
            return
        loop.call_soon_threadsafe(loop.stop)
        if thread is not None:
            thread.join(timeout=IDLE_WAIT)
        if not loop.is_running():
            loop.close()


# owner loops of runs that Ctrl-C interrupted (their process is ending)
_interrupted: weakref.WeakSet[asyncio.AbstractEventLoop] = weakref.WeakSet()


async def _await(awaitable: Awaitable[T], gate: asyncio.Lock | None) -> T:
    if gate is None:
        return await awaitable
    async with gate:
        return await awaitable


async def run_on(
    loop: asyncio.AbstractEventLoop, awaitable: Awaitable[T], gate: asyncio.Lock | None = None
) -> T:
    """Await `awaitable` on `loop`, which runs in another thread, from any loop; a caller that is cancelled
    cancels it there and waits until it has ended. With a gate (one per driver connection), one operation at a
    time reaches the driver there, whatever its callers do: work a test left running that is still mid-statement
    when the sandbox rolls back (its own loop stopped with the test) is waited for, never overlapped."""
    try:
        here = asyncio.get_running_loop() is loop
    except RuntimeError:
        here = False
    if here:
        return await _await(awaitable, gate)
    if loop.is_closed() or not loop.is_running():
        if inspect.iscoroutine(awaitable):
            awaitable.close()  # never to run: closed, not left to warn
        raise SandboxOwnerLoopError(
            "The owner loop that holds the sandbox's async connection is not running.",
            why="the async connection lives on sqlsandbox's owner loop; it was stopped (or its thread "
            "died) while the connection was in use, and the connection went with it.",
            fix="nothing to do in the test: the next test gets a fresh connection on a new owner loop. "
            "If this repeats, report it with the test's output.",
        )
    future = asyncio.run_coroutine_threadsafe(_await(awaitable, gate), loop)
    try:
        return await asyncio.wrap_future(future)
    except Exception:
        if loop in _interrupted:  # Ctrl-C killed the connection: the interrupted test's task ends cancelled,
            raise asyncio.CancelledError() from None  # not with an error asyncio would print as never retrieved
        raise
    except asyncio.CancelledError:
        future.cancel()
        concurrent.futures.wait([future], timeout=IDLE_WAIT)  # the driver is idle before we go on
        raise


def call_in(loop: asyncio.AbstractEventLoop, fn: Callable[[], T]) -> T:
    """Run a plain function on `loop`'s thread and wait for it (a transport is not thread-safe); in place if
    that loop is gone (nothing else touches its transport any more) or is the caller's."""
    try:
        here = asyncio.get_running_loop() is loop
    except RuntimeError:
        here = False
    if here or loop.is_closed() or not loop.is_running():
        return fn()

    async def run() -> T:
        return fn()

    return asyncio.run_coroutine_threadsafe(run(), loop).result(IDLE_WAIT)


def proxied_creator(
    owner: OwnerLoop, connect: Callable[..., Awaitable[Any]], params: Mapping[str, Any], on_loop: frozenset[str]
) -> Callable[[], Awaitable[Any]]:
    """create_async_engine()'s async_creator for a driver whose connection lives on the owner loop: `connect`
    (the driver's) runs there with `params`, and the connection comes back behind a LoopProxy that wraps the
    objects of the driver's own package."""
    package = (connect.__module__ or "").split(".")[0]

    async def create() -> Any:
        loop = owner.loop
        raw = await run_on(loop, connect(**params))
        return LoopProxy(raw, loop, (package,), on_loop, asyncio.Lock())

    return create


class LoopProxy:
    """Stands in for a driver object that lives on the owner loop: its coroutine methods run there, the
    driver objects they return are proxied too, plain data passes as is.

    A dialect (dialects/<family>.py) says which modules' objects are the driver's (`wrap`) and which of its
    plain methods must run on the owner loop's thread (`on_loop`: they touch the transport)."""

    __slots__ = (
        "_sqlsandbox_gate",
        "_sqlsandbox_loop",
        "_sqlsandbox_on_loop",
        "_sqlsandbox_target",
        "_sqlsandbox_wrap",
    )

    def __init__(
        self,
        target: Any,
        loop: asyncio.AbstractEventLoop,
        wrap: tuple[str, ...],
        on_loop: frozenset[str],
        gate: asyncio.Lock,
    ) -> None:
        object.__setattr__(self, "_sqlsandbox_target", target)
        object.__setattr__(self, "_sqlsandbox_gate", gate)  # the driver connection's: shared by its objects
        object.__setattr__(self, "_sqlsandbox_loop", loop)  # the loop the target lives on
        object.__setattr__(self, "_sqlsandbox_wrap", wrap)
        object.__setattr__(self, "_sqlsandbox_on_loop", on_loop)

    def _sqlsandbox_proxy(self, value: Any) -> Any:
        # the driver's classes, and subclasses made elsewhere (SQLAlchemy subclasses aiomysql's cursor)
        if (
            value is not None
            and not isinstance(value, tuple)
            and any((c.__module__ or "").split(".")[0] in self._sqlsandbox_wrap for c in type(value).__mro__)
        ):
            return LoopProxy(
                value,
                self._sqlsandbox_loop,
                self._sqlsandbox_wrap,
                self._sqlsandbox_on_loop,
                self._sqlsandbox_gate,
            )
        return value

    def __getattr__(self, name: str) -> Any:
        target = self._sqlsandbox_target
        attr = getattr(target, name)
        loop = self._sqlsandbox_loop
        if inspect.iscoroutinefunction(attr):

            async def on_owner(*args: Any, **kwargs: Any) -> Any:
                args = _relaying(name, args)
                return self._sqlsandbox_proxy(await run_on(loop, attr(*args, **kwargs), self._sqlsandbox_gate))

            return on_owner
        if callable(attr) and not isinstance(attr, type):

            def call(*args: Any, **kwargs: Any) -> Any:
                args = _relaying(name, args)
                if name in self._sqlsandbox_on_loop:
                    value = call_in(loop, lambda: attr(*args, **kwargs))
                else:
                    value = attr(*args, **kwargs)
                if inspect.isawaitable(value) and not inspect.iscoroutine(value):
                    return self._sqlsandbox_proxy(value)  # a driver object that is also awaitable
                if inspect.iscoroutine(value):
                    return _on_loop(loop, value, self._sqlsandbox_proxy, self._sqlsandbox_gate)
                return self._sqlsandbox_proxy(value)

            return call
        return attr

    def __setattr__(self, name: str, value: Any) -> None:
        setattr(self._sqlsandbox_target, name, value)

    def __await__(self) -> Any:
        async def awaited() -> Any:
            target, gate = self._sqlsandbox_target, self._sqlsandbox_gate
            return self._sqlsandbox_proxy(await run_on(self._sqlsandbox_loop, target, gate))

        return awaited().__await__()

    def __repr__(self) -> str:
        return f"<on the owner loop: {self._sqlsandbox_target!r}>"


# driver methods that register callbacks (asyncpg's listeners): the driver calls them on the owner loop, and
# they are handed to the loop that registered them, where the code that registered them expects them to run
RELAYED = frozenset(
    {
        "add_listener",
        "remove_listener",
        "add_log_listener",
        "remove_log_listener",
        "add_termination_listener",
        "remove_termination_listener",
    }
)
# (callback, its loop) -> relay: the same relay for the same registration, so remove_* finds it
_relays: dict[tuple[Callable[..., Any], asyncio.AbstractEventLoop], Callable[..., Any]] = {}


def _relaying(name: str, args: tuple[Any, ...]) -> tuple[Any, ...]:
    """The arguments of a driver method, its callbacks relayed to the caller's loop if it registers any."""
    if name not in RELAYED:
        return args
    forget = name.startswith("remove_")
    return tuple(_relayed(arg, forget) if callable(arg) else arg for arg in args)


def _relayed(callback: Callable[..., Any], forget: bool) -> Callable[..., Any]:
    """A callback that runs on the loop registering it (a coroutine function's coroutine is run there); the
    same one for the same registration, so that remove_* (forget) finds what add_* registered."""
    try:
        home = asyncio.get_running_loop()
    except RuntimeError:
        return callback
    for key in [key for key in _relays if key[1].is_closed()]:  # registrations of loops that are gone
        del _relays[key]
    if forget:
        return _relays.pop((callback, home), callback)
    relay = _relays.get((callback, home))
    if relay is None:
        is_async = inspect.iscoroutinefunction(callback)

        def relay(*args: Any) -> None:
            if home.is_closed():
                return
            if is_async:
                asyncio.run_coroutine_threadsafe(callback(*args), home)
            else:
                home.call_soon_threadsafe(callback, *args)

        _relays[(callback, home)] = relay
    return relay


async def _on_loop(
    loop: asyncio.AbstractEventLoop,
    coro: Coroutine[Any, Any, Any],
    proxy: Callable[[Any], Any],
    gate: asyncio.Lock,
) -> Any:
    return proxy(await run_on(loop, coro, gate))
