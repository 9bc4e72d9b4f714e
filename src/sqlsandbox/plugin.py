"""The pytest plugin: thin hooks and fixtures over Run and Sandbox."""

from __future__ import annotations

import contextlib
import os
import statistics
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession
from sqlalchemy.orm import Session

from . import asyncio_loops, blocker, cleanup
from . import config as config_mod
from .config import import_string
from .errors import ConfigError, SandboxError, SandboxLayerError, usage_error
from .guards import explain_driver_error
from .layers import end_unused_layers
from .run import Run
from .sandbox import Sandbox

RUN = pytest.StashKey[Run]()
USED = pytest.StashKey[Sandbox]()
SANDBOX_FIXTURES = frozenset(
    {
        "sandbox",
        "db_session",
        "async_db_session",
        "db_connection",
        "async_db_connection",
        "asgi_client",
        "grpc_server",
    }
)


def pytest_addoption(parser: pytest.Parser) -> None:
    config_mod.add_options(parser)


@pytest.hookimpl(tryfirst=True)
def pytest_cmdline_main(config: pytest.Config) -> int | None:
    """--sqlsandbox-clean: clean up, print what was done, and exit without running tests."""
    hours = config.getoption("sqlsandbox_clean", default=None)
    if hours is None:
        return None
    try:
        for line in cleanup.lines(config_mod.load_settings(config), str(hours), _cache_dir(config)):
            print(line, flush=True)  # as it goes: what was dropped is told even if a later step fails
    except SandboxError as exc:
        raise usage_error(exc) from None
    return 0


def _cache_dir(config: pytest.Config) -> Path | None:
    """Where config.cache.mkdir("sqlsandbox") puts SQLite templates; config.cache is made only after this
    hook, by pytest's cacheprovider (its cache_dir ini key, under "d/")."""
    if not config.pluginmanager.has_plugin("cacheprovider"):
        return None
    folder = os.path.expandvars(os.path.expanduser(str(config.getini("cache_dir"))))
    return Path(config.rootpath, folder, "d", "sqlsandbox")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "sqlsandbox(committed=False): give this test a sandbox (as if it asked for the sandbox "
        "fixture), so the application's bound engines and session factories work in it. "
        "committed=True: work commits for real (other threads, processes, servers can see it) and the "
        "tables the test wrote to are emptied afterwards.",
    )
    config.addinivalue_line(
        "markers",
        "sqlsandbox_allow_any_database: let this test connect to databases other than the test "
        "database (sqlsandbox blocks that by default).",
    )
    try:
        settings = config_mod.load_settings(config)
    except SandboxError as exc:
        raise usage_error(exc) from None
    workerinput = getattr(config, "workerinput", {})  # pytest-xdist: one database per worker
    worker = workerinput.get("workerid", "")
    run_id = str(workerinput.get("testrunuid", ""))[:8]
    cache = getattr(config, "cache", None)  # pytest's cache folder keeps SQLite schema templates
    cache_dir = cache.mkdir("sqlsandbox") if cache is not None else None
    run = Run(settings, worker, Path(str(config.rootpath)), run_id, cache_dir)
    config.stash[RUN] = run
    blocker.push(run.blocker)


def pytest_unconfigure(config: pytest.Config) -> None:
    run = config.stash.get(RUN, None)
    if run is not None:
        blocker.pop(run.blocker)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_protocol(item: pytest.Item, nextitem: pytest.Item | None) -> Any:
    run = item.config.stash.get(RUN, None)
    if run is None:
        return (yield)
    unblocked = item.get_closest_marker("sqlsandbox_allow_any_database") is not None
    run.blocker.current_test = None if unblocked else item.nodeid
    try:
        return (yield)
    finally:
        run.blocker.current_test = None


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item: pytest.Item) -> None:
    """Seed layers this test does not use end before its fixtures are set up (see layers.py)."""
    run = item.config.stash.get(RUN, None)
    if run is None or not run.keeper.layers:
        return
    names = getattr(item, "fixturenames", ())
    gets_sandbox = (
        run.settings.bind or SANDBOX_FIXTURES.intersection(names) or item.get_closest_marker("sqlsandbox")
    )
    if gets_sandbox:  # a test that cannot reach the database leaves the layers be
        end_unused_layers(names, run.keeper)


def pytest_collection_modifyitems(
    session: pytest.Session, config: pytest.Config, items: list[pytest.Item]
) -> None:
    """Provision before the first test, so a bad setup is one message, not one error per test."""
    wants_db = bool(config.stash[RUN].settings.bind) or any(
        SANDBOX_FIXTURES.intersection(getattr(item, "fixturenames", ()))
        or item.get_closest_marker("sqlsandbox")
        for item in items
    )
    if wants_db and not config.option.collectonly:
        try:
            config.stash[RUN].database()
        except SandboxError as exc:
            raise usage_error(exc) from None


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    run = session.config.stash.get(RUN, None)
    if run is None:
        return
    run.finish()
    if (run.leftovers or run.finish_error) and session.exitstatus == 0:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


def pytest_terminal_summary(terminalreporter: Any, exitstatus: int, config: pytest.Config) -> None:
    run = config.stash.get(RUN, None)
    if run is None or not run.started:
        return
    tr = terminalreporter
    where = run.where
    tr.write_sep("-", "sqlsandbox")
    blocked = len(run.blocker.blocked)
    overheads = [o for _, _, o in run.per_test]
    median = f"{statistics.median(overheads) * 1000:.2f} ms" if overheads else "n/a"
    tr.write_line(
        f"{run.tests_with_db} test(s) used the database ({where}); {run.statements} statement(s); "
        f"{run.problems} sandbox problem(s) and {blocked} blocked connection(s) caught; "
        f"sandbox overhead per test {median} (median)."
    )
    if config.option.verbose > 0:
        top = sorted(run.per_test, key=lambda t: t[1], reverse=True)[:10]
        if top:
            tr.write_line("Most statements:")
            for nodeid, count, overhead in top:
                tr.write_line(f"  {count:6d}  {nodeid}  (sandbox {overhead * 1000:.2f} ms)")
        if overheads:
            p90 = sorted(overheads)[int(0.9 * (len(overheads) - 1))] * 1000
            tr.write_line(
                f"Sandbox overhead: median {median}, p90 {p90:.2f} ms, max {max(overheads) * 1000:.2f} ms"
            )
        for line in run.blocker.blocked[:10]:
            tr.write_line(f"Blocked: {line}")
    if run.schema_note:
        tr.write_line(f"Test database {run.database_name}: {run.schema_note}.")
    if run.removed_stale:
        tr.write_line(
            f"Cleaned up after killed runs ({len(run.removed_stale)}): {', '.join(run.removed_stale)}"
        )
    if run.finish_error:
        tr.write_line(f"The end-of-run check failed: {run.finish_error}", red=True)
    if run.leftovers:
        for table, (before, now) in sorted(run.leftovers.items()):
            tr.write_line(
                f"LEAK: table {table} has {now} row(s) after the run, {before} after the schema build",
                red=True,
            )
    elif run.metadatas:
        tr.write_line("Every table is as the schema build left it.")


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    report = yield
    error = _sandbox_error(call.excinfo.value) if call.excinfo is not None else None
    if error is not None:
        # The message names the call site; the traceback through SQLAlchemy would only bury it.
        report.longrepr = f"{type(error).__name__}: {error}"
    elif call.excinfo is not None and report.failed:
        explanation = explain_driver_error(call.excinfo.value)
        if explanation:
            report.sections.append(("sqlsandbox", explanation))
    return report


def _sandbox_error(exc: BaseException | None) -> SandboxError | None:
    """Our error, also when SQLAlchemy wrapped it in a StatementError on the way out."""
    seen = 0
    while exc is not None and seen < 5:
        if isinstance(exc, SandboxError):
            return exc
        exc = getattr(exc, "orig", None) or exc.__cause__
        seen += 1
    return None


# ---- fixtures -------------------------------------------------------------------------------------


@contextlib.contextmanager
def _hold_event_loop(request: pytest.FixtureRequest) -> Iterator[bool]:
    """Keep the test's event loop open until the sandbox has rolled back in it.

    Yields whether that loop outlives the test (so the connection may be kept for the next test).
    """
    loops = asyncio_loops.loop_fixtures(request.fixturenames)
    for name in loops:  # pytest-asyncio: set up before us, so torn down after us
        request.getfixturevalue(name)
    if "anyio_backend" in request.fixturenames:
        from anyio.pytest_plugin import extract_backend_and_options, get_runner

        backend, options = extract_backend_and_options(request.getfixturevalue("anyio_backend"))
        with get_runner(backend, options):  # a lease keeps anyio's runner and loop alive
            yield False
        return
    keep = asyncio_loops.is_session_loop(loops)
    if keep:  # the connection outlives the test: close it before pytest-asyncio closes the loop
        request.getfixturevalue("_sqlsandbox_session_loop_connection")
    yield keep


@pytest.fixture(scope="session")
def _sqlsandbox_session_loop_connection(request: pytest.FixtureRequest) -> Iterator[None]:
    """Closes the connection kept across tests on pytest-asyncio's session loop, while it still runs."""
    asyncio_loops.session_loop(request)  # set up before this fixture: torn down after it
    yield
    request.config.stash[RUN].keeper.close_async()


@pytest.fixture
def sandbox(request: pytest.FixtureRequest) -> Iterator[Sandbox]:
    """The current test's sandbox: a connection to the test database in a transaction that is rolled
    back at the end, shared by every session and connection the test and the app open."""
    run = request.config.stash[RUN]
    db = run.database()
    started = time.perf_counter()
    marker = request.node.get_closest_marker("sqlsandbox")
    committed = bool(marker.kwargs.get("committed", False)) if marker is not None else False
    if committed and run.keeper.layers:
        raise SandboxLayerError(
            f"{request.node.nodeid} is marked committed=True and runs inside seed layer "
            f"{run.keeper.layers[-1].name!r}.",
            why="a layer's rows are uncommitted, in the sandbox connection's open transaction; a committed "
            "test's own connections could not see them (and on SQLite would wait for its lock).",
            fix="move committed tests out of the layer's module or class, or seed them in the test itself.",
        )
    with _hold_event_loop(request) as loop_outlives_test:
        box = Sandbox(
            db,
            run.keeper,
            request.node.nodeid,
            lock_timeout=run.settings.lock_timeout,
            keep_async_root=loop_outlives_test,
            metadatas=run.metadatas,
            committed=committed,
        )
        box.activate()
        try:
            for obj in run.bound:
                box.bind(obj)
            request.node.stash[USED] = box
            setup = time.perf_counter() - started
            yield box
        finally:
            teardown_started = time.perf_counter()
            try:
                box.close()
            finally:
                overhead = setup + time.perf_counter() - teardown_started
                used = box.flavor is not None
                run.tests_with_db += used
                run.statements += box.statements
                run.problems += len(box.problems)
                if used:
                    run.per_test.append((request.node.nodeid, box.statements, overhead))


@pytest.fixture(autouse=True)
def _sqlsandbox_autouse(request: pytest.FixtureRequest) -> None:
    """With sqlsandbox_bind set, every test gets a sandbox (it connects only if the test uses the
    database), so the app's bound factories never reach their real database; else the marker opts in."""
    run = request.config.stash[RUN]
    if run.settings.bind or request.node.get_closest_marker("sqlsandbox") is not None:
        request.getfixturevalue("sandbox")


@pytest.fixture
def asgi_app(request: pytest.FixtureRequest) -> Any:
    """The ASGI app behind asgi_client: sqlsandbox_asgi_app, or override this fixture."""
    spec = request.config.stash[RUN].settings.asgi_app
    if not spec:
        raise ConfigError(
            "asgi_client needs an app, and sqlsandbox_asgi_app is not set.",
            fix="set sqlsandbox_asgi_app = 'package.module:app' in your pytest config, or define an "
            "asgi_app fixture that returns the app.",
        )
    return import_string(spec, "sqlsandbox_asgi_app")


@pytest.fixture
def asgi_client(sandbox: Sandbox, asgi_app: Any) -> Iterator[Any]:
    """An httpx.AsyncClient calling the app in the test's loop and the sandbox; the app's lifespan starts
    at the first request (or `await asgi_client.start()`) and stops at teardown."""
    from .integrations.asgi import close_client, make_client

    client = make_client(asgi_app)
    yield client
    close_client(client)


@pytest.fixture
def grpc_server(sandbox: Sandbox) -> Iterator[Any]:
    """A grpc.aio server on 127.0.0.1 in the test's loop: add(add_fn, servicer), await stub(Stub)."""
    from .integrations.grpc import GrpcTestServer

    server = GrpcTestServer()
    yield server
    server.bound.close()


@pytest.fixture
def db_session(sandbox: Sandbox) -> Session:
    """A sync Session in the sandbox: commit(), rollback() and begin_nested() are all safe."""
    return sandbox.session()


@pytest.fixture
def async_db_session(sandbox: Sandbox) -> AsyncSession:
    """An AsyncSession in the sandbox, on the async driver for the configured server."""
    return sandbox.async_session()


@pytest.fixture
def db_connection(sandbox: Sandbox) -> Connection:
    """A Core Connection in the sandbox; its transactions are savepoints."""
    return sandbox.connection()


@pytest.fixture
def async_db_connection(sandbox: Sandbox) -> AsyncConnection:
    """An AsyncConnection in the sandbox; its transactions are savepoints."""
    return sandbox.async_connection()
