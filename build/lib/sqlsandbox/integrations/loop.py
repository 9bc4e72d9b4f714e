"""Start async resources lazily in the test's loop from sync fixtures, and stop them in that same loop."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any


class LoopBound:
    """Remembers the loop an async resource was started on, to run its shutdown there at teardown."""

    def __init__(self) -> None:
        self.loop: asyncio.AbstractEventLoop | None = None
        self._closers: list[Callable[[], Awaitable[Any]]] = []

    def started(self, closer: Callable[[], Awaitable[Any]]) -> None:
        self.loop = asyncio.get_running_loop()
        self._closers.append(closer)

    def close(self) -> None:
        loop, closers, self._closers = self.loop, self._closers, []
        if loop is None or not closers:
            return  # never started: nothing ran in any loop

        async def run_all() -> None:
            for closer in reversed(closers):
                await closer()

        if loop.is_closed() or loop.is_running():
            return  # the loop is gone: its tasks were cancelled with it
        loop.run_until_complete(run_all())
