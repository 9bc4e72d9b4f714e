from sqlalchemy import func, select

from tests import app
from tests.models import Owner


def test_sync_app_commit_visible_in_test(db_session):
    app.create_owner("ann")
    assert db_session.scalar(select(func.count()).select_from(Owner)) == 1


def test_sync_starts_empty(db_session):
    assert db_session.scalar(select(func.count()).select_from(Owner)) == 0


async def test_async_app_commit_visible(async_db_session):
    await app.acreate_owner("bob")
    assert await async_db_session.scalar(select(func.count()).select_from(Owner)) == 1


async def test_async_starts_empty(async_db_session):
    assert await async_db_session.scalar(select(func.count()).select_from(Owner)) == 0
