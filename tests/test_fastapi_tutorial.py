"""FastAPI's SQL tutorial as it is written (SQLModel, `def` routes, a Session per request through Depends, a
module-level engine on a development file), tested the way its docs test it: Starlette's TestClient. Only the
engine is bound; the app is not changed for its tests."""

from __future__ import annotations

import pytest

APP = """
from typing import Annotated

from fastapi import Depends, FastAPI, HTTPException, Query
from sqlmodel import Field, Session, SQLModel, create_engine, select


class Hero(SQLModel, table=True):
    id: int | None = Field(default=None, primary_key=True)
    name: str = Field(index=True)
    age: int | None = Field(default=None, index=True)
    secret_name: str


sqlite_file_name = "database.db"
sqlite_url = f"sqlite:///{sqlite_file_name}"

connect_args = {"check_same_thread": False}
engine = create_engine(sqlite_url, connect_args=connect_args)


def create_db_and_tables():
    SQLModel.metadata.create_all(engine)


def get_session():
    with Session(engine) as session:
        yield session


SessionDep = Annotated[Session, Depends(get_session)]

app = FastAPI()


@app.post("/heroes/")
def create_hero(hero: Hero, session: SessionDep) -> Hero:
    session.add(hero)
    session.commit()
    session.refresh(hero)
    return hero


@app.get("/heroes/")
def read_heroes(
    session: SessionDep,
    offset: int = 0,
    limit: Annotated[int, Query(le=100)] = 100,
) -> list[Hero]:
    heroes = session.exec(select(Hero).offset(offset).limit(limit)).all()
    return heroes


@app.get("/heroes/{hero_id}")
def read_hero(hero_id: int, session: SessionDep) -> Hero:
    hero = session.get(Hero, hero_id)
    if not hero:
        raise HTTPException(status_code=404, detail="Hero not found")
    return hero


@app.delete("/heroes/{hero_id}")
def delete_hero(hero_id: int, session: SessionDep):
    hero = session.get(Hero, hero_id)
    if not hero:
        raise HTTPException(status_code=404, detail="Hero not found")
    session.delete(hero)
    session.commit()
    return {"ok": True}
"""

TESTS = """
from fastapi.testclient import TestClient
from sqlmodel import Session, select

from main import Hero, app

client = TestClient(app)


def test_create_hero():
    response = client.post("/heroes/", json={"name": "Deadpond", "secret_name": "Dive Wilson"})
    data = response.json()
    assert response.status_code == 200
    assert data["name"] == "Deadpond"
    assert data["id"] is not None


def test_read_heroes_starts_empty():
    assert client.get("/heroes/").json() == []


def test_read_hero_seeded_by_the_test(db_session):
    hero = Hero(name="Rusty-Man", secret_name="Tommy Sharp", age=48)
    db_session.add(hero)
    db_session.commit()
    response = client.get(f"/heroes/{hero.id}")
    assert response.status_code == 200
    assert response.json()["name"] == "Rusty-Man"


def test_the_test_reads_then_the_app_writes_then_the_test_reads_again(db_session):
    assert db_session.scalars(select(Hero)).all() == []  # the test's session is open, and has only read
    client.post("/heroes/", json={"name": "Spider-Boy", "secret_name": "Pedro Parqueador"})
    assert [h.name for h in db_session.scalars(select(Hero))] == ["Spider-Boy"]


def test_delete_hero(db_session):
    db_session.add(Hero(name="Dormammu", secret_name="x"))
    db_session.commit()
    [hero] = db_session.scalars(select(Hero)).all()
    assert client.delete(f"/heroes/{hero.id}").json() == {"ok": True}
    db_session.expire_all()
    assert db_session.scalars(select(Hero)).all() == []
"""

INI = """
[pytest]
pythonpath = .
sqlsandbox_metadata = sqlmodel:SQLModel
sqlsandbox_bind = main:engine
"""


@pytest.fixture
def tutorial(pytester: pytest.Pytester) -> pytest.Pytester:
    pytest.importorskip("sqlmodel")
    pytester.makeini(INI)
    pytester.makepyfile(main=APP, test_main=TESTS)
    return pytester


def test_the_fastapi_sql_tutorial_passes_with_testclient(tutorial: pytest.Pytester) -> None:
    for order in ("-p no:randomly", "-p randomly"):
        result = tutorial.runpytest_subprocess(*order.split())
        result.assert_outcomes(passed=5)
    assert not (tutorial.path / "database.db").exists()  # the development file was never made


def test_testclient_behind_the_tests_open_writes_is_a_named_deadlock(tutorial: pytest.Pytester) -> None:
    tutorial.makepyfile(
        test_blocked="""
        from fastapi.testclient import TestClient
        from main import Hero, app

        def test_open_then_call(db_session):
            db_session.add(Hero(name="seed", secret_name="s"))
            db_session.flush()  # written, and left open
            TestClient(app).get("/heroes/")
        """
    )
    result = tutorial.runpytest_subprocess("test_blocked.py", "-o", "sqlsandbox_lock_timeout=0.5")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(
        [
            "*SandboxDeadlockError: Opening sqlsandbox_sp_* opened by thread 'AnyIO worker thread' at "
            "*main.py:* in read_heroes() waited 0.5s for the unit of work sqlsandbox_sp_* opened by thread "
            "'MainThread' at *test_blocked.py:6 in test_open_then_call(), which never finished.",
            "*That thread is now at:*",
            "*test_blocked.py:7 in test_open_then_call()*",
            "Fix: commit or close the session*",
        ]
    )
