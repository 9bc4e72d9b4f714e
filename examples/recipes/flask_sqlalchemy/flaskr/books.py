from flask import Blueprint, request
from sqlalchemy.exc import IntegrityError

from flaskr.db import db
from flaskr.models import Book, Shelf

bp = Blueprint("books", __name__, url_prefix="/books")


@bp.get("/")
def index():
    books = db.session.execute(db.select(Book).order_by(Book.title)).scalars()
    return [book.to_dict() for book in books]


@bp.post("/")
def create():
    data = request.get_json(silent=True) or {}
    title, author = data.get("title"), data.get("author")
    if not title or not author:
        return {"error": "title and author are required"}, 400
    shelf_id = data.get("shelf_id")
    if shelf_id is not None:
        db.get_or_404(Shelf, shelf_id, description="No such shelf")
    book = Book(title=title, author=author, shelf_id=shelf_id)
    db.session.add(book)
    try:
        db.session.commit()
    except IntegrityError:
        db.session.rollback()
        return {"error": f"{title!r} is already on the list"}, 409
    return book.to_dict(), 201


@bp.get("/<int:id>")
def detail(id):
    return db.get_or_404(Book, id).to_dict()


@bp.delete("/<int:id>")
def delete(id):
    book = db.get_or_404(Book, id)
    db.session.delete(book)
    db.session.commit()
    return "", 204
