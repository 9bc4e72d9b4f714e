"""Seed layers: expensive seed data written once per session, module or class, never leaking past it.

`@seed(scope="module")` turns a seed function into a pytest fixture of that scope. The function writes
through a sandbox of its own (so the app's bound factories work in it too); what it commits stays in a
transaction the sandbox connection keeps open until the scope ends, and each test of the scope runs in a
savepoint above it, rolled back to the layer, not below it. Layers stack: a module seed may ask for a
session seed. This is Django's setUpTestData, for pytest, sync and async.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
from collections.abc import Callable, Iterable, Iterator
from typing import Any, Literal, TypeVar, overload

import pytest

from . import asyncio_loops
from .errors import SandboxLayerError
from .sandbox import RootKeeper, Sandbox

Scope = Literal["session", "package", "module", "class"]
F = TypeVar("F", bound=Callable[..., Any])


@overload
def seed(fn: F, /) -> F: ...
@overload
def seed(*, scope: Scope = "module", name: str | None = None) -> Callable[[F], F]: ...
def seed(fn: Any = None, /, *, scope: Scope = "module", name: str | None = None) -> Any:
    """Make fn(layer, *fixtures) a fixture of `scope` (default module) whose committed writes every test
    that uses it sees, and that is rolled back when the scope ends. The fixture's value is fn's return
    value. An `async def` seed runs on pytest-asyncio's session loop, for tests on that loop."""
    if scope not in ("session", "package", "module", "class"):
        raise ValueError(f"seed scope must be session, package, module or class, not {scope!r}")

    def decorate(fn: Any) -> Any:
        params = list(inspect.signature(fn).parameters.values())
        if not params:
            raise TypeError(f"seed function {fn.__name__}() must take the layer as its first argument")
        layer_name = name or fn.__name__
        fixtures = params[1:]

        wants_request = any(p.name == "request" for p in fixtures)

        def fixture(request: pytest.FixtureRequest, **kwargs: Any) -> Iterator[Any]:
            if wants_request:
                kwargs["request"] = request
            yield from _layer(request, fn, layer_name, kwargs)

        fixture.__name__ = fn.__name__
        fixture.__qualname__ = fn.__qualname__
        fixture.__doc__ = fn.__doc__
        fixture.__module__ = fn.__module__
        request_param = inspect.Parameter("request", inspect.Parameter.POSITIONAL_OR_KEYWORD)
        others = [p.replace(kind=inspect.Parameter.KEYWORD_ONLY) for p in fixtures if p.name != "request"]
        fixture.__signature__ = inspect.Signature([request_param, *others])  # type: ignore[attr-defined]
        return pytest.fixture(scope=scope, name=layer_name)(fixture)

    return decorate(fn) if fn is not None else decorate


def _layer(
    request: pytest.FixtureRequest, fn: Callable[..., Any], name: str, kwargs: dict[str, Any]
) -> Iterator[Any]:
    from .plugin import RUN

    run = request.config.stash[RUN]
    db = run.database()
    is_async = inspect.iscoroutinefunction(fn)
    loop = _session_loop(request, name) if is_async else None
    box = Sandbox(
        db,
        run.keeper,
        f"seed layer {name!r}",
        lock_timeout=run.settings.lock_timeout,
        keep_async_root=is_async,
        metadatas=run.metadatas,
    )
    box.activate()
    try:
        for obj in run.bound:
            box.bind(obj)
        value = loop.run_until_complete(fn(box, **kwargs)) if loop is not None else fn(box, **kwargs)
    except BaseException:
        with contextlib.suppress(Exception):  # the seed's own error is the one to show
            box.close()
        raise
    fixturedef = request._fixturedef  # type: ignore[attr-defined]
    box.keep_as_layer(name, lambda: fixturedef.finish(request))
    try:
        yield value
    finally:
        run.keeper.unwind_layer(name)


def end_unused_layers(fixturenames: Iterable[str], keeper: RootKeeper) -> None:
    """Before a test's fixtures are set up: end the active layers it does not use, with every layer above
    them, so that a test sees a layer's rows only if it asks for the layer. pytest then sets up again, on
    the right stack, the layers this test uses that were ended with them."""
    used = set(fixturenames)
    first = next((i for i, layer in enumerate(keeper.layers) if layer.name not in used), None)
    if first is None:
        return
    for layer in reversed(keeper.layers[first:]):
        layer.end()  # finishing the fixture runs its teardown, which unwinds the layer
        keeper.unwind_layer(layer.name)  # no-op if it did


def _session_loop(request: pytest.FixtureRequest, name: str) -> asyncio.AbstractEventLoop:
    """pytest-asyncio's session loop, which outlives the layer (its connection is made there)."""
    loop = asyncio_loops.session_loop(request)
    if loop is None:
        raise SandboxLayerError(
            f"Seed layer {name!r} is async, and pytest-asyncio (1.0 or later) is not active.",
            why="an async seed's connection must live on an event loop that outlasts the layer's scope.",
            fix="pip install pytest-asyncio, or write the seed function as a plain def for sync tests.",
        )
    request.getfixturevalue("_sqlsandbox_session_loop_connection")  # closes the kept connection at the end
    return loop
