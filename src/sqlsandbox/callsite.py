"""Finding the user's code: the first frame outside SQLAlchemy and sqlsandbox, for every message that names
where something happened."""

from __future__ import annotations

import os
import sys
import sysconfig
from types import CodeType, FrameType, TracebackType
from typing import Any

import greenlet

from .loops import in_greenlet

_OUR_DIRS = tuple(
    os.path.dirname(str(mod.__file__))
    for mod in (sys.modules["sqlalchemy"], sys.modules[__name__.rpartition(".")[0]])
    if getattr(mod, "__file__", None)
)
_SKIP_PARTS = (os.sep + "asyncio" + os.sep, os.sep + "greenlet" + os.sep, "contextlib.py")


# installed libraries and the standard library: user code too, but the app's or the test's own is the better
# answer (sqlmodel's Session.exec() is not where the app made the call)
_LIBRARY_DIRS = tuple(
    {path for key in ("stdlib", "platstdlib", "purelib", "platlib") if (path := sysconfig.get_paths().get(key))}
)
_SQLALCHEMY_OR_US, _LIBRARY, _APP = 0, 1, 2
_KIND: dict[CodeType, int] = {}


def _kind(code: CodeType) -> int:
    known = _KIND.get(code)
    if known is None:
        filename = code.co_filename
        if (
            filename.startswith(_OUR_DIRS)
            or filename.startswith("<")  # code SQLAlchemy generates at run time
            or any(p in filename for p in _SKIP_PARTS)
        ):
            known = _SQLALCHEMY_OR_US
        elif filename.startswith(_LIBRARY_DIRS) or "site-packages" in filename:
            known = _LIBRARY
        else:
            known = _APP
        _KIND[code] = known
    return known


def _is_user_code(code: CodeType) -> bool:
    return _kind(code) != _SQLALCHEMY_OR_US


def describe_frame(frame: FrameType) -> str:
    return f"{frame.f_code.co_filename}:{frame.f_lineno} in {frame.f_code.co_name}()"


def _user_frame(frame: FrameType | None, parent: FrameType | None) -> str:
    """Describe the first frame of the app or the test, continuing into `parent`; else the first outside
    SQLAlchemy and sqlsandbox (a library's)."""
    library: FrameType | None = None
    while frame is not None:
        kind = _kind(frame.f_code)
        if kind == _APP:
            return describe_frame(frame)
        if kind == _LIBRARY and library is None:
            library = frame
        frame = frame.f_back
        if frame is None and parent is not None:
            frame, parent = parent, None
    return describe_frame(library) if library is not None else "<unknown call site>"


def app_frames(frame: FrameType | None, limit: int = 8) -> list[FrameType]:
    """The app's and the test's frames of a stack, from `frame` outward, innermost first (at most limit)."""
    found: list[FrameType] = []
    while frame is not None and len(found) < limit:
        if _kind(frame.f_code) == _APP:
            found.append(frame)
        frame = frame.f_back
    return found


def _parent_frame() -> FrameType | None:
    # Inside SQLAlchemy's async bridge the caller's coroutines are on the parent greenlet's stack.
    glet: Any = greenlet.getcurrent()
    parent = glet.parent if in_greenlet() else None
    return parent.gr_frame if parent is not None else None


def call_site(skip: int = 2) -> str:
    """The first frame outside SQLAlchemy and sqlsandbox: where the user's code made the call."""
    return _user_frame(sys._getframe(skip), _parent_frame())


def user_frames(tb: TracebackType | None) -> list[str]:
    """The user's frames of a traceback, outermost first, as 'file:line in fn()'."""
    frames = []
    while tb is not None:
        code = tb.tb_frame.f_code
        if code.co_filename.endswith(".py") and "site-packages" not in code.co_filename and _is_user_code(code):
            frames.append(f"{code.co_filename}:{tb.tb_lineno} in {code.co_name}()")
        tb = tb.tb_next
    return frames
