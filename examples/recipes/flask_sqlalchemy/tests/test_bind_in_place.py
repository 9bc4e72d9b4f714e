"""The other way, for an app whose database URL a test cannot set (read from a config file, say): build it as
it is, then bind the engine Flask-SQLAlchemy built, in place. Flask-SQLAlchemy's session finds its engine
through db.engines, so binding that very object is what makes db.session join the sandbox."""

import pytest

from flaskr import create_app
from flaskr.db import db
from flaskr.models import Book


@pytest.fixture()
def app(sandbox):  # overrides conftest's app for this module
    app = create_app({"TESTING": True})  # its own URL: the development file in the instance folder
    with app.app_context():
        sandbox.bind(db.engine)  # until this test ends
    return app


def test_views_commit_into_the_sandbox(client, app):
    response = client.post("/books/", json={"title": "Middlemarch", "author": "George Eliot"})
    assert response.status_code == 201
    with app.app_context():
        assert db.session.scalars(db.select(Book.title)).all() == ["Middlemarch"]


def test_and_the_next_test_sees_none_of_it(client):
    assert client.get("/books/").json == []
