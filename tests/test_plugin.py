"""The plugin's public contract, run as a user would run it: inner pytest runs in a temp project."""

from __future__ import annotations

import os

import psycopg  # noqa: F401  (imported here, not first inside an inner run that pytester unloads)
import pytest

pytestmark = pytest.mark.filterwarnings("ignore::pytest.PytestAssertRewriteWarning")

MODELS = """
from sqlalchemy import String
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, sessionmaker
from sqlalchemy import create_engine

class Base(DeclarativeBase):
    pass

class Item(Base):
    __tablename__ = "items"
    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(20), unique=True)

engine = create_engine("sqlite:////nonexistent/dev.db")
SessionLocal = sessionmaker(bind=engine)
"""


@pytest.fixture
def project(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> pytest.Pytester:
    monkeypatch.delenv("SQLSANDBOX_URL", raising=False)
    pytester.makepyfile(appmodels=MODELS)
    pytester.makeini(
        """
        [pytest]
        pythonpath = .
        asyncio_mode = auto
        asyncio_default_fixture_loop_scope = function
        sqlsandbox_metadata = appmodels:Base
        sqlsandbox_bind = appmodels:SessionLocal
        """
    )
    return pytester


def test_bound_factory_joins_and_is_restored(project: pytest.Pytester) -> None:
    project.makepyfile(
        """
        import appmodels
        from appmodels import Item, SessionLocal

        def test_uses_app_factory(db_session):
            with SessionLocal() as s:
                s.add(Item(name="a")); s.commit()
            assert db_session.query(Item).count() == 1

        def test_again_clean(db_session):
            assert db_session.query(Item).count() == 0
        """
    )
    project.makeconftest(
        """
        import pathlib
        import appmodels

        def pytest_runtest_logfinish(nodeid, location):
            # after each test's teardown: the app's factory and engine are as the app made them
            restored = appmodels.SessionLocal.kw["bind"] is appmodels.engine
            restored = restored and "connect" not in vars(appmodels.engine)
            with open(pathlib.Path(__file__).parent / "restored.txt", "a") as out:
                out.write(f"{restored}\\n")
        """
    )
    result = project.runpytest("-p", "no:randomly")
    assert (project.path / "restored.txt").read_text().split() == ["True", "True"]
    result.assert_outcomes(passed=2)
    result.stdout.fnmatch_lines(["*Every table is as the schema build left it.*"])


def test_cli_beats_env_beats_ini(project: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> None:
    project.makepyfile(
        """
        def test_lock_timeout(request):
            from sqlsandbox.plugin import RUN
            print("TIMEOUT", request.config.stash[RUN].settings.lock_timeout)
        """
    )
    with open(project.path / "tox.ini", "a") as ini:  # makeini writes tox.ini
        ini.write("\nsqlsandbox_lock_timeout = 3\n")
    assert "TIMEOUT 3.0" in project.runpytest("-s").stdout.str()
    monkeypatch.setenv("SQLSANDBOX_LOCK_TIMEOUT", "4")
    assert "TIMEOUT 4.0" in project.runpytest("-s").stdout.str()
    assert "TIMEOUT 5.0" in project.runpytest("-s", "--sqlsandbox-lock-timeout=5").stdout.str()


def test_bad_import_is_one_clear_message(project: pytest.Pytester) -> None:
    project.makepyfile("def test_x(db_session): pass")
    result = project.runpytest("-o", "sqlsandbox_metadata=appmodels:Nope")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*sqlsandbox_metadata entry 'appmodels:Nope'*has no attribute*"])
    assert "Traceback" not in result.stderr.str()


def test_unreachable_server_fails_with_fix(project: pytest.Pytester) -> None:
    project.makepyfile("def test_x(db_session): pass")
    result = project.runpytest("--sqlsandbox-url=postgresql+psycopg://u:secret@127.0.0.1:1/app")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    err = result.stderr.str()
    assert "Could not connect to postgresql+psycopg://u:***@127.0.0.1:1/postgres" in err
    assert "secret" not in err and "Fix: start the server" in err


def test_raw_commit_fails_the_test_at_teardown_even_if_swallowed(project: pytest.Pytester) -> None:
    project.makepyfile(
        """
        from sqlalchemy import text
        def test_swallows(db_session):
            try:
                db_session.execute(text("COMMIT"))
            except Exception:
                pass
        """
    )
    result = project.runpytest()
    result.assert_outcomes(passed=1, errors=1)
    result.stdout.fnmatch_lines(["*COMMIT issued as SQL at *test_raw_commit*.py:4 in test_swallows()*"])


def test_async_connection_from_another_loop(
    project: pytest.Pytester, request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A driver that serves every loop is used from another thread's loop; one that belongs to the loop that
    opened it is explained."""
    from sqlsandbox.plugin import RUN

    url = request.config.stash[RUN].settings.url  # this suite's server, not the project's SQLite default
    if url:
        monkeypatch.setenv("SQLSANDBOX_URL", url)
    project.makepyfile(
        """
        import asyncio, threading
        from sqlalchemy import text

        async def test_other_loop(async_db_session):
            await async_db_session.execute(text("select 1"))
            box = {}
            def elsewhere():
                async def use():
                    return (await async_db_session.execute(text("select 2"))).scalar()
                try:
                    box["value"] = asyncio.run(use())
                except Exception as exc:
                    box["error"] = exc
            t = threading.Thread(target=elsewhere); t.start(); t.join()
            if "error" in box:
                raise box["error"]
            assert box["value"] == 2
        """
    )
    project.runpytest().assert_outcomes(passed=1)  # every async driver's connection serves every loop


@pytest.mark.sqlsandbox_allow_any_database
def test_killed_runs_are_cleaned_and_foreign_databases_never_touched(project: pytest.Pytester) -> None:
    import uuid

    from sqlalchemy import create_engine, text

    from sqlsandbox import marks

    tag = f"foreign{uuid.uuid4().hex[:6]}"  # unique: concurrent runs of this suite must not race
    url = f"postgresql+psycopg://postgres@127.0.0.1:5432/{tag}"
    theirs, killed = f"test_{tag}_theirs", f"test_{tag}_killed"
    admin = create_engine("postgresql+psycopg://postgres@127.0.0.1:5432/postgres", isolation_level="AUTOCOMMIT")
    dead = f"sqlsandbox: created by pid 1073741824 on {marks.host()} at 0"
    try:
        with admin.connect() as conn:
            for name in (theirs, killed):
                conn.execute(text(f"CREATE DATABASE {name}"))
            conn.execute(text(f"COMMENT ON DATABASE {killed} IS '{dead}'"))
    except Exception as exc:  # pragma: no cover - depends on the machine
        if os.environ.get("CI"):
            raise
        pytest.skip(f"PostgreSQL not reachable: {exc}")
    try:
        project.makepyfile("def test_x(db_session): pass")
        result = project.runpytest(f"--sqlsandbox-url={url}")
        result.assert_outcomes(passed=1)
        with admin.connect() as conn:
            names = set(conn.execute(text("SELECT datname FROM pg_database")).scalars())
        assert theirs in names  # no mark of ours: never touched
        assert killed not in names  # ours, from a dead process: removed
        assert not any(n.startswith(f"test_{tag}") and n != theirs for n in names)  # the run's own: dropped
    finally:
        with admin.connect() as conn:
            conn.execute(text(f"DROP DATABASE IF EXISTS {theirs}"))
            conn.execute(text(f"DROP DATABASE IF EXISTS {killed}"))
            templates = conn.execute(  # the schema template this project's run kept
                text("SELECT datname FROM pg_database WHERE shobj_description(oid, 'pg_database') LIKE :m"),
                {"m": f"%of test_{tag};%"},
            ).scalars()
            for name in list(templates):
                conn.execute(text(f'DROP DATABASE "{name}"'))
        admin.dispose()


def test_anyio_and_session_loop(project: pytest.Pytester) -> None:
    project.makepyfile(
        test_anyio="""
        import pytest
        from sqlalchemy import text
        from appmodels import Item

        @pytest.mark.anyio
        @pytest.mark.parametrize("anyio_backend", ["asyncio"])
        async def test_anyio(async_db_session, anyio_backend):
            async_db_session.add(Item(name="a"))
            await async_db_session.commit()
            assert (await async_db_session.execute(text("select count(*) from items"))).scalar() == 1
        """,
        test_session_loop="""
        import pytest
        from appmodels import Item
        from sqlalchemy import select, func

        pytestmark = pytest.mark.asyncio(loop_scope="session")

        async def test_one(async_db_session):
            async_db_session.add(Item(name="a")); await async_db_session.commit()

        async def test_two(async_db_session):
            assert await async_db_session.scalar(select(func.count()).select_from(Item)) == 0
            async_db_session.add(Item(name="a")); await async_db_session.commit()
        """,
    )
    result = project.runpytest("-p", "no:randomly")
    result.assert_outcomes(passed=3)


def test_connections_elsewhere_are_blocked_with_the_test_and_url(project: pytest.Pytester) -> None:
    project.makepyfile(
        """
        import pytest
        from sqlalchemy import create_engine, text

        def test_dev_db_without_sandbox():
            engine = create_engine("postgresql+psycopg://app:s3cret@db.internal:5432/prod")
            with engine.connect() as conn:
                conn.execute(text("select 1"))

        def test_app_engine_created_during_test(db_session):
            engine = create_engine("sqlite:///dev.db")
            engine.connect()

        @pytest.mark.sqlsandbox_allow_any_database
        def test_opted_out(tmp_path):
            engine = create_engine(f"sqlite:///{tmp_path}/other.db")
            with engine.connect() as conn:
                assert conn.execute(text("select 1")).scalar() == 1
        """
    )
    result = project.runpytest("-p", "no:randomly")
    result.assert_outcomes(failed=2, passed=1)
    out = result.stdout.str()
    assert (
        "test_dev_db_without_sandbox tried to connect to postgresql+psycopg://app:***@db.internal:5432/prod"
        in (out)
    )
    assert "s3cret" not in out
    result.stdout.fnmatch_lines(
        ["*test_app_engine_created_during_test tried to connect to sqlite:///*/dev.db*"]
    )
    assert not (project.path / "dev.db").exists()


MODELS_SPLIT = {
    "shop/__init__.py": "",
    "shop/base.py": "from sqlalchemy.orm import DeclarativeBase\nclass Base(DeclarativeBase):\n    pass\n",
    "shop/saas.py": """
from sqlalchemy import ForeignKey
from sqlalchemy.orm import Mapped, mapped_column, relationship
from shop.base import Base

class UsageEvent(Base):
    __tablename__ = "saas_usage_events"
    id: Mapped[int] = mapped_column(primary_key=True)
    subscription_id: Mapped[int] = mapped_column(ForeignKey("subscriptions.id"))
    subscription = relationship("Subscription")
""",
    "shop/ecommerce.py": """
from sqlalchemy.orm import Mapped, mapped_column
from shop.base import Base

class Subscription(Base):
    __tablename__ = "subscriptions"
    id: Mapped[int] = mapped_column(primary_key=True)
""",
}


def test_mapper_error_names_relationship_registry_and_unimported_module(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("SQLSANDBOX_URL", raising=False)
    for path, text in MODELS_SPLIT.items():
        (pytester.path / path).parent.mkdir(parents=True, exist_ok=True)
        (pytester.path / path).write_text(text)
    pytester.makeini("[pytest]\npythonpath = .\nsqlsandbox_metadata = shop.saas:Base\n")
    pytester.makepyfile(test_a="def test_one(db_session): pass\ndef test_two(db_session): pass\n")
    result = pytester.runpytest_subprocess()
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    err = result.stderr.str()
    assert "Relationship shop.saas.UsageEvent.subscription names 'Subscription'" in err
    assert "Registry searched: the one of shop.base.Base" in err
    assert "Modules defining 'Subscription' that were never imported: shop.ecommerce." in err
    assert "Fix: import shop.ecommerce before the mappers are configured" in err
    assert err.count("Relationship") == 1 and "Traceback" not in err  # once, before any test


def test_mapper_error_in_a_second_registry(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SQLSANDBOX_URL", raising=False)
    files = dict(MODELS_SPLIT)
    files["shop/ecommerce.py"] = files["shop/ecommerce.py"].replace(
        "from shop.base import Base",
        "from sqlalchemy.orm import DeclarativeBase\nclass Base(DeclarativeBase):\n    pass",
    )
    files["shop/all.py"] = "import shop.saas, shop.ecommerce\nfrom shop.base import Base\n"
    for path, text in files.items():
        (pytester.path / path).parent.mkdir(parents=True, exist_ok=True)
        (pytester.path / path).write_text(text)
    pytester.makeini("[pytest]\npythonpath = .\nsqlsandbox_metadata = shop.all:Base\n")
    pytester.makepyfile(test_a="def test_one(db_session): pass\n")
    result = pytester.runpytest_subprocess()
    err = result.stderr.str()
    assert "A class 'Subscription' is mapped in another registry: shop.ecommerce.Subscription" in err
    assert "Fix: map 'Subscription' on the same declarative base as shop.saas.UsageEvent" in err
