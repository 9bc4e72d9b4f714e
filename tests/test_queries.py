"""Query capture, query-count assertions (an N+1 caught and fixed), and write assertions."""

from __future__ import annotations

import pytest
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Session, selectinload

from tests import app
from tests.models import Owner, Pet


def seed(session: Session) -> None:
    session.add_all(Owner(name=f"o{i}", pets=[Pet(name=f"p{i}a"), Pet(name=f"p{i}b")]) for i in range(5))
    session.commit()


def test_statements_are_recorded_with_parameters_and_timing(sandbox, db_session: Session) -> None:
    app.create_owner("ann")
    inserts = sandbox.queries.matching(r"^INSERT INTO owners")
    assert len(inserts) == 1
    assert "ann" in str(inserts[0].parameters)
    assert inserts[0].duration >= 0
    assert not sandbox.queries.matching(r"SAVEPOINT")  # the sandbox's own statements are not counted


def test_n_plus_one_is_caught_and_the_fix_passes(sandbox, db_session: Session) -> None:
    seed(db_session)
    db_session.expire_all()
    with (
        pytest.raises(AssertionError, match=r"expected at most 2 queries, 6 ran"),
        sandbox.queries.assert_max_queries(2),
    ):
        for owner in db_session.scalars(select(Owner)):
            _ = [p.name for p in owner.pets]  # one SELECT per owner: N+1
    db_session.expire_all()
    with sandbox.queries.assert_num_queries(2):
        for owner in db_session.scalars(select(Owner).options(selectinload(Owner.pets))):
            _ = [p.name for p in owner.pets]


async def test_async_query_count(sandbox, async_db_session: AsyncSession) -> None:
    async with sandbox.queries.assert_num_queries(1, match="INSERT"):
        await app.acreate_owner("ann")


def test_changes_report_exactly_what_a_call_wrote(sandbox, db_session: Session) -> None:
    seed(db_session)
    with sandbox.changes() as changes:
        app.create_owner("ann")
        with app.SessionLocal.begin() as session:
            session.execute(update(Owner).where(Owner.name == "o1").values(name="o1-renamed"))
            session.delete(session.scalars(select(Pet).where(Pet.name == "p2a")).one())
    assert changes.counts() == {
        "owners": {"inserted": 1, "updated": 1, "deleted": 0},
        "pets": {"inserted": 0, "updated": 0, "deleted": 1},
    }
    assert changes.inserted["owners"][0]["name"] == "ann"
    before, after = changes.updated["owners"][0]
    assert (before["name"], after["name"]) == ("o1", "o1-renamed")
    assert changes.deleted["pets"][0]["name"] == "p2a"


async def test_changes_async_and_nothing_written(sandbox, async_db_session: AsyncSession) -> None:
    async with sandbox.changes() as changes:
        assert await app.aowner_names() == []
    assert changes.counts() == {}
    async with sandbox.changes() as changes:
        await app.acreate_owner("bob")
    assert [row["name"] for row in changes.inserted["owners"]] == ["bob"]
