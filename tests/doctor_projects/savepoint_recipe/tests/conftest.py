import pytest
from fastapi.testclient import TestClient
from sqlalchemy import create_engine, event
from sqlalchemy.orm import Session

from shop.api import app, get_db
from shop.models import Base

engine = create_engine("sqlite:///./shop_test.db")


@pytest.fixture(scope="session")
def connection():
    Base.metadata.create_all(engine)
    conn = engine.connect()
    yield conn
    conn.close()
    Base.metadata.drop_all(engine)


@pytest.fixture
def session(connection):
    transaction = connection.begin()
    session = Session(bind=connection)
    session.begin_nested()

    @event.listens_for(session, "after_transaction_end")
    def restart_savepoint(sess, trans):
        if trans.nested and not trans._parent.nested:
            sess.begin_nested()

    yield session
    session.close()
    transaction.rollback()


@pytest.fixture
def client(session):
    app.dependency_overrides[get_db] = lambda: session
    yield TestClient(app)
    app.dependency_overrides.clear()
