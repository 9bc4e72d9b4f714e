"""Finding the user's code: the first frame outside SQLAlchemy and sqlsandbox, for every message that names
where something happened."""

from __future__ import annotations

import os
import sys
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


_USER_CODE: dict[CodeType, bool] = {}


def _is_user_code(code: CodeType) -> bool:
    known = _USER_CODE.get(code)
    if known is None:
        filename = code.co_filename
        known = _USER_CODE[code] = (
            not filename.startswith(_OUR_DIRS)
            and not filename.startswith("<")  # code SQLAlchemy generates at run time
            and not any(p in filename for p in _SKIP_PARTS)
        )
    return known


def _user_frame(frame: FrameType | None, parent: FrameType | None) -> str:
    """Describe the first frame outside SQLAlchemy and sqlsandbox, continuing into `parent`."""
    while frame is not None:
        if _is_user_code(frame.f_code):
            return f"{frame.f_code.co_filename}:{frame.f_lineno} in {frame.f_code.co_name}()"
        frame = frame.f_back
        if frame is None and parent is not None:
            frame, parent = parent, None
    return "<unknown call site>"


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
