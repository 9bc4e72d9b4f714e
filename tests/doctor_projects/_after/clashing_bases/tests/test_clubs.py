from sqlalchemy import func, select, text

from clubs.legacy import LegacyUser
from clubs.models import Club, User


def test_add_user(db_session):
    db_session.add(User(name="ann"))
    db_session.commit()
    assert db_session.scalar(select(func.count()).select_from(User)) == 1


def test_add_club(db_session):
    db_session.add(Club(name="chess"))
    db_session.commit()
    assert db_session.scalar(select(Club.name)) == "chess"


def test_legacy_users_are_kept(db_session):
    db_session.add(LegacyUser(email="old@example.com", active=True))
    db_session.commit()
    assert db_session.scalar(select(LegacyUser.email)) == "old@example.com"


def test_scratch_table(db_session):
    db_session.execute(text("CREATE TEMPORARY TABLE scratch (id INTEGER)"))
    db_session.execute(text("INSERT INTO scratch VALUES (1)"))
    assert db_session.scalar(text("SELECT count(*) FROM scratch")) == 1
