"""The sync sandbox serves every thread of the test: worker threads, anyio.to_thread / run_in_threadpool, a
thread pool, and Starlette's TestClient running FastAPI's `def` routes; one statement at a time, units never
interleaved, a wait that can never end failing as a deadlock that names both sides."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Annotated

import anyio
import pytest
from fastapi import Depends, FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import func, select, text
from sqlalchemy.orm import Session

from sqlsandbox import Sandbox, SandboxDeadlockError
from tests import app
from tests.models import Owner


def count(session: Session) -> int:
    return session.scalar(select(func.count()).select_from(Owner)) or 0


def test_worker_threads_write_into_the_sandbox(db_session: Session) -> None:
    with ThreadPoolExecutor(max_workers=4) as pool:
        ids = list(pool.map(app.create_owner, [f"t{i}" for i in range(16)]))
    assert len(set(ids)) == 16
    assert count(db_session) == 16
    assert sorted(app.owner_names()) == sorted(f"t{i}" for i in range(16))


def test_and_nothing_of_theirs_is_left(db_session: Session) -> None:
    assert count(db_session) == 0


async def test_anyio_worker_threads_write_while_the_test_awaits(db_session: Session) -> None:
    async with anyio.create_task_group() as tg:
        for i in range(8):
            tg.start_soon(anyio.to_thread.run_sync, app.create_owner, f"w{i}")
    assert count(db_session) == 8


def test_a_read_only_unit_does_not_block_a_thread_that_writes(db_session: Session) -> None:
    assert count(db_session) == 0  # the test's session has begun, and only read
    thread = threading.Thread(target=app.create_owner, args=("ann",))
    thread.start()
    thread.join(timeout=30)
    assert not thread.is_alive()
    assert count(db_session) == 1  # the same session, still open, sees the thread's commit
    db_session.add(Owner(name="bob"))
    db_session.commit()
    assert sorted(app.owner_names()) == ["ann", "bob"]


def test_a_thread_waiting_for_the_tests_open_writes_is_a_named_deadlock(
    sandbox: Sandbox, db_session: Session
) -> None:
    sandbox.units.timeout = 0.5
    db_session.add(Owner(name="seed"))
    db_session.flush()  # the test's transaction has written, and stays open
    errors: list[BaseException] = []

    def write() -> None:
        try:
            app.create_owner("blocked")
        except BaseException as exc:
            errors.append(exc)

    thread = threading.Thread(target=write, name="app-worker")
    thread.start()
    thread.join(timeout=30)
    assert not thread.is_alive()
    [error] = errors
    assert isinstance(error, SandboxDeadlockError)
    assert "waited 0.5s for the unit of work" in str(error)
    assert "opened by thread 'MainThread' at" in str(error) and "test_threads.py" in str(error)
    assert "That thread is now at:" in str(error)
    db_session.commit()  # once the test commits, the app gets through
    app.create_owner("after")
    assert sorted(app.owner_names()) == ["after", "seed"]


# ---- FastAPI `def` routes through Starlette's TestClient ---------------------------------------------

api = FastAPI()


def get_session():  # type: ignore[no-untyped-def]
    with app.SessionLocal() as session:
        yield session


SessionDep = Annotated[Session, Depends(get_session)]


@api.post("/owners")
def create(name: str, session: SessionDep) -> dict[str, int]:
    owner = Owner(name=name)
    session.add(owner)
    session.commit()
    return {"id": owner.id}


@api.get("/owners")
def names(session: SessionDep) -> list[str]:
    return list(session.scalars(select(Owner.name).order_by(Owner.name)))


@pytest.fixture
def client() -> TestClient:
    return TestClient(api)


def test_testclient_def_routes_see_the_tests_committed_rows(client: TestClient, db_session: Session) -> None:
    db_session.add(Owner(name="ann"))
    db_session.commit()
    assert client.get("/owners").json() == ["ann"]
    assert client.post("/owners", params={"name": "bob"}).status_code == 200
    assert [o.name for o in db_session.scalars(select(Owner).order_by(Owner.name))] == ["ann", "bob"]


def test_testclient_first_use_of_the_database(client: TestClient) -> None:
    assert client.post("/owners", params={"name": "ann"}).status_code == 200
    assert client.get("/owners").json() == ["ann"]


def test_sixteen_concurrent_requests_from_four_threads(client: TestClient, db_session: Session) -> None:
    with ThreadPoolExecutor(max_workers=4) as pool:
        statuses = list(
            pool.map(lambda i: client.post("/owners", params={"name": f"c{i}"}).status_code, range(16))
        )
    assert statuses == [200] * 16
    assert count(db_session) == 16
    assert len(client.get("/owners").json()) == 16


def test_a_unit_that_ran_text_sql_keeps_its_savepoint(sandbox: Sandbox, db_session: Session) -> None:
    """Only plain SELECTs let a unit step aside: one that ran text SQL (a SET, set_config()...) may hold
    settings that releasing its savepoint would hand to the next session, so others wait for it."""
    sandbox.units.timeout = 0.5
    ready, go = threading.Event(), threading.Event()

    def reader() -> None:
        with app.SessionLocal() as session:
            session.execute(text("SELECT 1"))
            ready.set()
            go.wait(timeout=30)

    thread = threading.Thread(target=reader, name="text-reader")
    thread.start()
    try:
        assert ready.wait(timeout=30)
        with pytest.raises(SandboxDeadlockError, match="opened by thread 'text-reader'"):
            count(db_session)
    finally:
        go.set()
        thread.join(timeout=30)
    db_session.rollback()
    assert count(db_session) == 0  # once it is done, the test goes on


async def test_sync_code_in_a_coroutine_takes_turns_with_worker_threads(db_session: Session) -> None:
    """An async test using the sync sandbox: its own statements (no await inside them) and the worker
    threads' never run at once on the one connection, and every commit is seen."""

    async def poll() -> None:
        for _ in range(20):
            count(db_session)
            db_session.rollback()
            await anyio.sleep(0)

    async with anyio.create_task_group() as tg:
        tg.start_soon(poll)
        for i in range(8):
            tg.start_soon(anyio.to_thread.run_sync, app.create_owner, f"w{i}")
    assert count(db_session) == 8
