"""Seed layers try hard to leak: tests commit, delete, roll back nested savepoints and raise on top of seed
data written once per module or class; tests that do not ask for a layer must not see it; async layers
live on the session loop. Every test checks the full state first, so any order (pytest-randomly) works."""

from __future__ import annotations

from typing import ClassVar

import pytest
from sqlalchemy import delete, func, select
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Session

from sqlsandbox import Sandbox, seed
from tests import app
from tests.models import Owner, Pet

SEEDED = {"module": 0, "class": 0}


def owner_names(session: Session) -> list[str]:
    return list(session.scalars(select(Owner.name).order_by(Owner.name)))


@seed(scope="module")
def owners(layer: Sandbox) -> dict[str, int]:
    """Written once for the module's tests that ask for it: one owner through the app's own bound
    factory, one through the layer's session."""
    SEEDED["module"] += 1
    app.create_owner("ann")
    with layer.session() as session:
        session.add(Owner(name="bob"))
        session.commit()
        # reading after commit opens a read-only transaction that the layer closes by itself
        return {name: id_ for id_, name in session.execute(select(Owner.id, Owner.name))}


@seed(scope="class")
def pets(layer: Sandbox, owners: dict[str, int]) -> list[str]:
    """A class layer stacked on the module layer: it sees the owners and adds pets."""
    SEEDED["class"] += 1
    with layer.session() as session, session.begin():
        session.add_all([Pet(name="rex", owner_id=owners["ann"]), Pet(name="tom", owner_id=owners["bob"])])
    return ["rex", "tom"]


def test_layer_rows_are_there_with_their_ids(owners: dict[str, int], db_session: Session) -> None:
    assert owner_names(db_session) == ["ann", "bob"]
    for name, id_ in owners.items():
        assert db_session.get(Owner, id_).name == name  # type: ignore[union-attr]
    assert app.owner_names() == ["ann", "bob"]  # the app's bound factory sees the layer too


def test_commits_deletes_and_updates_go_back_to_the_layer(owners: dict[str, int], db_session: Session) -> None:
    assert owner_names(db_session) == ["ann", "bob"]
    db_session.execute(delete(Owner).where(Owner.name == "ann"))
    db_session.get(Owner, owners["bob"]).name = "robert"  # type: ignore[union-attr]
    db_session.add(Owner(name="cy"))
    db_session.commit()
    app.create_owner("dee")
    assert owner_names(db_session) == ["cy", "dee", "robert"]


def test_nested_savepoints_and_errors_inside_a_layer(owners: dict[str, int], db_session: Session) -> None:
    assert owner_names(db_session) == ["ann", "bob"]
    nested = db_session.begin_nested()
    db_session.add(Owner(name="cy"))
    db_session.flush()
    nested.rollback()
    assert owner_names(db_session) == ["ann", "bob"]
    with pytest.raises(RuntimeError), db_session.begin_nested():
        db_session.execute(delete(Owner))
        raise RuntimeError("boom")
    assert owner_names(db_session) == ["ann", "bob"]
    db_session.execute(delete(Owner))
    db_session.commit()
    assert owner_names(db_session) == []


def test_a_test_without_the_layer_does_not_see_it(db_session: Session) -> None:
    assert owner_names(db_session) == []
    db_session.add(Owner(name="ann"))  # the same unique name as the layer's: no conflict, no wait
    db_session.commit()


def test_the_layer_is_not_committed(owners: dict[str, int], sandbox: Sandbox) -> None:
    committed = sandbox.db.run(lambda conn: conn.execute(select(func.count()).select_from(Owner)).scalar())
    assert committed == 0  # another connection sees nothing: the layer lives in the open transaction


class TestStackedLayers:
    def test_sees_both_layers(self, pets: list[str], owners: dict[str, int], db_session: Session) -> None:
        assert owner_names(db_session) == ["ann", "bob"]
        assert sorted(db_session.scalars(select(Pet.name))) == pets

    def test_writes_go_back_to_the_class_layer(self, pets: list[str], db_session: Session) -> None:
        assert sorted(db_session.scalars(select(Pet.name))) == ["rex", "tom"]
        db_session.execute(delete(Pet))
        db_session.execute(delete(Owner))
        db_session.commit()
        assert db_session.scalar(select(func.count()).select_from(Pet)) == 0

    def test_module_layer_alone(self, owners: dict[str, int], db_session: Session) -> None:
        # asks only for the module layer: the class layer above it is ended first
        assert owner_names(db_session) == ["ann", "bob"]
        assert db_session.scalar(select(func.count()).select_from(Pet)) == 0


class TestSeededOnce:
    """Consecutive tests that ask for a layer share one seeding (pytest keeps the fixture; pytest-randomly
    keeps a class's tests together)."""

    seen: ClassVar[list[int]] = []

    @pytest.mark.parametrize("n", [1, 2])
    def test_seeded_once(self, owners: dict[str, int], db_session: Session, n: int) -> None:
        assert owner_names(db_session) == ["ann", "bob"]
        self.seen.append(SEEDED["module"])
        assert len(set(self.seen)) == 1, self.seen


@seed(scope="module")
async def async_owners(layer: Sandbox) -> list[str]:
    async with layer.async_session() as session:
        session.add_all([Owner(name="ann"), Owner(name="bob")])
        await session.commit()
    await app.acreate_owner("cy")  # the app's async factory joins the layer too
    return ["ann", "bob", "cy"]


@pytest.mark.asyncio(loop_scope="session")
class TestAsyncLayer:
    async def test_sees_the_layer(self, async_owners: list[str], async_db_session: AsyncSession) -> None:
        names = list(await async_db_session.scalars(select(Owner.name).order_by(Owner.name)))
        assert names == async_owners
        assert await app.aowner_names() == async_owners

    async def test_writes_go_back_to_the_layer(
        self, async_owners: list[str], async_db_session: AsyncSession
    ) -> None:
        assert len(list(await async_db_session.scalars(select(Owner.name)))) == 3
        await async_db_session.execute(delete(Owner))
        await async_db_session.commit()
        await app.acreate_owner("dee")
        assert await app.aowner_names() == ["dee"]


class TestDisconnectInsideALayer:
    """A real disconnect (PostgreSQL, MariaDB) loses the layer with the connection: the next test that asks
    for it gets it seeded again, not an empty database."""

    @pytest.mark.parametrize("n", [1, 2])
    def test_layer_survives_a_disconnect_in_an_earlier_test(
        self, owners: dict[str, int], db_session: Session, sandbox: Sandbox, n: int
    ) -> None:
        assert owner_names(db_session) == ["ann", "bob"]
        sandbox.faults.fail("SELECT", table="owners", error="disconnect")
        with pytest.raises(DBAPIError):
            owner_names(db_session)


@seed(scope="module", name="named_layer")
def _seed_with_request(
    layer: Sandbox, request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> str:
    """Other fixtures (request included) are passed by name; `name=` names the fixture."""
    assert tmp_path_factory.getbasetemp().exists()
    with layer.session() as session, session.begin():
        session.add(Owner(name="named"))
    return request.scope


def test_seed_takes_fixtures_and_a_name(named_layer: str, db_session: Session) -> None:
    assert named_layer == "module"
    assert owner_names(db_session) == ["named"]
