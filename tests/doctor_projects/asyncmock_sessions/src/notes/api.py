from fastapi import FastAPI
from sqlalchemy import select

from notes.db import SessionLocal
from notes.models import Note

app = FastAPI()


@app.get("/notes")
async def list_notes() -> list[str]:
    async with SessionLocal() as session:
        return list(await session.scalars(select(Note.title).order_by(Note.title)))
