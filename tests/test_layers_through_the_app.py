"""A seed layer built through the app's own API: users and tokens created once per module by HTTP calls,
sync through Starlette's TestClient (FastAPI `def` routes in worker threads) and async through
`layer.asgi_client(app)`; every test of the module sees them, writes on top go back to them, and a test
that does not ask for the layer sees nothing."""

from __future__ import annotations

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import select
from sqlalchemy.orm import Session

from sqlsandbox import Sandbox, seed
from tests import app as app_db
from tests.models import Owner

api = FastAPI()


@api.post("/owners/{name}", status_code=201)
def create(name: str) -> dict[str, int]:
    return {"id": app_db.create_owner(name)}  # the app's own bound SessionLocal, in a worker thread


@api.post("/async-owners/{name}", status_code=201)
async def acreate(name: str) -> dict[str, int]:
    return {"id": await app_db.acreate_owner(name)}


def names(session: Session) -> list[str]:
    return list(session.scalars(select(Owner.name).order_by(Owner.name)))


@seed(scope="module")
def users_via_http(layer: Sandbox) -> dict[str, int]:
    with TestClient(api) as client:
        return {name: client.post(f"/owners/{name}").json()["id"] for name in ("ann", "bob")}


@seed(scope="module")
async def users_via_asgi(layer: Sandbox) -> list[str]:
    client = layer.asgi_client(api)
    assert (await client.post("/async-owners/cy")).status_code == 201
    return ["cy"]


@pytest.mark.parametrize("n", [1, 2])
def test_the_layer_made_through_testclient_is_there(
    users_via_http: dict[str, int], db_session: Session, n: int
) -> None:
    assert names(db_session) == ["ann", "bob"]
    assert db_session.get(Owner, users_via_http["ann"]) is not None
    db_session.add(Owner(name=f"dee{n}"))  # goes back to the layer
    db_session.commit()
    with TestClient(api) as client:  # the app sees the layer and the test's own commit
        assert client.post("/owners/eve").status_code == 201
    assert names(db_session) == ["ann", "bob", f"dee{n}", "eve"]


def test_a_test_without_the_layer_sees_nothing(db_session: Session) -> None:
    assert names(db_session) == []


@pytest.mark.asyncio(loop_scope="session")
@pytest.mark.parametrize("n", [1, 2])
async def test_the_layer_made_through_asgi_client_is_there(
    users_via_asgi: list[str], sandbox: Sandbox, n: int
) -> None:
    async with sandbox.async_session() as session:
        assert list(await session.scalars(select(Owner.name))) == ["cy"]
        session.add(Owner(name=f"fay{n}"))
        await session.commit()
        assert list(await session.scalars(select(Owner.name).order_by(Owner.name))) == ["cy", f"fay{n}"]
