"""The pitfalls of seeds 000/001, each shown gone with sqlsandbox.mocks and faults.dbapi_error."""

from __future__ import annotations

import pytest
from sqlalchemy.exc import OperationalError

from sqlsandbox import mocks
from sqlsandbox.faults import dbapi_error


class CacheStorageError(Exception):
    pass


async def cache_results(factory, rows) -> int:
    """Code under test, shaped like biomapper's _cache_results."""
    async with factory() as session:
        session.add_all(rows)
        try:
            await session.commit()
        except OperationalError as exc:
            await session.rollback()
            raise CacheStorageError(f"could not cache {len(rows)} rows") from exc
    return len(rows)


async def test_commit_failure_becomes_cache_storage_error() -> None:
    session = mocks.async_session()
    session.commit.side_effect = dbapi_error(OperationalError, "Commit failed")
    factory = mocks.async_sessionmaker(session)
    with pytest.raises(CacheStorageError) as raised:
        await cache_results(factory, ["a", "b"])
    assert "Commit failed" in str(raised.value.__cause__)  # renders: the seed's version crashed here
    session.add_all.assert_called_once_with(["a", "b"])  # sync method: called, not an un-awaited coroutine
    session.rollback.assert_awaited_once()


async def test_async_with_yields_the_session_and_results_are_real() -> None:
    session = mocks.async_session(rows=[(1, "ann"), (2, "bob")], columns=["id", "name"])
    factory = mocks.async_sessionmaker(session)
    async with factory() as s:
        assert s is session
        assert (await s.execute("ignored")).scalars().all() == [1, 2]
        assert [row.name for row in await s.execute("ignored")] == ["ann", "bob"]
    async with factory.begin() as s:
        assert s is session


def test_misspelled_methods_fail_instead_of_passing_silently() -> None:
    session = mocks.async_session()
    with pytest.raises(AttributeError):
        session.comit  # noqa: B018
    assert not hasattr(session.add("x"), "__await__")
