import os
from unittest.mock import AsyncMock

import pytest

TEST_DATABASE_URL = os.environ.get("DATABASE_URL", "sqlite+aiosqlite:///./notes_dev.db")


@pytest.fixture
def session():
    return AsyncMock()
