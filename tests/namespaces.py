"""A process in a pid namespace of its own: what a container sharing this host's name looks like to us."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import threading

import pytest


def require() -> None:
    """Skips where pid namespaces cannot be made (CI's machine must be able to)."""
    if sys.platform != "linux":
        pytest.skip("pid namespaces are Linux's")
    if shutil.which("unshare") is None:
        assert not os.environ.get("CI"), "CI's machine has unshare (util-linux)"
        pytest.skip("no unshare here")


def start(argv: list[str], cwd: str | None = None, after: str = "") -> tuple[subprocess.Popen[str], list[str]]:
    """Runs argv in a new pid namespace (killed with the returned process) and returns it with the words
    that follow `after` on the first line of its output that has it; skips where namespaces cannot be
    made, except in CI, where that fails."""
    require()
    inner = subprocess.Popen(
        ["unshare", "--pid", "--fork", "--kill-child", "--mount-proc", *argv],
        cwd=cwd,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,  # one pipe, read to the end on failure: the child never blocks on it
        text=True,
    )
    assert inner.stdout is not None
    watchdog = threading.Timer(120, inner.kill)  # a child that never says its line fails, not hangs
    watchdog.start()
    seen: list[str] = []
    line: list[str] = []
    try:
        for text in inner.stdout:
            if after in text:  # pytest -s prints a test's output after its file name, on that line
                line = (text.partition(after)[2] if after else text).split()
                break
            seen.append(text)
    finally:
        watchdog.cancel()
    if not line:
        inner.wait(timeout=30)
        out = "".join(seen)
        if "Operation not permitted" in out and not os.environ.get("CI"):
            pytest.skip(f"cannot make a pid namespace here: {out.strip()}")
        raise AssertionError(out or f"exited with {inner.returncode} and said nothing")
    return inner, line
