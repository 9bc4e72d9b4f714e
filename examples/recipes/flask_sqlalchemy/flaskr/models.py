from sqlalchemy import ForeignKey, String
from sqlalchemy.orm import Mapped, mapped_column, relationship

from flaskr.db import db


class Shelf(db.Model):
    __tablename__ = "shelves"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(100), unique=True)
    books: Mapped[list["Book"]] = relationship(back_populates="shelf")


class Book(db.Model):
    __tablename__ = "books"

    id: Mapped[int] = mapped_column(primary_key=True)
    title: Mapped[str] = mapped_column(String(200), unique=True)
    author: Mapped[str] = mapped_column(String(100))
    shelf_id: Mapped[int | None] = mapped_column(ForeignKey("shelves.id"))
    shelf: Mapped[Shelf | None] = relationship(back_populates="books")

    def to_dict(self):
        return {"id": self.id, "title": self.title, "author": self.author, "shelf_id": self.shelf_id}
