"""Command line: ``python -m ops_core init-db`` creates the tables; ``grpc`` serves gRPC.

The REST API is an ASGI app: ``uvicorn ops_core.api:app``.
"""

from __future__ import annotations

import argparse
import asyncio
import logging

from ops_core.db import engine
from ops_core.grpc_service import serve
from ops_core.models import Base


async def init_db() -> None:
    async with engine.begin() as conn:
        await conn.run_sync(Base.metadata.create_all)
    await engine.dispose()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="ops_core")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("init-db", help="create the database tables")
    grpc_cmd = sub.add_parser("grpc", help="serve the gRPC TaskService")
    grpc_cmd.add_argument("--address", default="[::]:50051")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO)
    if args.command == "init-db":
        asyncio.run(init_db())
    else:
        asyncio.run(serve(args.address))


if __name__ == "__main__":
    main()
