"""Binding reaches every way a real app gets its connections: engines derived from a bound one
(`execution_options`, made per request by multi-tenant apps), `inspect(engine)`, engines the app builds
itself on the test database's URL (an app factory, a lifespan), copies made by `from app.db import engine`,
and bind specs that are attribute paths. Each writes, and the next test must not see it."""

from __future__ import annotations

import os

import psycopg  # noqa: F401  (imported here, not first inside an inner run that pytester unloads)
import pytest
from sqlalchemy import Column, Integer, MetaData, String, Table, create_engine, func, insert, inspect, select
from sqlalchemy.engine import Engine
from sqlalchemy.ext.asyncio import AsyncSession, create_async_engine
from sqlalchemy.orm import Session

from sqlsandbox import ConfigError, Sandbox
from tests import app
from tests.models import Owner

# The owners table as a tenant-per-schema app declares it: schema "tenant", translated per request.
tenant_owners = Table(
    "owners", MetaData(schema="tenant"), Column("id", Integer, primary_key=True), Column("name", String(50))
)


def _owners(session: Session) -> list[str]:
    return list(session.scalars(select(Owner.name).order_by(Owner.name)))


@pytest.mark.parametrize("n", [1, 2])
def test_an_engine_derived_from_a_bound_one_joins_the_sandbox(db_session: Session, n: int) -> None:
    # app.engine is bound; the derived engine is a new object whose connect() was never patched
    tenant = app.engine.execution_options(schema_translate_map={"tenant": None})
    assert "connect" not in vars(tenant)
    with tenant.begin() as conn:  # "tenant.owners" exists only through the translate map
        conn.execute(insert(tenant_owners).values(name="ann"))
    assert _owners(db_session) == ["ann"]  # one connection: the test sees it, and the next test must not


@pytest.mark.parametrize("n", [1, 2])
def test_an_engine_derived_from_the_sandboxs_own_joins_it(
    sandbox: Sandbox, db_session: Session, n: int
) -> None:
    derived = sandbox.sync_engine.execution_options(schema_translate_map={"tenant": None})
    with Session(derived) as session:
        session.execute(insert(tenant_owners).values(name="bob"))
        session.commit()
    assert _owners(db_session) == ["bob"]


def test_a_session_of_the_apps_own_class(sandbox: Sandbox) -> None:
    class AppSession(Session):  # SQLModel's Session, or an app's own, adds methods the test wants
        def names(self) -> list[str]:
            return _owners(self)

    session = sandbox.session(class_=AppSession)
    session.add(Owner(name="eve"))
    session.commit()
    assert isinstance(session, AppSession) and session.names() == ["eve"]


def test_inspecting_a_bound_engine_sees_the_test_database(sandbox: Sandbox) -> None:
    # app.engine's own URL names a file that does not exist: what it lists is the test database's
    assert {"owners", "pets"} <= set(inspect(app.engine).get_table_names())


@pytest.mark.parametrize("n", [1, 2])
def test_an_engine_built_on_the_test_url_joins_the_sandbox(
    sandbox: Sandbox, db_session: Session, n: int
) -> None:
    engine = create_engine(sandbox.url)  # as an app factory given the test database's URL builds it
    with Session(engine) as session:
        session.add(Owner(name="cy"))
        session.commit()
    assert _owners(db_session) == ["cy"]
    engine.dispose()


@pytest.mark.parametrize("n", [1, 2])
async def test_an_async_engine_built_on_the_test_url_joins_the_sandbox(sandbox: Sandbox, n: int) -> None:
    engine = create_async_engine(sandbox.async_url)
    async with AsyncSession(engine) as session:
        session.add(Owner(name="di"))
        await session.commit()
    async with AsyncSession(sandbox.async_engine) as check:
        assert list(await check.scalars(select(Owner.name))) == ["di"]
    await engine.dispose()


def test_an_adopted_engine_is_let_go_after_the_test(sandbox: Sandbox) -> None:
    engine = create_engine(sandbox.url)
    with engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(Owner)).scalar() == 0
    assert "connect" in vars(engine)  # joined for the rest of the test
    sandbox.bindings.restore()  # what the end of the test does
    assert "connect" not in vars(engine)


PROJECT_MODELS = """
from sqlalchemy import String, create_engine
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, sessionmaker

class Base(DeclarativeBase):
    pass

class Item(Base):
    __tablename__ = "items"
    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(20), unique=True)

class Registry:  # an app's settings object, holding its engine as an attribute
    def __init__(self):
        self.engine = create_engine("sqlite:////nonexistent/dev.db")
        self.sessions = sessionmaker(bind=self.engine)

class LazyConfig:  # advanced-alchemy's SQLAlchemyAsyncConfig builds its engine on first get_engine()
    def __init__(self):
        self.engine_instance = None

    def get_engine(self):
        if self.engine_instance is None:
            self.engine_instance = create_engine("sqlite:////nonexistent/dev.db")
        return self.engine_instance

registry = Registry()
alchemy = LazyConfig()
engine = create_engine("sqlite:////nonexistent/dev.db")
"""

PROJECT_VIEWS = """
from appmodels import engine  # a copy of the name, made at import: binding patches the object itself
from appmodels import Item
from sqlalchemy import insert

def add_item(name):
    with engine.begin() as conn:
        conn.execute(insert(Item).values(name=name))
"""


@pytest.fixture
def project(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> pytest.Pytester:
    for name in [name for name in os.environ if name.startswith("SQLSANDBOX_") and name != "SQLSANDBOX_URL"]:
        monkeypatch.delenv(name)
    pytester.makepyfile(appmodels=PROJECT_MODELS, appviews=PROJECT_VIEWS)
    return pytester


def test_bind_specs_are_attribute_paths_and_one_ini_line_may_hold_several(project: pytest.Pytester) -> None:
    project.makeini(
        """
        [pytest]
        pythonpath = .
        sqlsandbox_metadata = appmodels:Base
        sqlsandbox_bind = appmodels:registry.sessions appmodels:engine
            appmodels:alchemy
        """
    )
    project.makepyfile(
        """
        import pytest
        from sqlalchemy import func, select
        import appmodels, appviews

        @pytest.mark.parametrize("n", [1, 2])
        def test_both(db_session, n):
            with appmodels.registry.sessions() as s:
                s.add(appmodels.Item(name="a")); s.commit()
            appviews.add_item("b")  # through the copy of `engine`
            with appmodels.alchemy.get_engine().begin() as conn:  # built at start-up by get_engine()
                conn.execute(appmodels.Item.__table__.insert().values(name="c"))
            assert db_session.scalar(select(func.count()).select_from(appmodels.Item)) == 3
        """
    )
    result = project.runpytest_subprocess("-p", "no:randomly")
    result.assert_outcomes(passed=2)
    result.stdout.fnmatch_lines(["*Every table is as the schema build left it.*"])


def test_an_app_factory_given_db_url_runs_in_the_sandbox(project: pytest.Pytester) -> None:
    """The engine is built once, in a session fixture, on the URL sqlsandbox hands out; no sqlsandbox_bind,
    and the tests ask for the app only: each still runs in a sandbox of its own."""
    project.makeini(
        """
        [pytest]
        pythonpath = .
        asyncio_mode = auto
        asyncio_default_fixture_loop_scope = function
        sqlsandbox_metadata = appmodels:Base
        """
    )
    project.makeconftest(
        """
        import pathlib
        import pytest
        from sqlalchemy import create_engine
        from sqlalchemy.engine import Engine
        from sqlalchemy.ext.asyncio import create_async_engine
        from sqlalchemy.orm import sessionmaker

        # another library's wrapper of Engine.connect (a tracer's): it must survive the run's sandboxes
        TRACED = []
        _connect = Engine.connect
        def traced_connect(self):
            TRACED.append(self.url.database)
            return _connect(self)
        Engine.connect = traced_connect
        APP = {}

        def create_app(database_url):
            engine = create_engine(database_url, pool_pre_ping=True)
            return {"engine": engine, "sessions": sessionmaker(bind=engine)}

        @pytest.fixture(scope="session")
        def app(db_url):
            made = create_app(db_url)
            APP.update(made)
            yield made
            made["engine"].dispose()

        def pytest_runtest_logfinish(nodeid, location):
            from sqlsandbox.binding import adopting
            with open(pathlib.Path(__file__).parent / "after.txt", "a") as out:
                out.write(f"{adopting()} {Engine.__dict__['connect'] is traced_connect}\\n")

        @pytest.fixture(scope="session")
        def async_engine(async_db_url):
            return create_async_engine(async_db_url)
        """
    )
    project.makepyfile(
        """
        import pytest
        from sqlalchemy import func, select
        from sqlalchemy.ext.asyncio import AsyncSession
        from appmodels import Item

        @pytest.mark.parametrize("n", [1, 2, 3])
        def test_signup(app, n):
            with app["sessions"]() as s:
                s.add(Item(name="ann")); s.commit()  # unique: a second test would fail if it leaked
                assert s.scalar(select(func.count()).select_from(Item)) == 1

        def test_z_without_asking_for_the_app():  # after test_signup handed the URL out: it has a sandbox
            import conftest
            with conftest.APP["sessions"]() as s:
                s.add(Item(name="ann")); s.commit()

        @pytest.mark.parametrize("n", [1, 2])
        async def test_async(async_engine, n):
            async with AsyncSession(async_engine) as s:
                s.add(Item(name="bo")); await s.commit()
                assert await s.scalar(select(func.count()).select_from(Item)) == 1
        """
    )
    result = project.runpytest_subprocess("-p", "no:randomly")
    result.assert_outcomes(passed=6)
    result.stdout.fnmatch_lines(["*Every table is as the schema build left it.*"])
    # after each test: no class-level hook left in, and the tracer's wrapper is Engine.connect again
    assert (project.path / "after.txt").read_text().split("\n")[:-1] == ["False True"] * 6


@pytest.mark.sqlsandbox(committed=True)
def test_an_engine_on_the_test_url_joins_committed_mode_too(sandbox: Sandbox) -> None:
    engine = create_engine(sandbox.url)
    with Session(engine) as session:
        session.add(Owner(name="fi"))
        session.commit()
    with sandbox.session() as other:  # committed for real: another connection sees it
        assert _owners(other) == ["fi"]
    assert "owners" in sandbox.touched  # emptied after the test (the next test's check says so)
    engine.dispose()


class _LazyConfig:
    """advanced-alchemy's config: get_engine() builds the engine once, on the app's own URL."""

    def __init__(self, fails: bool = False) -> None:
        self.fails = fails
        self.engine: Engine | None = None

    def get_engine(self) -> Engine:
        if self.fails:
            raise RuntimeError("Working outside of application context.")
        if self.engine is None:
            self.engine = create_engine(f"sqlite:///{app.DEV_DB}")
        return self.engine


def test_sandbox_bind_takes_a_config_with_get_engine(sandbox: Sandbox, db_session: Session) -> None:
    config = sandbox.bind(_LazyConfig())
    with config.get_engine().begin() as conn:
        conn.execute(insert(Owner).values(name="gus"))
    assert _owners(db_session) == ["gus"]


def test_a_get_engine_that_fails_is_one_clear_message(sandbox: Sandbox) -> None:
    with pytest.raises(ConfigError, match=r"get_engine\(\) failed: RuntimeError: Working outside") as error:
        sandbox.bind(_LazyConfig(fails=True))
    assert "db_url" in str(error.value)
