"""Seed layers misused: each mistake is one message naming the layer, the cause and the fix."""

from __future__ import annotations

import psycopg  # noqa: F401  (imported here, not first inside an inner run that pytester unloads)
import pytest

pytestmark = pytest.mark.filterwarnings("ignore::pytest.PytestAssertRewriteWarning")

MODELS = """
from sqlalchemy import String
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

class Base(DeclarativeBase):
    pass

class Item(Base):
    __tablename__ = "items"
    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(20), unique=True)
"""

SEEDS = """
from sqlsandbox import seed
from appmodels import Item

@seed(scope="module")
def items(layer):
    with layer.session() as session:
        session.add(Item(name="seeded"))
        session.commit()

@seed(scope="module")
async def async_items(layer):
    async with layer.async_session() as session:
        session.add(Item(name="seeded"))
        await session.commit()
"""


@pytest.fixture
def project(pytester: pytest.Pytester) -> pytest.Pytester:
    pytester.makepyfile(appmodels=MODELS)
    pytester.makeini(
        """
        [pytest]
        pythonpath = .
        asyncio_mode = auto
        asyncio_default_fixture_loop_scope = function
        sqlsandbox_metadata = appmodels:Base
        """
    )
    return pytester


def test_sync_layer_in_an_async_test(project: pytest.Pytester) -> None:
    project.makepyfile(
        SEEDS + "\nasync def test_async(items, async_db_session):\n    await async_db_session.get(Item, 1)\n"
    )
    result = project.runpytest("-p", "no:randomly")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(
        [
            "*SandboxLayerError: Seed layer 'items' is active, and *test_async cannot use it.",
            "Why: its rows live in the open transaction of the sync sandbox connection, and * uses the async*",
            "Fix: write the seed with the same kind of code as the tests that use it*",
        ]
    )


def test_async_layer_in_a_function_loop_test(project: pytest.Pytester) -> None:
    """Where the async connection serves every loop, a test on its own loop sees the layer; where it belongs
    to the session loop, the test is told to run there."""
    project.makepyfile(
        SEEDS + "\nfrom sqlalchemy import select\n"
        "async def test_async(async_items, async_db_session):\n"
        "    assert (await async_db_session.scalars(select(Item.name))).all() == ['seeded']\n"
    )
    project.runpytest("-p", "no:randomly").assert_outcomes(passed=1)  # every async driver serves every loop


def test_async_layer_on_the_session_loop_works(project: pytest.Pytester) -> None:
    project.makepyfile(
        SEEDS
        + """
import pytest
from sqlalchemy import select

@pytest.mark.asyncio(loop_scope="session")
async def test_async(async_items, async_db_session):
    assert list(await async_db_session.scalars(select(Item.name))) == ["seeded"]
"""
    )
    project.runpytest("-p", "no:randomly").assert_outcomes(passed=1)


def test_a_connection_kept_on_the_session_loop_is_closed_when_a_test_needs_another_loop(
    project: pytest.Pytester,
) -> None:
    """The connection kept on the session loop (for a layer, or between session-loop tests) cannot serve a
    test on its own function loop. It must be closed on its loop, not dropped for the garbage collector to
    find with a transaction state nobody knows (SQLAlchemy warns: non-checked-in connection)."""
    project.makepyfile(
        SEEDS
        + """
import gc
import pytest
from sqlalchemy import select

@pytest.mark.asyncio(loop_scope="session")
async def test_on_the_session_loop(async_items, async_db_session):
    assert list(await async_db_session.scalars(select(Item.name))) == ["seeded"]

async def test_on_a_function_loop(async_db_session):
    assert list(await async_db_session.scalars(select(Item.name))) == []

@pytest.mark.parametrize("n", range(3))
@pytest.mark.asyncio(loop_scope="session")
async def test_back_on_the_session_loop(async_db_session, n):
    assert list(await async_db_session.scalars(select(Item.name))) == []

@pytest.mark.parametrize("n", range(3))
async def test_and_on_function_loops_again(async_db_session, n):
    assert list(await async_db_session.scalars(select(Item.name))) == []

def test_last(request):
    from sqlsandbox.plugin import RUN

    gc.collect()  # a connection dropped without being closed is found now, and warned about
    assert len(request.config.stash[RUN].keeper.retired) <= 1  # one per loop, not one per switch
"""
    )
    result = project.runpytest("-p", "no:randomly", "-W", "always::sqlalchemy.exc.SAWarning")
    result.assert_outcomes(passed=9)
    assert "non-checked-in connection" not in str(result.stdout), str(result.stdout)


def test_uncommitted_seed_work_is_refused(project: pytest.Pytester) -> None:
    project.makepyfile(
        """
from sqlsandbox import seed
from appmodels import Item

@seed(scope="module")
def half_done(layer):
    session = layer.session()
    session.add(Item(name="pending"))
    session.flush()

def test_uses_it(half_done, db_session):
    pass

def test_after(db_session):
    assert db_session.query(Item).count() == 0
"""
    )
    result = project.runpytest("-p", "no:randomly")
    result.assert_outcomes(passed=1, errors=1)
    result.stdout.fnmatch_lines(
        [
            "*SandboxLayerError: Seed layer 'half_done' returned with uncommitted work: *",
            "Fix: commit the session before the seed function returns*",
        ]
    )


def test_a_failing_seed_leaves_nothing(project: pytest.Pytester) -> None:
    project.makepyfile(
        """
from sqlsandbox import seed
from appmodels import Item

@seed(scope="module")
def broken(layer):
    with layer.session() as session:
        session.add(Item(name="half"))
        session.commit()
    raise RuntimeError("seed failed")

def test_uses_it(broken):
    pass

def test_after(db_session):
    assert db_session.query(Item).count() == 0
"""
    )
    result = project.runpytest("-p", "no:randomly")
    result.assert_outcomes(passed=1, errors=1)
    result.stdout.fnmatch_lines(
        ["*RuntimeError: seed failed*", "*Every table is as the schema build left it.*"]
    )


def test_committed_test_inside_a_layer_is_refused(project: pytest.Pytester) -> None:
    project.makepyfile(
        SEEDS
        + """
import pytest

@pytest.mark.sqlsandbox(committed=True)
def test_committed(items, db_session):
    pass
"""
    )
    result = project.runpytest("-p", "no:randomly")
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(
        ["*SandboxLayerError: *test_committed is marked committed=True and runs inside seed layer 'items'.*"]
    )


def test_async_seed_without_pytest_asyncio(project: pytest.Pytester) -> None:
    project.makepyfile(SEEDS + "\ndef test_x(async_items):\n    pass\n")
    result = project.runpytest("-p", "no:randomly", "-p", "no:asyncio")
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(["*Seed layer 'async_items' is async, and pytest-asyncio * is not active.*"])


def test_seed_needs_the_layer_argument() -> None:
    from sqlsandbox import seed

    with pytest.raises(TypeError, match="must take the layer as its first argument"):
        seed(lambda: None)
    with pytest.raises(ValueError, match="seed scope must be"):
        seed(scope="function")  # type: ignore[arg-type]


def test_session_layer_in_conftest_with_module_layers_stacked(project: pytest.Pytester) -> None:
    """A session seed in conftest.py is written once for the whole run; module seeds stack on it; a module
    that does not ask for them sees none of it; and nothing is left at the end."""
    project.makeconftest(
        """
from sqlsandbox import seed
from appmodels import Item

CALLS = []

@seed(scope="session")
def base_items(layer):
    CALLS.append("session")
    with layer.session() as session, session.begin():
        session.add(Item(name="base"))
"""
    )
    project.makepyfile(
        test_a="""
from sqlsandbox import seed
from appmodels import Item
import conftest

@seed(scope="module")
def more_items(layer, base_items):
    with layer.session() as session, session.begin():
        session.add(Item(name="more"))

def names(db_session):
    return sorted(i.name for i in db_session.query(Item))

def test_stacked(more_items, db_session):
    assert names(db_session) == ["base", "more"]
    db_session.query(Item).delete()
    db_session.commit()

def test_stacked_again(more_items, db_session):
    assert names(db_session) == ["base", "more"]

def test_session_only(base_items, db_session):
    assert names(db_session) == ["base"]
""",
        test_b="""
from appmodels import Item
import conftest

def test_no_layer(db_session):
    assert db_session.query(Item).count() == 0

def test_base_again(base_items, db_session):
    assert [i.name for i in db_session.query(Item)] == ["base"]
""",
        test_c="""
import conftest

def test_calls():
    # seeded once, plus at most once more after test_no_layer ended it (pytest may order tests so it
    # does not have to); never once per test
    assert conftest.CALLS in (["session"], ["session", "session"])
""",
    )
    result = project.runpytest("-p", "no:randomly")
    result.assert_outcomes(passed=6)
    result.stdout.fnmatch_lines(["*Every table is as the schema build left it.*"])


STACK_CONFTEST = """
from sqlsandbox import seed
from appmodels import Item

def add(layer, name):
    with layer.session() as session, session.begin():
        session.add(Item(name=name))

@seed(scope="session")
def users(layer):
    add(layer, "user")

@seed(scope="module")
def catalogue(layer):
    add(layer, "product")

def names(db_session):
    return sorted(i.name for i in db_session.query(Item))
"""


def test_layers_stack_in_setup_order_and_never_vanish(project: pytest.Pytester) -> None:
    """Unrelated layers stack in the order tests set them up, not by scope: ending one (unused by the next
    test, or at the end of its scope) ends those above it too, and pytest seeds them again when asked, so a
    test never gets a layer's value without its rows."""
    project.makeconftest(STACK_CONFTEST)
    project.makepyfile(
        test_a="""
from conftest import names

def test_both(users, catalogue, db_session):
    assert names(db_session) == ["product", "user"]

def test_catalogue_only(catalogue, db_session):  # users (below catalogue) is ended; catalogue seeded again
    assert names(db_session) == ["product"]
""",
        test_b="""
from conftest import names

def test_module_first(catalogue, db_session):
    assert names(db_session) == ["product"]

def test_session_above_module(catalogue, users, db_session):  # users now sits above catalogue
    assert names(db_session) == ["product", "user"]
""",
        test_c="""
from conftest import names

def test_session_after_its_module_below_ended(users, db_session):
    assert names(db_session) == ["user"]
""",
    )
    result = project.runpytest("-p", "no:randomly")
    result.assert_outcomes(passed=5)
    result.stdout.fnmatch_lines(["*Every table is as the schema build left it.*"])


def test_a_test_without_the_database_leaves_layers_be(project: pytest.Pytester) -> None:
    project.makepyfile(
        """
from sqlsandbox import seed
from appmodels import Item

CALLS = []

@seed(scope="module")
def items(layer):
    CALLS.append(1)
    with layer.session() as session, session.begin():
        session.add(Item(name="seeded"))

def test_first(items, db_session):
    assert db_session.query(Item).count() == 1

def test_pure_unit():
    assert 1 + 1 == 2

def test_second(items, db_session):
    assert db_session.query(Item).count() == 1
    assert CALLS == [1]  # the unit test in between (no database) did not end the layer
"""
    )
    project.runpytest("-p", "no:randomly").assert_outcomes(passed=3)
