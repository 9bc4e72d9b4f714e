from advanced_alchemy.extensions.litestar import base
from sqlalchemy import ForeignKey, String
from sqlalchemy.orm import Mapped, mapped_column, relationship


class Author(base.BigIntAuditBase):
    __tablename__ = "author"

    name: Mapped[str] = mapped_column(String(100), unique=True)
    books: Mapped[list["Book"]] = relationship(back_populates="author", lazy="selectin")


class Book(base.BigIntAuditBase):
    __tablename__ = "book"

    title: Mapped[str] = mapped_column(String(200))
    author_id: Mapped[int] = mapped_column(ForeignKey("author.id"))
    author: Mapped[Author] = relationship(back_populates="books", lazy="joined", innerjoin=True)
