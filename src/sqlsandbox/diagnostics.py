"""Plain words for driver and SQLAlchemy errors whose own message does not say the cause: one asyncio
connection used concurrently or across loops, MissingGreenlet, and SQLite's foreign keys (which sqlsandbox
turns on)."""

from __future__ import annotations

from .callsite import user_frames
from .errors import SandboxError

_CONCURRENT_USE = ("another operation is in progress", "attached to a different loop", "different event loop")


_MISSING_GREENLET = (
    "What it means: SQLAlchemy needed the database from plain (sync) code while an asyncio driver was in "
    "use, most often to load an attribute that commit() expired (AsyncSession's expire_on_commit is True "
    "by default, and async_db_session keeps that default) or a lazy relationship.\n"
    "Fix: sandbox.async_session(expire_on_commit=False) (or your async_sessionmaker with it), "
    "`await session.refresh(obj)` before reading, selectinload() for relationships, or "
    "`await obj.awaitable_attrs.name`."
)
_SQLITE_FOREIGN_KEY = (
    "What it means: a row would refer to one that does not exist: an insert or update naming a missing "
    "parent, or a delete (or key change) of a parent that rows still refer to."
)
_SQLITE_FOREIGN_KEYS_OURS = (
    " sqlsandbox turns SQLite's foreign keys on (plain SQLite leaves them off), so SQLite checks them as "
    "PostgreSQL and MariaDB do.\n"
    "Fix: insert the parent first (session.flush() between them), delete children before their parent. If "
    "the suite relies on SQLite not checking, set sqlsandbox_sqlite_foreign_keys = false."
)


def explain_driver_error(exc: BaseException | None, *, sqlite_foreign_keys: bool = True) -> str:
    """Plain words for an error in exc's chain whose message does not say its cause, or ''.
    sqlite_foreign_keys: whether sqlsandbox turned SQLite's foreign keys on (sqlsandbox_sqlite_foreign_keys)."""
    known = _known_cause(exc, sqlite_foreign_keys)
    if known:
        return known
    seen = 0
    while exc is not None and seen < 6:
        try:
            message = str(exc)
        except Exception:  # some exceptions cannot even render (seen with SQLAlchemy 2.0 parameters)
            message = repr(getattr(exc, "orig", "")) or type(exc).__name__
        if any(marker in message for marker in _CONCURRENT_USE):
            break
        exc = getattr(exc, "orig", None) or exc.__cause__ or exc.__context__
        seen += 1
    else:
        return ""
    if exc is None:
        return ""
    frames = user_frames(exc.__traceback__)
    where = f" The failing call: {frames[-1]}." if frames else ""
    return (
        f"The driver says: {message.strip()!r}.{where}\n"
        "What it means: one asyncio database connection was used by two operations at once, or from an "
        "event loop other than the one that opened it. Typical causes: an engine, session or connection "
        "created in a fixture of wider scope (session/module) and used by a test on a function-scoped loop; "
        "Starlette's TestClient running the app in its own thread and loop; two tasks sharing one "
        "AsyncSession.\n"
        "Fix: let the app's engines and session factories join the sandbox (sqlsandbox_bind) instead of "
        "creating engines in fixtures; drive ASGI apps with asgi_client; give each task its own session."
    )


def _known_cause(exc: BaseException | None, sqlite_foreign_keys: bool) -> str:
    seen = 0
    while exc is not None and seen < 6:
        name = type(exc).__name__
        if name == "MissingGreenlet":
            first = (str(exc).splitlines() or [""])[0]
            return f"SQLAlchemy says: {first!r}.\n{_MISSING_GREENLET}"
        if name == "IntegrityError" and "FOREIGN KEY constraint failed" in str(exc):  # SQLite's words
            ours = _SQLITE_FOREIGN_KEYS_OURS if sqlite_foreign_keys else ""
            return f"SQLite says: 'FOREIGN KEY constraint failed'.\n{_SQLITE_FOREIGN_KEY}{ours}"
        exc = getattr(exc, "orig", None) or exc.__cause__ or exc.__context__
        seen += 1
    return ""


def sandbox_error_in(exc: BaseException | None, depth: int = 0) -> SandboxError | None:
    """Our error, also when SQLAlchemy wrapped it in a StatementError on the way out, or a task group
    (anyio's, asyncio's: an app's lifespan) gathered it into an exception group."""
    seen = 0
    while exc is not None and seen < 5 and depth < 4:
        if isinstance(exc, SandboxError):
            return exc
        for inner in getattr(exc, "exceptions", ()):  # BaseExceptionGroup (exceptiongroup on 3.10)
            if isinstance(inner, BaseException):
                found = sandbox_error_in(inner, depth + 1)
                if found is not None:
                    return found
        exc = getattr(exc, "orig", None) or exc.__cause__
        seen += 1
    return None
