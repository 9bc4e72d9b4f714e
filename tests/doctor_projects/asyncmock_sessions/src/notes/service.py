from sqlalchemy.exc import OperationalError
from sqlalchemy.ext.asyncio import AsyncSession

from notes.models import Note


def make_note(title: str) -> Note:
    return Note(title=title.strip())


async def add_note(session: AsyncSession, title: str) -> Note:
    note = make_note(title)
    session.add(note)
    await session.commit()
    return note


async def save_or_report(session: AsyncSession, title: str) -> str:
    try:
        await add_note(session, title)
    except OperationalError:
        await session.rollback()
        return "database unavailable"
    return "saved"
