"""A grpc.aio server on an ephemeral 127.0.0.1 port, started in the test's own event loop."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ..errors import DriverMissingError
from .loop import LoopBound


class GrpcTestServer:
    """Register servicers with add(), then `await stub(StubClass)` starts the server and connects."""

    def __init__(self) -> None:
        try:
            import grpc  # noqa: F401
        except ImportError:
            raise DriverMissingError(
                "grpc_server needs grpcio.", fix="pip install 'sqlsandbox[grpc]'"
            ) from None
        self._registrations: list[tuple[Callable[[Any, Any], None], Any]] = []
        self._server: Any = None
        self._channel: Any = None
        self.port: int | None = None
        self.bound = LoopBound()

    def add(self, add_to_server: Callable[[Any, Any], None], servicer: Any) -> None:
        if self._server is not None:
            raise RuntimeError("grpc_server.add() must be called before the server starts")
        self._registrations.append((add_to_server, servicer))

    async def start(self) -> str:
        """Start once; returns the target address."""
        if self._server is None:
            import grpc

            server = grpc.aio.server()
            for add_to_server, servicer in self._registrations:
                add_to_server(servicer, server)
            self.port = server.add_insecure_port("127.0.0.1:0")
            await server.start()
            self._server = server
            self._channel = grpc.aio.insecure_channel(f"127.0.0.1:{self.port}")

            async def close() -> None:
                await self._channel.close()
                await server.stop(grace=None)

            self.bound.started(close)
        return f"127.0.0.1:{self.port}"

    async def channel(self) -> Any:
        await self.start()
        return self._channel

    async def stub(self, stub_class: Callable[[Any], Any]) -> Any:
        return stub_class(await self.channel())
