from fastapi.testclient import TestClient
from sqlalchemy import select

from notes.api import app
from notes.models import Note
from notes.service import add_note, make_note, save_or_report


async def test_add_note(async_db_session):
    await add_note(async_db_session, "hi")
    assert list(await async_db_session.scalars(select(Note.title))) == ["hi"]


async def test_database_down(async_db_session, sandbox):
    sandbox.faults.fail_next("commit")
    assert await save_or_report(async_db_session, "x") == "database unavailable"


def test_make_note_strips_the_title():
    assert make_note(" hi ").title == "hi"


def test_list_notes_over_http():
    with TestClient(app) as client:
        assert client.get("/notes").json() == []
