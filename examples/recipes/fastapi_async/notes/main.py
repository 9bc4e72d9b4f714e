"""An async FastAPI app on SQLAlchemy 2.0: `async def` routes, an AsyncSession per request through Depends."""

from typing import Annotated

from fastapi import Depends, FastAPI, HTTPException, status
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from notes.db import get_session
from notes.models import Author, Note

SessionDep = Annotated[AsyncSession, Depends(get_session)]

app = FastAPI()


class AuthorIn(BaseModel):
    email: str = Field(max_length=200, pattern=r"^[^@\s]+@[^@\s]+$")
    name: str = Field(min_length=1, max_length=100)


class AuthorOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    id: int
    email: str
    name: str
    note_count: int = 0


class NoteIn(BaseModel):
    text: str = Field(min_length=1, max_length=1000)


class NoteOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    id: int
    author_id: int
    text: str


async def author_or_404(session: AsyncSession, author_id: int) -> Author:
    author = await session.get(Author, author_id)
    if author is None:
        raise HTTPException(status_code=404, detail="Author not found")
    return author


@app.post("/authors", status_code=status.HTTP_201_CREATED, response_model=AuthorOut)
async def create_author(payload: AuthorIn, session: SessionDep) -> Author:
    author = Author(email=payload.email, name=payload.name)
    session.add(author)
    try:
        await session.commit()
    except IntegrityError:
        await session.rollback()
        raise HTTPException(status_code=409, detail="Email already registered") from None
    return author


@app.get("/authors", response_model=list[AuthorOut])
async def list_authors(session: SessionDep) -> list[AuthorOut]:
    rows = await session.execute(
        select(Author, func.count(Note.id))
        .outerjoin(Note)
        .group_by(Author.id, Author.email, Author.name)
        .order_by(Author.id)
    )
    return [AuthorOut(id=a.id, email=a.email, name=a.name, note_count=count) for a, count in rows.all()]


@app.get("/authors/{author_id}", response_model=AuthorOut)
async def read_author(author_id: int, session: SessionDep) -> Author:
    return await author_or_404(session, author_id)


@app.post("/authors/{author_id}/notes", status_code=status.HTTP_201_CREATED, response_model=NoteOut)
async def add_note(author_id: int, payload: NoteIn, session: SessionDep) -> Note:
    await author_or_404(session, author_id)
    note = Note(author_id=author_id, text=payload.text)
    session.add(note)
    await session.commit()
    return note


@app.get("/authors/{author_id}/notes", response_model=list[NoteOut])
async def list_notes(author_id: int, session: SessionDep) -> list[Note]:
    await author_or_404(session, author_id)
    notes = await session.scalars(select(Note).where(Note.author_id == author_id).order_by(Note.id))
    return list(notes)


@app.delete("/authors/{author_id}", status_code=status.HTTP_204_NO_CONTENT)
async def delete_author(author_id: int, session: SessionDep) -> None:
    author = await author_or_404(session, author_id)
    await session.delete(author)  # the notes go with it (cascade)
    await session.commit()
