"""The module-level `app` (built at import on its own URL, the development file) cannot take the test database's
URL. Its plugin builds the engine lazily, at start-up, and caches it on the config: build it first through the
config and bind that very object, so that the start-up finds it bound."""

import pytest
from advanced_alchemy.extensions.litestar import SQLAlchemyPlugin
from litestar.testing import AsyncTestClient

from library.app import app


@pytest.fixture
async def client(sandbox):
    config = app.plugins.get(SQLAlchemyPlugin).config[0]
    sandbox.bind(config.get_engine())  # get_engine() builds it once and returns the same engine after
    async with AsyncTestClient(app=app) as client:
        yield client


async def test_module_level_app(client):
    assert (await client.post("/authors", json={"name": "Iain M. Banks"})).status_code == 201
    assert [a["name"] for a in (await client.get("/authors")).json()] == ["Iain M. Banks"]


async def test_module_level_app_again(client):
    assert (await client.get("/authors")).json() == []
