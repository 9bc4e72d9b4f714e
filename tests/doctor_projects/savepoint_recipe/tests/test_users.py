from sqlalchemy import func, select

from shop.models import User


def test_create_user(client, session):
    response = client.post("/users", params={"name": "ann"})
    assert response.status_code == 200
    assert session.scalar(select(func.count()).select_from(User)) == 1


def test_starts_empty(session):
    assert session.scalar(select(func.count()).select_from(User)) == 0


def test_list_users(client, session):
    session.add(User(name="bob"))
    session.commit()
    assert client.get("/users").json() == ["bob"]
