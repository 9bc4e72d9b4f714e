import pytest

from clubs.db import SessionLocal, engine, shared_metadata


@pytest.fixture
def db_session():
    shared_metadata.create_all(engine)
    with SessionLocal() as session:
        yield session
