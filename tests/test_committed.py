"""@pytest.mark.sqlsandbox(committed=True): work commits for real, for other threads and connections, and
the tables the test touched are emptied (identities restarted) afterwards. The tests run in random order
with the others; each asserts it starts from ids at 1 and empty tables."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path

import pytest
from sqlalchemy import func, select, text

from tests import app
from tests.models import Owner, Pet

committed = pytest.mark.sqlsandbox(committed=True)


def committed_names(sandbox) -> list[str]:
    return sandbox.db.run(lambda c: list(c.execute(text("SELECT name FROM owners ORDER BY name")).scalars()))


@committed
def test_other_threads_see_committed_work(sandbox) -> None:
    results: dict[str, int] = {}
    thread = threading.Thread(target=lambda: results.setdefault("id", app.create_owner("ann")))
    thread.start()
    thread.join()
    assert results["id"] > 0
    assert committed_names(sandbox) == ["ann"]  # visible on an unrelated connection: really committed
    assert app.owner_names() == ["ann"]


def test_identities_restart_after_a_committed_test(pytester: pytest.Pytester) -> None:
    pytester.makeini(
        "[pytest]\nasyncio_default_fixture_loop_scope = function\n"
        "sqlsandbox_metadata = tests.models:Base\nsqlsandbox_bind = tests.app:SessionLocal\n"
    )
    pytester.makepyfile(
        """
        import pytest
        from tests import app

        @pytest.mark.sqlsandbox(committed=True)
        @pytest.mark.parametrize("round_", [1, 2, 3])
        def test_round(round_):
            assert app.create_owner("ann") == 1
        """
    )
    pytester.syspathinsert(str(Path(__file__).resolve().parent.parent))
    result = pytester.runpytest("-p", "no:randomly")
    result.assert_outcomes(passed=3)


@committed
async def test_async_committed_with_concurrent_connections(sandbox, async_db_session) -> None:
    await asyncio.gather(*(app.acreate_owner(f"u{i}") for i in range(5)))
    assert await async_db_session.scalar(select(func.count()).select_from(Owner)) == 5
    assert len(committed_names(sandbox)) == 5


@committed
def test_only_touched_tables_are_cleaned(sandbox, db_session) -> None:
    db_session.add(Owner(name="ann", pets=[Pet(name="rex")]))
    db_session.commit()
    assert sandbox.touched == {"owners", "pets"}


def test_after_committed_tests_everything_is_empty(db_session) -> None:
    assert db_session.scalar(select(func.count()).select_from(Owner)) == 0
    assert db_session.scalar(select(func.count()).select_from(Pet)) == 0


@committed
def test_text_writes_are_cleaned_too(sandbox, db_connection) -> None:
    db_connection.execute(text("INSERT INTO owners (name) VALUES ('raw')"))
    db_connection.commit()
    assert "owners" in sandbox.touched
