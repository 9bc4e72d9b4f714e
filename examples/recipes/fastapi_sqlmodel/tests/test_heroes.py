"""The heroes app tested the way FastAPI's testing docs do it: a module-level TestClient, plain `def` tests.
The database side is sqlsandbox's: every test runs on a real database in a transaction rolled back at its end,
and the routes' `session.commit()` only releases a savepoint in it."""

from fastapi.testclient import TestClient
from sqlmodel import Session, select

from main import Hero, app

client = TestClient(app)


def test_create_hero():
    response = client.post("/heroes/", json={"name": "Deadpond", "secret_name": "Dive Wilson"})
    assert response.status_code == 200
    data = response.json()
    assert data["name"] == "Deadpond"
    assert data["age"] is None
    assert data["id"] is not None
    assert "secret_name" not in data  # HeroPublic hides it


def test_what_the_route_committed_is_in_the_database(session: Session):
    response = client.post("/heroes/", json={"name": "Rusty-Man", "secret_name": "Tommy Sharp", "age": 48})
    hero = session.get(Hero, response.json()["id"])
    assert hero is not None
    assert hero.secret_name == "Tommy Sharp"


def test_each_test_starts_with_no_heroes(session: Session):
    assert client.get("/heroes/").json() == []
    assert session.exec(select(Hero)).all() == []


def test_the_same_unique_name_in_another_test():
    # test_create_hero made "Deadpond" too; in any order both pass, since neither sees the other's row
    response = client.post("/heroes/", json={"name": "Deadpond", "secret_name": "Someone Else"})
    assert response.status_code == 200


def test_a_duplicate_name_is_a_409_and_the_first_hero_stays():
    first = client.post("/heroes/", json={"name": "Spider-Boy", "secret_name": "Pedro Parqueador"})
    second = client.post("/heroes/", json={"name": "Spider-Boy", "secret_name": "Someone Else"})
    assert second.status_code == 409
    # the route's rollback undid its own failed insert only (on PostgreSQL the error had aborted the
    # transaction: the rollback to the route's savepoint recovered it)
    assert [h["id"] for h in client.get("/heroes/").json()] == [first.json()["id"]]


def test_read_hero_seeded_by_the_test(session: Session):
    hero = Hero(name="Captain North America", secret_name="Esteban Rogelios", age=93)
    session.add(hero)
    session.commit()  # commit before calling the app, as against a real server
    response = client.get(f"/heroes/{hero.id}")
    assert response.status_code == 200
    assert response.json() == {"name": "Captain North America", "age": 93, "id": hero.id}


def test_read_missing_hero_is_404():
    response = client.get("/heroes/999999")
    assert response.status_code == 404
    assert response.json() == {"detail": "Hero not found"}


def test_validation_error_writes_nothing(session: Session):
    response = client.post("/heroes/", json={"name": "Deadpond"})  # no secret_name
    assert response.status_code == 422
    assert session.exec(select(Hero)).all() == []


def test_limit_is_validated():
    assert client.get("/heroes/", params={"limit": 101}).status_code == 422


def test_update_hero(session: Session):
    hero_id = client.post("/heroes/", json={"name": "Deadpond", "secret_name": "Dive Wilson"}).json()["id"]
    response = client.patch(f"/heroes/{hero_id}", json={"age": 30})
    assert response.status_code == 200
    assert response.json()["age"] == 30
    assert session.get(Hero, hero_id).age == 30


def test_delete_hero(session: Session):
    hero = Hero(name="Dormammu", secret_name="Dormammu")
    session.add(hero)
    session.commit()
    hero_id = hero.id
    assert client.delete(f"/heroes/{hero_id}").json() == {"ok": True}
    session.expire_all()  # the route deleted it through its own session
    assert session.get(Hero, hero_id) is None
    assert client.delete(f"/heroes/{hero_id}").status_code == 404


def test_with_the_lifespan_running():
    # `with TestClient(app)` runs the lifespan: create_all finds the tables sqlsandbox built and creates none
    with TestClient(app) as lifespan_client:
        assert lifespan_client.post("/heroes/", json={"name": "A", "secret_name": "B"}).status_code == 200
        assert len(lifespan_client.get("/heroes/").json()) == 1
