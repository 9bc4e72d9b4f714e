"""Sync code tries hard to break isolation; every test writes the same unique names, so a leak from any
test makes another fail (and the end-of-run check fails the run)."""

from __future__ import annotations

import pytest
from sqlalchemy import func, insert, select, text
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from tests import app
from tests.models import Owner, Pet


def count(session_or_conn, model=Owner) -> int:
    return session_or_conn.scalar(select(func.count()).select_from(model))


def test_app_commit_is_seen_by_the_test_and_undone_after(db_session: Session) -> None:
    assert count(db_session) == 0
    app.create_owner("ann")
    assert app.owner_names() == ["ann"]
    assert count(db_session) == 1


def test_app_commit_then_test_rollback_keeps_app_data(db_session: Session) -> None:
    app.create_owner("ann")
    db_session.add(Owner(name="bob"))
    db_session.flush()
    db_session.rollback()  # rolls back only the test session's own work
    assert app.owner_names() == ["ann"]


def test_app_rollback_discards_only_its_own_work(db_session: Session) -> None:
    db_session.add(Owner(name="ann"))
    db_session.commit()
    with app.SessionLocal() as session:
        session.add(Owner(name="bob"))
        session.flush()
        session.rollback()
    assert app.owner_names() == ["ann"]


def test_nested_savepoints_inside_app_session(db_session: Session) -> None:
    with app.SessionLocal() as session:
        session.add(Owner(name="ann"))
        with session.begin_nested():
            session.add(Owner(name="bob"))
        nested = session.begin_nested()
        session.add(Owner(name="cid"))
        session.flush()
        nested.rollback()
        session.commit()
    assert app.owner_names() == ["ann", "bob"]
    assert count(db_session) == 2


def test_exception_inside_transaction_rolls_back_that_transaction(db_session: Session) -> None:
    with pytest.raises(RuntimeError), app.SessionLocal.begin() as session:
        session.add(Owner(name="ann"))
        session.flush()
        raise RuntimeError("boom")
    assert count(db_session) == 0
    app.create_owner("ann")  # the name is free again
    assert count(db_session) == 1


def test_integrity_error_then_recovery(db_session: Session) -> None:
    app.create_owner("ann")
    with pytest.raises(IntegrityError):
        app.create_owner("ann")
    app.create_owner("bob")
    assert app.owner_names() == ["ann", "bob"]


def test_unclosed_sessions_are_rolled_back_with_the_test(db_session: Session) -> None:
    leaked = app.SessionLocal()
    leaked.add(Owner(name="ann"))
    leaked.flush()  # never committed, never closed
    other = app.SessionLocal()
    other.add(Owner(name="bob"))
    other.commit()  # committed, never closed
    assert count(db_session) == 2


def test_engine_begin_and_connect_join_the_sandbox(db_session: Session) -> None:
    app.create_owner_core("ann")
    with app.engine.connect() as conn:
        conn.execute(insert(Owner).values(name="bob"))
        conn.commit()
        conn.execute(insert(Owner).values(name="cid"))
        # closed without commit: cid is discarded, as on a real connection
    assert app.owner_names() == ["ann", "bob"]


def test_db_connection_commit_and_rollback(db_connection, db_session: Session) -> None:
    db_connection.execute(insert(Owner).values(name="ann"))
    db_connection.commit()
    db_connection.execute(insert(Owner).values(name="bob"))
    db_connection.rollback()
    assert count(db_session) == 1


def test_session_with_default_join_mode_on_db_connection_cannot_escape(db_connection) -> None:
    session = Session(bind=db_connection)  # default join mode: would commit/roll back the outer txn
    session.add(Owner(name="ann"))
    session.commit()
    session.add(Owner(name="bob"))
    session.flush()
    session.rollback()
    assert count(db_connection) == 1


def test_sessions_in_any_order_of_commit(db_session: Session) -> None:
    first = app.SessionLocal()
    first.add(Owner(name="ann"))
    first.flush()
    second = app.SessionLocal()
    second.add(Owner(name="bob"))
    second.flush()
    first.commit()  # the earlier unit commits while the later one is still open
    second.rollback()
    assert app.owner_names() == ["ann"]


def test_relationships_and_foreign_keys_are_enforced(db_session: Session) -> None:
    owner = Owner(name="ann", pets=[Pet(name="rex"), Pet(name="tom")])
    db_session.add(owner)
    db_session.commit()
    assert count(db_session, Pet) == 2
    db_session.add(Pet(name="orphan", owner_id=999_999))
    with pytest.raises(IntegrityError):
        db_session.flush()
    db_session.rollback()
    assert count(db_session, Pet) == 2


def test_bound_factories_are_restored_after_the_test(request: pytest.FixtureRequest) -> None:
    sandbox = request.getfixturevalue("sandbox")
    assert app.SessionLocal.kw["bind"] is sandbox.sync_engine
    assert "connect" in vars(app.engine)


def test_raw_sql_commit_is_refused_and_named(sandbox, db_session: Session) -> None:
    from sqlsandbox import SandboxEscapeError

    db_session.add(Owner(name="ann"))
    db_session.flush()
    with pytest.raises(SandboxEscapeError, match=r"COMMIT issued as SQL at .*test_isolation_sync"):
        db_session.execute(text("COMMIT"))
    assert len(sandbox.problems) == 1  # so the test fails at teardown even if the error was swallowed
    sandbox.problems.clear()  # (that failure is shown in test_plugin.py)


def test_random_order_still_clean(db_session: Session) -> None:
    db_session.add_all([Owner(name="ann"), Owner(name="bob")])
    db_session.commit()
    assert count(db_session) == 2


def test_raw_sql_writes_count_as_writes_for_interleaving(db_session: Session) -> None:
    from sqlsandbox import SandboxInterleavingError

    db_session.add(Owner(name="ann"))
    db_session.flush()  # the test's transaction is open and has written
    with app.engine.connect() as conn:  # commits while the test's transaction is open
        conn.execute(text("INSERT INTO owners (name) VALUES ('bob')"))
        conn.commit()
    with pytest.raises(SandboxInterleavingError, match="also discarded work that other sessions committed"):
        db_session.rollback()


@pytest.mark.parametrize("sql", ["ABORT", "/* why */ COMMIT", "-- note\nROLLBACK", "START TRANSACTION", "END"])
def test_every_spelling_of_transaction_control_is_refused(sandbox, db_connection, sql: str) -> None:
    from sqlsandbox import SandboxEscapeError

    if sql == "ABORT" and sandbox.db.family != "postgresql":
        pytest.skip("ABORT is PostgreSQL's")
    with pytest.raises(SandboxEscapeError):
        db_connection.exec_driver_sql(sql)
    sandbox.problems.clear()


def test_mariadb_ddl_would_commit_implicitly_and_is_refused(sandbox, db_connection) -> None:
    from sqlsandbox import SandboxEscapeError

    if sandbox.db.family != "mysql":
        pytest.skip("only MariaDB/MySQL commit implicitly before DDL")
    with pytest.raises(SandboxEscapeError, match="CREATE issued as SQL"):
        db_connection.exec_driver_sql("CREATE TABLE scratch (id INT)")
    sandbox.problems.clear()
