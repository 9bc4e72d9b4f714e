"""sqladmin's HTTP endpoints (list, create, details, edit, delete) through Starlette's TestClient; the test
seeds and reads through db_session, in the same sandbox as the admin's sessions."""

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select
from sqlalchemy.orm import Session

from main import User, app

client = TestClient(app)


def create(name: str, email: str = "x@example.com", active: bool = True):
    form = {"name": name, "email": email}
    if active:
        form["is_active"] = "y"  # a checked checkbox
    return client.post("/admin/user/create", data=form, follow_redirects=False)


def test_create_through_the_admin_form(db_session: Session):
    response = create("ann", "ann@example.com")
    assert response.status_code == 302  # back to the list
    user = db_session.scalars(select(User)).one()
    assert (user.name, user.email, user.is_active) == ("ann", "ann@example.com", True)


def test_the_same_name_in_another_test():
    # test_create_through_the_admin_form created "ann" too; in any order both pass
    assert create("ann").status_code == 302


def test_list_shows_rows_the_test_committed(db_session: Session):
    db_session.add_all([User(name="bob", email="bob@example.com"), User(name="cy", email="cy@example.com")])
    db_session.commit()  # commit before calling the app, as against a real server
    page = client.get("/admin/user/list")
    assert page.status_code == 200
    assert "bob@example.com" in page.text
    assert "cy@example.com" in page.text
    search = client.get("/admin/user/list", params={"search": "bob"})
    assert "bob@example.com" in search.text
    assert "cy@example.com" not in search.text


def test_list_starts_empty(db_session: Session):
    assert db_session.scalars(select(User)).all() == []
    assert "ann@example.com" not in client.get("/admin/user/list").text


def test_duplicate_name_is_refused_and_the_first_stays(db_session: Session):
    assert create("dee", "first@example.com").status_code == 302
    response = create("dee", "second@example.com")
    assert response.status_code == 400  # the form again, with the database's error
    assert [u.email for u in db_session.scalars(select(User))] == ["first@example.com"]


def test_missing_required_field_is_400(db_session: Session):
    response = client.post("/admin/user/create", data={"email": "no-name@example.com"}, follow_redirects=False)
    assert response.status_code == 400
    assert db_session.scalars(select(User)).all() == []


def test_details_edit_and_delete(db_session: Session):
    user = User(name="eve", email="eve@example.com")
    db_session.add(user)
    db_session.commit()
    pk = user.id

    assert "eve@example.com" in client.get(f"/admin/user/details/{pk}").text
    edited = client.post(
        f"/admin/user/edit/{pk}", data={"name": "eve", "email": "eve@new.example"}, follow_redirects=False
    )
    assert edited.status_code == 302
    db_session.expire_all()
    assert (user.email, user.is_active) == ("eve@new.example", False)  # the unchecked box cleared it
    assert client.get("/users/active").json() == []

    assert client.delete("/admin/user/delete", params={"pks": str(pk)}).status_code == 200
    db_session.expire_all()  # the admin deleted it through its own session
    assert db_session.get(User, pk) is None


def test_missing_row_is_404():
    assert client.get("/admin/user/details/999999").status_code == 404


@pytest.mark.parametrize("active", [True, False])
def test_the_apps_own_api_sees_the_admins_writes(active):
    create("fay", active=active)
    assert client.get("/users/active").json() == (["fay"] if active else [])
