"""Plain words for the errors asyncio drivers raise when one connection is used concurrently or across loops."""

from __future__ import annotations

from .callsite import user_frames
from .errors import SandboxError

_CONCURRENT_USE = ("another operation is in progress", "attached to a different loop", "different event loop")


def explain_driver_error(exc: BaseException | None) -> str:
    """Plain words for the asyncio drivers' errors about concurrent or cross-loop use, or ''."""
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


def sandbox_error_in(exc: BaseException | None) -> SandboxError | None:
    """Our error, also when SQLAlchemy wrapped it in a StatementError on the way out."""
    seen = 0
    while exc is not None and seen < 5:
        if isinstance(exc, SandboxError):
            return exc
        exc = getattr(exc, "orig", None) or exc.__cause__
        seen += 1
    return None
