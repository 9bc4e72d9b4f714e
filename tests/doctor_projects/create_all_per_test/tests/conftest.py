import pytest
from sqlalchemy import text

from ledger.db import engine
from ledger.models import Base


@pytest.fixture(autouse=True)
def tables():
    Base.metadata.create_all(engine)
    yield
    Base.metadata.drop_all(engine)


@pytest.fixture(autouse=True)
def clean_up():
    yield
    with engine.begin() as conn:
        conn.execute(text("DELETE FROM tokens"))
        conn.execute(text("DELETE FROM accounts"))
