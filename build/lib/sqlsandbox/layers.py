"""Seed layers: expensive seed data written once per session, module or class, never leaking past it.

A seed function writes through a sandbox of its own (so the app's bound factories work in it too). What it
commits stays in a transaction the kept sandbox connection holds open until the layer's scope ends, and each
test of the scope runs in a savepoint above it, rolled back to the layer, not below it. Layers stack: a
module seed may ask for a session seed. This is Django's setUpTestData, sync and async. The pytest side
(`@sqlsandbox.seed`, which makes the fixture) is in plugin.py.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

from sqlalchemy.engine import Transaction

from .connection import discard
from .errors import SandboxError, SandboxLayerError
from .loops import describe_loop, run_on_idle_loop

if TYPE_CHECKING:
    from .keeper import RootKeeper
    from .sandbox import Sandbox

Flavor = Literal["sync", "async"]


@dataclass
class Layer:
    """Seed data written by a fixture of a wider scope, kept in a transaction (or savepoint) that the
    sandbox connection holds open until the fixture's scope ends; tests run in savepoints above it."""

    name: str
    flavor: Flavor
    loop: asyncio.AbstractEventLoop | None
    outer: Transaction
    end: Callable[[], None]  # ends the layer's fixture early (see LayerStack.end_unused)


class LayerStack:
    """The active layers, lowest first."""

    def __init__(self) -> None:
        self._layers: list[Layer] = []

    def __bool__(self) -> bool:
        return bool(self._layers)

    def __iter__(self) -> Iterator[Layer]:
        return iter(self._layers)

    @property
    def top(self) -> Layer:
        return self._layers[-1]

    def push(self, layer: Layer) -> None:
        self._layers.append(layer)

    def clear(self) -> None:
        self._layers.clear()

    def check(self, flavor: Flavor, loop: asyncio.AbstractEventLoop | None, who: str) -> None:
        """A test (or layer) can only see the layers below it if it runs on their connection."""
        if not self._layers:
            return
        layer = self._layers[-1]
        if layer.flavor == flavor and layer.loop is loop:
            return
        if layer.flavor != flavor:
            why = (
                f"its rows live in the open transaction of the {layer.flavor} sandbox connection, and "
                f"{who} uses the {flavor} one, which cannot see them."
            )
            fix = (
                "write the seed with the same kind of code as the tests that use it (an async seed "
                "function for async tests, a sync one for sync tests)."
            )
        else:
            why = (
                f"its rows live in the open transaction of a connection made on {describe_loop(layer.loop)}, "
                f"and {who} runs on {describe_loop(loop)}; an asyncio connection cannot move between loops."
            )
            fix = (
                "run async tests that use an async seed on pytest-asyncio's session loop: "
                "@pytest.mark.asyncio(loop_scope='session') (or asyncio_default_test_loop_scope = session)."
            )
        raise SandboxLayerError(f"Seed layer {layer.name!r} is active, and {who} cannot use it.", why, fix)

    def unwind(self, name: str, keeper: RootKeeper) -> None:
        """Roll back a layer (its scope ended): its seed data goes, the layers below stay."""
        index = next((i for i, layer in enumerate(self._layers) if layer.name == name), None)
        if index is None:
            return  # its connection was lost (a disconnect): the server already rolled it back
        # Layers stack in set-up order, not scope order: a session layer set up after a module layer sits
        # above it. End those fixtures first (pytest seeds them again when next asked), then this one.
        for above in list(reversed(self._layers[index + 1 :])):
            above.end()
        layer = self._layers[index]
        del self._layers[index:]
        root = keeper.root(layer.flavor)
        if root is None or root.invalidated or (layer.loop is not None and layer.loop.is_closed()):
            return
        # a loop that cannot be driven from here: drop the connection, and the layer with it (server side)
        run_on_idle_loop(layer.loop, layer.outer.rollback, keeper.drop_async)

    def end_unused(self, fixturenames: Iterable[str], keeper: RootKeeper) -> None:
        """Before a test's fixtures are set up: end the active layers it does not use, with every layer
        above them, so that a test sees a layer's rows only if it asks for the layer. pytest then sets up
        again, on the right stack, the layers this test uses that were ended with them."""
        used = set(fixturenames)
        first = next((i for i, layer in enumerate(self._layers) if layer.name not in used), None)
        if first is None:
            return
        for layer in reversed(self._layers[first:]):
            layer.end()  # finishing the fixture runs its teardown, which unwinds the layer
            self.unwind(layer.name, keeper)  # no-op if it did

    def lose(self) -> None:
        """The layers lived in a lost connection's transaction: they are gone. End their fixtures, so the
        next test that asks for them seeds them again instead of running without them."""
        for layer in list(reversed(self._layers)):
            layer.end()
        self._layers.clear()


def keep_as_layer(box: Sandbox, name: str, end: Callable[[], None]) -> None:
    """End a seed layer's sandbox keeping what it committed: its transaction stays open on the kept
    connection, and the tests of the layer's scope run in savepoints above it."""
    error: list[SandboxLayerError] = []
    box._closing = True
    try:
        if box._root is not None:
            run_on_idle_loop(box._loop, lambda: _freeze(box, name, end, error), lambda: _lost(box, name, error))
    finally:
        box._let_go()
    if error:
        raise error[0]
    if box.problems:
        raise SandboxError("The sandbox caught a problem in this seed layer:\n- " + "\n- ".join(box.problems))


def _lost(box: Sandbox, name: str, error: list[SandboxLayerError]) -> None:
    root, box._root = box._root, None
    if root is not None:
        discard(root)
    error.append(
        SandboxLayerError(
            f"Seed layer {name!r} could not be kept: the event loop it was written on is "
            f"{describe_loop(box._loop)}.",
            why="a layer's transaction stays open on the connection of that loop, which must be idle "
            "when the seed function returns.",
            fix="write async seeds with `async def` and let sqlsandbox run them (do not drive the loop).",
        )
    )


def _freeze(box: Sandbox, name: str, end: Callable[[], None], error: list[SandboxLayerError]) -> None:
    keeper = box._keeper
    root, box._root = box._root, None
    assert root is not None and box._flavor is not None and box._outer is not None
    open_units = list(box.units.units)
    box.units.clear()
    if root.invalidated or box._root_dead:
        discard(root)
        error.append(
            SandboxLayerError(
                f"Seed layer {name!r} lost its connection while it was being written.",
                fix="look for a disconnect fault (sandbox.faults) or a server restart during the seed.",
            )
        )
        return
    if any(unit.wrote for unit in open_units):
        box._outer.rollback()
        keeper.give(box._flavor, box._loop, root)
        error.append(
            SandboxLayerError(
                f"Seed layer {name!r} returned with uncommitted work: "
                + "; ".join(unit.describe() for unit in open_units if unit.wrote),
                why="a layer keeps what its seed function committed, as the app's data would be; work "
                "left in an open transaction is not seed data.",
                fix="commit the session before the seed function returns (session.commit(), or "
                "`with session.begin():` / `async with session.begin():`).",
            )
        )
        return
    if open_units:  # read-only transactions left open (an attribute read after commit): end them
        root._rollback_to_savepoint_impl(open_units[0].savepoint)
    keeper.give(box._flavor, box._loop, root)
    keeper.layers.push(Layer(name, box._flavor, box._loop, box._outer, end))
