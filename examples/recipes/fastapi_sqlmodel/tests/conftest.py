import pytest
from sqlmodel import Session

from main import engine


@pytest.fixture
def session():
    # SQLModel's Session (with .exec()) on the app's own engine: sqlsandbox binds main:engine, so this
    # session is in the test's sandbox, on the same connection as the routes' sessions
    with Session(engine) as session:
        yield session
