"""sandbox.asgi_client(app): a client for any ASGI app, as many as a test needs, each in the sandbox and
the test's loop, with its lifespan started at the first request and stopped when the test ends."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Iterator

import pytest
from fastapi import FastAPI
from sqlalchemy import select

from sqlsandbox import Sandbox
from tests import app as app_db
from tests.models import Owner

LIFESPANS: list[str] = []


@pytest.fixture(scope="module")
def lifespans() -> Iterator[list[str]]:
    """Torn down after the module's tests and their sandboxes: every lifespan started was stopped, last
    started first stopped."""
    yield LIFESPANS
    assert LIFESPANS == ["admin up", "shop up", "shop down", "admin down"] * 2


def make_app(name: str) -> FastAPI:
    @contextlib.asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        LIFESPANS.append(f"{name} up")
        yield
        LIFESPANS.append(f"{name} down")

    api = FastAPI(lifespan=lifespan)

    @api.post("/owners/{owner}")
    async def create(owner: str) -> dict[str, str]:
        async with app_db.AsyncSessionLocal() as session:  # the app's own factory, bound by pyproject
            session.add(Owner(name=f"{name}:{owner}"))
            await session.commit()
        return {"created": owner}

    @api.get("/owners")
    async def names() -> list[str]:
        async with app_db.AsyncSessionLocal() as session:
            return list(await session.scalars(select(Owner.name).order_by(Owner.name)))

    return api


@pytest.mark.parametrize("n", [1, 2])
async def test_two_apps_share_the_sandbox(lifespans: list[str], sandbox: Sandbox, n: int) -> None:
    before = len(lifespans)
    admin, shop = sandbox.asgi_client(make_app("admin")), sandbox.asgi_client(make_app("shop"))
    assert (await admin.post("/owners/ann")).status_code == 200
    assert (await shop.post("/owners/bob")).status_code == 200
    # each sees what the other committed, and nothing of the other parametrization's run
    assert (await shop.get("/owners")).json() == ["admin:ann", "shop:bob"]
    assert lifespans[before:] == ["admin up", "shop up"]
