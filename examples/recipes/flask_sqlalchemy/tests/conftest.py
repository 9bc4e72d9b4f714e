import pytest

from flaskr import create_app


@pytest.fixture(scope="session")
def app(db_url):
    # db_url: the run's test database. Flask-SQLAlchemy builds its engine on it in create_app(), and every
    # engine built on that URL joins the sandbox of the test that uses it: what the views commit is rolled
    # back after each test. One app serves the whole run, as one would in production.
    app = create_app({"TESTING": True, "SQLALCHEMY_DATABASE_URI": db_url})
    yield app


@pytest.fixture()
def client(app):
    return app.test_client()


@pytest.fixture()
def runner(app):
    return app.test_cli_runner()


@pytest.fixture()
def app_ctx(app):
    # for tests that use db.session themselves
    with app.app_context():
        yield
