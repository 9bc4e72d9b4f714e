"""A Litestar app in advanced-alchemy's style: SQLAlchemyPlugin with an async config (the engine is built
lazily, at start-up, from the connection string), services injected per request, the session committed by the
plugin's "autocommit" handler when a response is 2xx and rolled back otherwise."""

import os
from typing import Any

import msgspec
from advanced_alchemy.extensions.litestar import (
    AsyncSessionConfig,
    SQLAlchemyAsyncConfig,
    SQLAlchemyPlugin,
    providers,
)
from litestar import Controller, Litestar, delete, get, post
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from library.models import Author
from library.services import AuthorService, BookService


class AuthorIn(msgspec.Struct):
    name: str


class AuthorOut(msgspec.Struct):
    id: int
    name: str
    book_titles: list[str]


class BookIn(msgspec.Struct):
    title: str
    author_id: int


class BookOut(msgspec.Struct):
    id: int
    title: str
    author_name: str


def author_out(author: Author) -> AuthorOut:
    return AuthorOut(id=author.id, name=author.name, book_titles=sorted(b.title for b in author.books))


class AuthorController(Controller):
    path = "/authors"
    dependencies = {"authors_service": providers.create_service_provider(AuthorService)}

    @get("/")
    async def list_authors(self, authors_service: AuthorService) -> list[AuthorOut]:
        return [author_out(a) for a in await authors_service.list(order_by=("name", False))]

    @post("/")
    async def create_author(self, authors_service: AuthorService, data: AuthorIn) -> AuthorOut:
        # a duplicate name raises DuplicateKeyError at the flush: the plugin answers 409 and rolls back
        author = await authors_service.create({"name": data.name})
        return AuthorOut(id=author.id, name=author.name, book_titles=[])

    @get("/{author_id:int}")
    async def get_author(self, authors_service: AuthorService, author_id: int) -> AuthorOut:
        return author_out(await authors_service.get(author_id))  # NotFoundError: 404

    @delete("/{author_id:int}")
    async def delete_author(self, authors_service: AuthorService, author_id: int) -> None:
        await authors_service.delete(author_id)


class BookController(Controller):
    path = "/books"
    dependencies = {"books_service": providers.create_service_provider(BookService)}

    @post("/")
    async def create_book(self, books_service: BookService, data: BookIn) -> BookOut:
        book = await books_service.create({"title": data.title, "author_id": data.author_id})
        book = await books_service.get(book.id)
        return BookOut(id=book.id, title=book.title, author_name=book.author.name)


@get("/stats")
async def stats(db_session: AsyncSession) -> dict[str, Any]:
    # a plain session dependency, as the plugin provides it
    names = (await db_session.scalars(select(Author.name).order_by(Author.name))).all()
    return {"authors": len(names), "names": list(names)}


def create_app(database_url: str | None = None) -> Litestar:
    alchemy_config = SQLAlchemyAsyncConfig(
        connection_string=database_url or os.environ.get("DATABASE_URL", "sqlite+aiosqlite:///library.sqlite"),
        before_send_handler="autocommit",
        session_config=AsyncSessionConfig(expire_on_commit=False),
        create_all=True,
    )
    return Litestar(
        route_handlers=[AuthorController, BookController, stats],
        plugins=[SQLAlchemyPlugin(config=alchemy_config)],
    )


app = create_app()
