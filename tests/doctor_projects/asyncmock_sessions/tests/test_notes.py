from unittest.mock import AsyncMock, patch

from fastapi.testclient import TestClient
from sqlalchemy.exc import OperationalError

from notes.api import app
from notes.service import add_note, make_note, save_or_report


async def test_add_note(session):
    await add_note(session, "hi")
    session.commit.assert_awaited_once()


async def test_database_down():
    session = AsyncMock()
    session.commit.side_effect = OperationalError("boom")
    assert await save_or_report(session, "x") == "database unavailable"


def test_make_note_strips_the_title():
    with patch("notes.service.Note") as note_class:
        make_note(" hi ")
    note_class.assert_called_once_with(title="hi")


def test_list_notes_over_http():
    with TestClient(app) as client:
        assert client.get("/notes").json() == []
