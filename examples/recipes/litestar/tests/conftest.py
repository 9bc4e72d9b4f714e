from collections.abc import AsyncIterator

import pytest
from litestar import Litestar
from litestar.testing import AsyncTestClient

from library.app import create_app


@pytest.fixture(scope="session")
def app(async_db_url) -> Litestar:
    # async_db_url: the run's test database with its async driver. The plugin builds its engine on it at
    # start-up, and every engine built on that URL joins the sandbox of the test that uses it.
    return create_app(async_db_url)


@pytest.fixture
async def client(app: Litestar) -> AsyncIterator[AsyncTestClient[Litestar]]:
    # Litestar's testing docs' client; entering it runs the app's lifespan (the plugin's start-up)
    async with AsyncTestClient(app=app) as client:
        yield client
