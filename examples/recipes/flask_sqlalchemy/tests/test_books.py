"""Flask's testing docs' way: an app from the factory, its test_client(), and db.session in an app context."""

from flaskr.db import db
from flaskr.models import Book, Shelf


def test_create_book(client, app_ctx):
    response = client.post("/books/", json={"title": "Dune", "author": "Frank Herbert"})
    assert response.status_code == 201
    # what the view committed is in the database, in this test
    book = db.session.get(Book, response.json["id"])
    assert book.author == "Frank Herbert"


def test_the_same_title_in_another_test(client):
    # test_create_book added "Dune" too; in any order both pass
    assert client.post("/books/", json={"title": "Dune", "author": "Someone Else"}).status_code == 201


def test_each_test_starts_empty(client, app_ctx):
    assert client.get("/books/").json == []
    assert db.session.scalars(db.select(Book)).all() == []


def test_duplicate_title_is_409_and_the_first_stays(client):
    client.post("/books/", json={"title": "Emma", "author": "Jane Austen"})
    response = client.post("/books/", json={"title": "Emma", "author": "Someone Else"})
    assert response.status_code == 409
    assert [b["author"] for b in client.get("/books/").json] == ["Jane Austen"]


def test_missing_fields_are_400(client, app_ctx):
    assert client.post("/books/", json={"title": "No author"}).status_code == 400
    assert db.session.scalars(db.select(Book)).all() == []


def test_missing_book_is_404(client):
    assert client.get("/books/999999").status_code == 404
    assert client.delete("/books/999999").status_code == 404


def test_unknown_shelf_is_404(client):
    response = client.post("/books/", json={"title": "Lost", "author": "A", "shelf_id": 999999})
    assert response.status_code == 404


def test_seeded_by_the_test(client, app_ctx):
    shelf = Shelf(name="Classics")
    db.session.add(shelf)
    db.session.add(Book(title="Ulysses", author="James Joyce", shelf=shelf))
    db.session.commit()  # commit before calling the app, as against a real server

    payload = {"title": "Persuasion", "author": "Jane Austen", "shelf_id": shelf.id}
    created = client.post("/books/", json=payload)
    assert created.status_code == 201
    assert [b["title"] for b in client.get("/books/").json] == ["Persuasion", "Ulysses"]
    db.session.expire_all()
    assert sorted(b.title for b in shelf.books) == ["Persuasion", "Ulysses"]


def test_delete_book(client, app_ctx):
    book = Book(title="Gone", author="X")
    db.session.add(book)
    db.session.commit()
    book_id = book.id
    assert client.delete(f"/books/{book_id}").status_code == 204
    db.session.expire_all()
    assert db.session.get(Book, book_id) is None


def test_init_db_command(runner, app_ctx):
    # create_all() finds the tables sqlsandbox built (no DDL: MariaDB would refuse it in a test)
    result = runner.invoke(args=["init-db"])
    assert "Initialized" in result.output
    assert db.session.scalars(db.select(Shelf.name)).all() == ["Unsorted"]


def test_sqlsandbox_db_session_is_the_same_sandbox(client, db_session):
    # sqlsandbox's own db_session (no app context needed) and the views' db.session share the test's connection
    db_session.add(Book(title="Kindred", author="Octavia E. Butler"))
    db_session.commit()
    assert [b["title"] for b in client.get("/books/").json] == ["Kindred"]
    client.post("/books/", json={"title": "Dawn", "author": "Octavia E. Butler"})
    assert sorted(db_session.scalars(db.select(Book.title))) == ["Dawn", "Kindred"]
