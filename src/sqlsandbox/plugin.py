"""The pytest plugin: thin hooks and fixtures over Run and Sandbox."""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, Literal, TypeVar, overload

import pytest
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession
from sqlalchemy.orm import Session

from . import blocker, cleanup, loops
from .config import (
    CLEAN_DEFAULT_HOURS,
    CLEAN_HELP,
    CLEAN_KEPT,
    CLEAN_KEPT_HELP,
    CLEAN_TEMPLATES,
    CLEAN_TEMPLATES_HELP,
    MARKERS,
    OPTIONS,
    Settings,
    configured_by,
    import_string,
    load_settings,
)
from .diagnostics import explain_driver_error, sandbox_error_in
from .errors import ConfigError, SandboxError, SandboxLayerError
from .layers import keep_as_layer
from .report import Report
from .run import Run
from .sandbox import Sandbox, work_of

RUN = pytest.StashKey[Run]()
REPORT = pytest.StashKey[Report]()
ACTIVE = pytest.StashKey[bool]()  # the project uses sqlsandbox: configured, or a test asks for a sandbox
SANDBOX_FIXTURES = frozenset(
    {
        "sandbox",
        "db_session",
        "async_db_session",
        "db_connection",
        "async_db_connection",
        "asgi_client",
        "grpc_server",
        "db_url",
        "async_db_url",
    }
)
URL_FIXTURES = frozenset({"db_url", "async_db_url"})  # an app given the URL connects in every test


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("sqlsandbox", "real database per test run, rolled-back sandbox per test")
    for opt in OPTIONS:
        if opt.kind == "linelist":
            parser.addini(opt.ini, opt.help, type="linelist", default=None)
        else:
            parser.addini(opt.ini, opt.help, type="string", default=None)
        extra: dict[str, Any] = {"action": "store_const", "const": "true"} if opt.flag else {}
        group.addoption(opt.cli, dest=opt.ini, default=None, help=f"{opt.help} [env {opt.env}]", **extra)
    group.addoption(
        "--sqlsandbox-clean",
        dest="sqlsandbox_clean",
        nargs="?",
        const=str(CLEAN_DEFAULT_HOURS),
        default=None,
        metavar="HOURS",
        help=CLEAN_HELP,
    )
    group.addoption(
        CLEAN_TEMPLATES, dest="sqlsandbox_clean_templates", metavar="DAYS|all", help=CLEAN_TEMPLATES_HELP
    )
    group.addoption(
        CLEAN_KEPT, dest="sqlsandbox_clean_kept", nargs="?", const="", metavar="NAME", help=CLEAN_KEPT_HELP
    )
    group.addoption(
        "--sqlsandbox-doctor",
        dest="sqlsandbox_doctor",
        nargs="?",
        const="text",
        choices=("text", "json"),
        default=None,
        help="print the plan that converts this suite to sqlsandbox (ini lines to add, fixtures it "
        "replaces, anti-patterns, clashes) and exit without running tests; =json for tools",
    )


def _settings(config: pytest.Config) -> Settings:
    return load_settings(config.getini, lambda key: config.getoption(key, default=None))


def usage_error(error: SandboxError) -> pytest.UsageError:
    """Start-up problems print as one message, without a traceback."""
    return pytest.UsageError(f"sqlsandbox: {error}")


@pytest.hookimpl(tryfirst=True)
def pytest_cmdline_main(config: pytest.Config) -> int | None:
    """--sqlsandbox-clean: clean up, print what was done, and exit without running tests.
    --sqlsandbox-doctor: print the conversion plan of the project at the rootdir, and exit."""
    doctor_format = config.getoption("sqlsandbox_doctor", default=None)
    if doctor_format is not None:
        from . import doctor  # imported on use: it is no part of a test run

        try:
            plan = doctor.make_plan(Path(str(config.rootpath)))
        except doctor.project.UnreadableConfig as exc:
            raise pytest.UsageError(f"sqlsandbox doctor: cannot read the pytest configuration: {exc}") from None
        print(doctor.render_json(plan) if doctor_format == "json" else doctor.render_text(plan), end="")
        return 0
    hours = config.getoption("sqlsandbox_clean", default=None)
    raw_templates = config.getoption("sqlsandbox_clean_templates", default=None)
    raw_kept = config.getoption("sqlsandbox_clean_kept", default=None)
    if hours is None and raw_templates is None and raw_kept is None:
        return None
    try:
        hours = str(CLEAN_DEFAULT_HOURS if hours is None else hours)  # the extras imply the clean-up
        for line in cleanup.lines(
            _settings(config), hours, _cache_dir(config), raw_templates=raw_templates, raw_kept=raw_kept
        ):
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
    for marker in MARKERS:
        config.addinivalue_line("markers", marker)
    try:
        settings = _settings(config)
    except SandboxError as exc:
        raise usage_error(exc) from None
    workerinput = getattr(config, "workerinput", {})  # pytest-xdist: one database per worker
    worker = workerinput.get("workerid", "")
    run_id = str(workerinput.get("testrunuid", ""))[:8]
    cache_dir = _cache_dir(config)  # pytest's cache folder keeps SQLite schema templates (made when used)
    run = Run(settings, worker=worker, rootdir=Path(str(config.rootpath)), run_id=run_id, cache_dir=cache_dir)
    config.stash[RUN] = run
    config.stash[REPORT] = Report()
    config.stash[ACTIVE] = False
    # A project that has not configured sqlsandbox (installed alongside, or by a dependency) is left as it
    # is: no blocker, no database, no clean-up, until a test asks for a sandbox (see the collection hook).
    config.pluginmanager.register(_OnInterrupt(run), "sqlsandbox-interrupt")
    if configured_by(config.getini, lambda key: config.getoption(key, default=None)):
        _activate(config)


def _activate(config: pytest.Config) -> None:
    if not config.stash[ACTIVE]:
        config.stash[ACTIVE] = True
        blocker.push(config.stash[RUN].blocker)


def pytest_report_header(config: pytest.Config) -> str | None:
    if config.stash.get(ACTIVE, True):
        return None
    return (
        "sqlsandbox: no sqlsandbox_* setting, so off unless a test asks for its fixtures or marker "
        "(sqlsandbox_url / sqlsandbox_metadata in the pytest config turn it on)"
    )


def pytest_unconfigure(config: pytest.Config) -> None:
    run = config.stash.get(RUN, None)
    if run is not None and config.stash.get(ACTIVE, False):
        blocker.pop(run.blocker)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_protocol(item: pytest.Item, nextitem: pytest.Item | None) -> Any:
    run = item.config.stash.get(RUN, None)
    if run is None:
        return (yield)
    unblocked = item.get_closest_marker("sqlsandbox_allow_any_database") is not None
    run.blocker.current_test = None if unblocked else item.nodeid
    try:
        with work_of(None):  # set-up and tear-down start work of no test's (an outer pytester test's neither)
            return (yield)
    finally:
        run.blocker.current_test = None


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item: pytest.Item) -> Any:
    """The test body's tasks and threads carry its name: if they outlive it, they are told apart."""
    with work_of(item.nodeid):
        return (yield)


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item: pytest.Item) -> None:
    """Seed layers this test does not use end before its fixtures are set up (see layers.py)."""
    run = item.config.stash.get(RUN, None)
    if run is None or not run.keeper.layers:
        return
    names = getattr(item, "fixturenames", ())
    gets_sandbox = (
        run.settings.bind
        or run.app_urls_given
        or _asks_for_a_sandbox(item)
        or item.get_closest_marker("sqlsandbox")
    )
    if gets_sandbox:  # a test that cannot reach the database leaves the layers be
        run.keeper.layers.end_unused(names, run.keeper)


def _ours(item: pytest.Item, name: str) -> bool:
    """Whether the fixture the item gets under this name is sqlsandbox's (a suite may have its own db_url)."""
    info = getattr(item, "_fixtureinfo", None)
    defs: Any = getattr(info, "name2fixturedefs", {}).get(name)
    return bool(defs) and getattr(defs[-1].func, "__module__", "") == __name__


def _asks_for_a_sandbox(item: pytest.Item) -> bool:
    names = SANDBOX_FIXTURES.intersection(getattr(item, "fixturenames", ()))
    return any(name not in URL_FIXTURES or _ours(item, name) for name in names)


def pytest_collection_modifyitems(
    session: pytest.Session, config: pytest.Config, items: list[pytest.Item]
) -> None:
    """Provision before the first test, so a bad setup is one message, not one error per test."""
    wants_db = bool(config.stash[RUN].settings.bind) or any(
        _asks_for_a_sandbox(item) or item.get_closest_marker("sqlsandbox") for item in items
    )
    if wants_db:
        _activate(config)  # a test asks for a sandbox: the project uses sqlsandbox, configured or not
    if wants_db and not config.option.collectonly:
        try:
            config.stash[RUN].database()
        except SandboxError as exc:
            raise usage_error(exc) from None


class _OnInterrupt:
    """pytest_keyboard_interrupt is given no config: this object, registered per config, knows its run."""

    def __init__(self, run: Run) -> None:
        self.run = run

    def pytest_keyboard_interrupt(self, excinfo: pytest.ExceptionInfo[BaseException]) -> None:
        """Ctrl-C (or pytest.exit): end this run's connections before pytest tears the fixtures down."""
        self.run.interrupt()


@pytest.hookimpl(wrapper=True, trylast=True)
def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> Any:
    """Finish the run once every fixture is torn down (pytest's runner does that in its own
    pytest_sessionfinish, after an interrupt or -x), and before the terminal summary is written."""
    try:
        return (yield)
    finally:
        run = session.config.stash.get(RUN, None)
        if run is not None:
            run.finish()
            late = session.config.stash[REPORT].late_work
            if (run.leftovers or run.finish_error or late) and session.exitstatus == 0:
                session.exitstatus = pytest.ExitCode.TESTS_FAILED


def pytest_terminal_summary(terminalreporter: Any, exitstatus: int, config: pytest.Config) -> None:
    run = config.stash.get(RUN, None)
    if run is None or not run.started:
        return
    terminalreporter.write_sep("-", "sqlsandbox")
    for line, bad in config.stash[REPORT].lines(run, verbose=config.option.verbose > 0):
        terminalreporter.write_line(line, red=bad)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    report = yield
    if not item.config.stash.get(ACTIVE, False):
        return report
    error = sandbox_error_in(call.excinfo.value) if call.excinfo is not None else None
    full = item.config.option.tbstyle == "long" or bool(getattr(item.config.option, "fulltrace", False))
    if error is not None and not full:
        # The message names the call site; the traceback through SQLAlchemy would only bury it (--tb=long
        # or --full-trace show it whole).
        report.longrepr = f"{type(error).__name__}: {error}"
    elif call.excinfo is not None and report.failed:
        run = item.config.stash[RUN]
        explanation = explain_driver_error(
            call.excinfo.value, sqlite_foreign_keys=run.settings.sqlite_foreign_keys
        )
        if explanation:
            report.sections.append(("sqlsandbox", explanation))
    return report


# ---- fixtures -------------------------------------------------------------------------------------


@contextlib.contextmanager
def _hold_event_loop(request: pytest.FixtureRequest) -> Iterator[bool]:
    """Keep the test's event loop open until the sandbox has rolled back in it.

    Yields whether that loop outlives the test (so the connection may be kept for the next test).
    """
    loop_names = loops.loop_fixtures(request.fixturenames)
    for name in loop_names:  # pytest-asyncio: set up before us, so torn down after us
        request.getfixturevalue(name)
    if "anyio_backend" in request.fixturenames:
        from anyio.pytest_plugin import extract_backend_and_options, get_runner

        backend, options = extract_backend_and_options(request.getfixturevalue("anyio_backend"))
        with get_runner(backend, options):  # a lease keeps anyio's runner and loop alive
            yield False
        return
    keep = loops.is_session_loop(loop_names)
    if keep:  # the connection outlives the test: close it before pytest-asyncio closes the loop
        request.getfixturevalue("_sqlsandbox_session_loop_connection")
    yield keep


def session_loop(request: pytest.FixtureRequest) -> asyncio.AbstractEventLoop | None:
    """pytest-asyncio's session loop (set up if need be), or None when pytest-asyncio is not active."""
    for name in loops.SESSION_LOOP_FIXTURES:
        try:
            return loops.loop_of(request.getfixturevalue(name))
        except pytest.FixtureLookupError:
            continue
    return None


@pytest.fixture(scope="session")
def _sqlsandbox_session_loop_connection(request: pytest.FixtureRequest) -> Iterator[None]:
    """Closes the connection kept across tests on pytest-asyncio's session loop, while it still runs."""
    session_loop(request)  # set up before this fixture: torn down after it
    yield
    request.config.stash[RUN].keeper.close_async()


@pytest.fixture
def sandbox(request: pytest.FixtureRequest) -> Iterator[Sandbox]:
    """The current test's sandbox: a connection to the test database in a transaction that is rolled
    back at the end, shared by every session and connection the test and the app open."""
    run = request.config.stash[RUN]
    run.database()  # provisioned outside the set-up time
    started = time.perf_counter()
    marker = request.node.get_closest_marker("sqlsandbox")
    committed = bool(marker.kwargs.get("committed", False)) if marker is not None else False
    if committed and run.keeper.layers:
        raise SandboxLayerError(
            f"{request.node.nodeid} is marked committed=True and runs inside seed layer "
            f"{run.keeper.layers.top.name!r}.",
            why="a layer's rows are uncommitted, in the sandbox connection's open transaction; a committed "
            "test's own connections could not see them (and on SQLite would wait for its lock).",
            fix="move committed tests out of the layer's module or class, or seed them in the test itself.",
        )
    with _hold_event_loop(request) as loop_outlives_test:
        box = run.new_sandbox(request.node.nodeid, committed=committed, keep_async_root=loop_outlives_test)
        setup = time.perf_counter() - started
        try:
            yield box
        finally:
            teardown_started = time.perf_counter()
            try:
                box.close()
            finally:
                request.config.stash[REPORT].record(box, setup + time.perf_counter() - teardown_started)


@pytest.fixture(autouse=True)
def _sqlsandbox_autouse(request: pytest.FixtureRequest) -> None:
    """With sqlsandbox_bind set, every test gets a sandbox (it connects only if the test uses the
    database), so the app's bound factories never reach their real database; else the marker opts in."""
    run = request.config.stash[RUN]
    if (
        run.settings.bind
        or run.app_urls_given
        or any(_ours(request.node, name) for name in URL_FIXTURES.intersection(request.fixturenames))
        or request.node.get_closest_marker("sqlsandbox") is not None
    ):
        request.getfixturevalue("sandbox")


@pytest.fixture(scope="session")
def db_url(request: pytest.FixtureRequest) -> str:
    """The test database's URL (sync driver), for engines the app builds itself (an app factory, a
    lifespan): such an engine joins the sandbox of whichever test connects it, and from the moment this
    is asked for, every test has a sandbox."""
    return request.config.stash[RUN].app_url()


@pytest.fixture(scope="session")
def async_db_url(request: pytest.FixtureRequest) -> str:
    """The test database's URL with its async driver; see db_url."""
    return request.config.stash[RUN].app_url(asynchronous=True)


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


# ---- seed layers: @sqlsandbox.seed makes a fixture of the seed function (see layers.py) ---------------

Scope = Literal["session", "package", "module", "class"]
F = TypeVar("F", bound=Callable[..., Any])


@overload
def seed(fn: F, /) -> F: ...
@overload
def seed(*, scope: Scope = "module", name: str | None = None) -> Callable[[F], F]: ...
def seed(fn: Any = None, /, *, scope: Scope = "module", name: str | None = None) -> Any:
    """Make fn(layer, *fixtures) a fixture of `scope` (default module) whose committed writes every test
    that uses it sees, and that is rolled back when the scope ends. The fixture's value is fn's return
    value. An `async def` seed runs on pytest-asyncio's session loop, for tests on that loop."""
    if scope not in ("session", "package", "module", "class"):
        raise ValueError(f"seed scope must be session, package, module or class, not {scope!r}")

    def decorate(fn: Any) -> Any:
        params = list(inspect.signature(fn).parameters.values())
        if not params:
            raise TypeError(f"seed function {fn.__name__}() must take the layer as its first argument")
        layer_name = name or fn.__name__
        fixtures = params[1:]
        wants_request = any(p.name == "request" for p in fixtures)

        def fixture(request: pytest.FixtureRequest, **kwargs: Any) -> Iterator[Any]:
            if wants_request:
                kwargs["request"] = request
            yield from _layer(request, fn, layer_name, kwargs)

        fixture.__name__ = fn.__name__
        fixture.__qualname__ = fn.__qualname__
        fixture.__doc__ = fn.__doc__
        fixture.__module__ = fn.__module__
        request_param = inspect.Parameter("request", inspect.Parameter.POSITIONAL_OR_KEYWORD)
        others = [p.replace(kind=inspect.Parameter.KEYWORD_ONLY) for p in fixtures if p.name != "request"]
        fixture.__signature__ = inspect.Signature([request_param, *others])  # type: ignore[attr-defined]
        return pytest.fixture(scope=scope, name=layer_name)(fixture)

    return decorate(fn) if fn is not None else decorate


def _layer(
    request: pytest.FixtureRequest, fn: Callable[..., Any], name: str, kwargs: dict[str, Any]
) -> Iterator[Any]:
    run = request.config.stash[RUN]
    is_async = inspect.iscoroutinefunction(fn)
    loop = _layer_loop(request, name) if is_async else None
    box = run.new_sandbox(f"seed layer {name!r}", keep_async_root=is_async)
    try:
        value = loop.run_until_complete(fn(box, **kwargs)) if loop is not None else fn(box, **kwargs)
    except BaseException:
        with contextlib.suppress(Exception):  # the seed's own error is the one to show
            box.close()
        raise
    fixturedef = request._fixturedef  # type: ignore[attr-defined]
    keep_as_layer(box, name, lambda: fixturedef.finish(request))
    try:
        yield value
    finally:
        run.keeper.layers.unwind(name, run.keeper)


def _layer_loop(request: pytest.FixtureRequest, name: str) -> asyncio.AbstractEventLoop:
    """pytest-asyncio's session loop, which outlives the layer (its connection is made there)."""
    loop = session_loop(request)
    if loop is None:
        raise SandboxLayerError(
            f"Seed layer {name!r} is async, and pytest-asyncio (1.0 or later) is not active.",
            why="an async seed's connection must live on an event loop that outlasts the layer's scope.",
            fix="pip install pytest-asyncio, or write the seed function as a plain def for sync tests.",
        )
    request.getfixturevalue("_sqlsandbox_session_loop_connection")  # closes the kept connection at the end
    return loop
