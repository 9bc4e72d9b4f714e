"""An httpx.AsyncClient for an ASGI app, in the test's own event loop, with the app's lifespan running.

Why not Starlette's TestClient: it runs the app in a separate thread with its own event loop, so the app's
async database work would run on a connection made for another loop ('Future attached to a different loop',
'another operation is in progress'). httpx's ASGITransport calls the app in the test's loop and task.

The fixture is sync (so it serves pytest-asyncio and anyio alike); the lifespan starts in the test's loop at
the first request, or when the test awaits `asgi_client.start()`, and stops at teardown in that same loop.
"""

from __future__ import annotations

from typing import Any

from ..errors import DriverMissingError
from .loop import LoopBound

try:
    import httpx
    from asgi_lifespan import LifespanManager
except ImportError as exc:  # pragma: no cover - exercised only without the extra
    _missing: ImportError | None = exc
else:
    _missing = None


def _require() -> None:
    if _missing is not None:
        raise DriverMissingError(
            f"asgi_client needs httpx and asgi-lifespan ({_missing}).",
            fix="pip install 'sqlsandbox[asgi]'",
        )


class LifespanTransport(httpx.AsyncBaseTransport if _missing is None else object):  # type: ignore[misc]
    """ASGITransport that runs the app's lifespan startup before the first request it carries."""

    def __init__(self, app: Any) -> None:
        self._app = app
        self._inner: Any = None
        self.bound = LoopBound()

    async def start(self) -> None:
        if self._inner is None:
            manager = LifespanManager(self._app)
            await manager.__aenter__()
            self._inner = httpx.ASGITransport(app=manager.app)

            async def stop() -> None:
                await manager.__aexit__(None, None, None)

            self.bound.started(stop)

    async def handle_async_request(self, request: Any) -> Any:
        await self.start()
        return await self._inner.handle_async_request(request)


def make_client(app: Any, base_url: str = "http://testserver") -> Any:
    """An httpx.AsyncClient subclass instance: every httpx feature works (stream, headers, cookies...)."""
    _require()

    class AsgiClient(httpx.AsyncClient):
        async def start(self) -> AsgiClient:
            """Run the app's lifespan startup now (e.g. before reading app.state)."""
            await transport.start()
            return self

    transport = LifespanTransport(app)
    client = AsgiClient(transport=transport, base_url=base_url)
    client._sqlsandbox_transport = transport  # type: ignore[attr-defined]
    return client


def close_client(client: Any) -> None:
    """At teardown, in the loop the app ran in: close the client, then run the lifespan shutdown."""
    transport: LifespanTransport = client._sqlsandbox_transport
    transport.bound._closers.append(client.aclose)  # closers run last-first: the client, then the lifespan
    transport.bound.close()
