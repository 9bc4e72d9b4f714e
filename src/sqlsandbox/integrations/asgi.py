"""An httpx client for an ASGI app, in the test's own event loop, with the app's lifespan running.

Why not Starlette's TestClient: it runs the app in a separate thread with its own event loop, so the app's
async database work would run on a connection made for another loop ('Future attached to a different loop',
'another operation is in progress'). httpx's ASGITransport calls the app in the test's loop and task.
"""

from __future__ import annotations

from typing import Any

from ..errors import DriverMissingError
from .loop import LoopBound


class LazyAsgiClient:
    """Behaves as an httpx.AsyncClient; the app's lifespan starts at the first request."""

    def __init__(self, app: Any, base_url: str = "http://testserver") -> None:
        try:
            import httpx
            from asgi_lifespan import LifespanManager
        except ImportError as exc:
            raise DriverMissingError(
                f"asgi_client needs httpx and asgi-lifespan ({exc}).",
                fix="pip install 'sqlsandbox[asgi]'",
            ) from None
        self._app = app
        self._manager_cls = LifespanManager
        self._httpx = httpx
        self._base_url = base_url
        self._client: Any = None
        self.bound = LoopBound()

    async def _ensure(self) -> Any:
        if self._client is None:
            manager = self._manager_cls(self._app)
            await manager.__aenter__()
            transport = self._httpx.ASGITransport(app=manager.app)
            client = self._httpx.AsyncClient(transport=transport, base_url=self._base_url)
            self._client = client

            async def close() -> None:
                await client.aclose()
                await manager.__aexit__(None, None, None)

            self.bound.started(close)
        return self._client

    async def request(self, method: str, url: str, **kwargs: Any) -> Any:
        client = await self._ensure()
        return await client.request(method, url, **kwargs)

    async def get(self, url: str, **kwargs: Any) -> Any:
        return await self.request("GET", url, **kwargs)

    async def post(self, url: str, **kwargs: Any) -> Any:
        return await self.request("POST", url, **kwargs)

    async def put(self, url: str, **kwargs: Any) -> Any:
        return await self.request("PUT", url, **kwargs)

    async def patch(self, url: str, **kwargs: Any) -> Any:
        return await self.request("PATCH", url, **kwargs)

    async def delete(self, url: str, **kwargs: Any) -> Any:
        return await self.request("DELETE", url, **kwargs)

    async def __aenter__(self) -> LazyAsgiClient:
        await self._ensure()
        return self

    async def __aexit__(self, *exc: object) -> None:
        return None
