"""The connection kept open between tests, so that a test pays for BEGIN and ROLLBACK, not for a connect.

A sync connection is kept as is, and so is an async one that serves every loop (kept under the owner loop,
see owner.py). Any other async one belongs to the loop that made it: it is kept for the next test on that
loop, and an idle one whose loop is not running now is *retired*, to be closed on that loop later (dropped
instead, the garbage collector would find it, and SQLAlchemy warns of a non-checked-in connection).
With seed layers active, the kept connection holds their open transaction (see layers.py).
"""

from __future__ import annotations

import asyncio
from functools import partial
from typing import Literal

from sqlalchemy.engine import Connection

from .connection import discard
from .layers import LayerStack
from .loops import run_on_idle_loop

Flavor = Literal["sync", "async"]


class RootKeeper:
    def __init__(self) -> None:
        self.sync: Connection | None = None
        self.async_: tuple[asyncio.AbstractEventLoop, Connection] | None = None
        # idle async connections of a loop that is not running now: closed on it when it runs no more
        self.retired: list[tuple[asyncio.AbstractEventLoop, Connection]] = []
        self.layers = LayerStack()
        # the run killed its connections (Ctrl-C): they are let go without a ROLLBACK, which would fail
        self.dead = False

    def root(self, flavor: Flavor) -> Connection | None:
        """The kept connection of that flavor, if any."""
        if flavor == "sync":
            return self.sync
        return self.async_[1] if self.async_ is not None else None

    def take(self, flavor: Flavor, loop: asyncio.AbstractEventLoop | None, who: str) -> Connection | None:
        self.layers.check(flavor, loop, who)
        if flavor == "sync":
            root, self.sync = self.sync, None
            return root
        if self.async_ is not None:
            kept_loop, root = self.async_
            self.async_ = None
            if kept_loop is loop and not root.invalidated:
                return root
            self._retire(kept_loop, root)  # made on another loop: not usable here, nor closable from here
        # back on the loop of a retired connection (the session loop, after function-loop tests): reuse it,
        # so there is never more than one per loop
        for index, (retired_loop, root) in enumerate(self.retired):
            if retired_loop is loop:
                del self.retired[index]
                if not root.invalidated:
                    return root
                discard(root)
                break
        return None

    def give(self, flavor: Flavor, loop: asyncio.AbstractEventLoop | None, root: Connection) -> None:
        if flavor == "sync":
            if self.sync is not None:
                discard(self.sync)
            self.sync = root
        else:
            assert loop is not None
            if self.async_ is not None:
                self._retire(*self.async_)
            self.async_ = (loop, root)

    def drop_async(self) -> None:
        """Forget the kept async connection, dropping it (its loop cannot be driven from here)."""
        if self.async_ is not None:
            discard(self.async_[1])
        self.async_ = None

    def _retire(self, loop: asyncio.AbstractEventLoop, root: Connection) -> None:
        if loop.is_closed() or root.invalidated:
            discard(root)
        else:
            self.retired.append((loop, root))

    def close(self) -> None:
        self.layers.clear()
        if self.sync is not None:
            discard(self.sync, dead=self.dead)
        self.sync = None
        self.close_async()

    def close_async(self) -> None:
        """Close the kept and retired async connections on their loops (pytest-asyncio's session loop is
        still open when its fixture's dependants are torn down)."""
        closing = self.retired + ([self.async_] if self.async_ is not None else [])
        self.retired, self.async_ = [], None
        for loop, root in closing:
            try:
                run_on_idle_loop(loop, partial(self._close_one, root), partial(discard, root))
            except Exception:
                discard(root)

    def _close_one(self, root: Connection) -> None:
        if self.dead:  # ended by the run (Ctrl-C): nothing is sent on it
            discard(root, dead=True)
        else:
            root.close()
