"""A process in a pid namespace of its own: what a container sharing this host's name looks like to us."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

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
        stderr=subprocess.PIPE,
        text=True,
    )
    assert inner.stdout is not None
    line: list[str] = []
    for text in inner.stdout:
        if after in text:  # pytest -s prints a test's output after its file name, on that line
            line = (text.partition(after)[2] if after else text).split()
            break
    if not line:
        _, err = inner.communicate(timeout=30)
        if "Operation not permitted" in err and not os.environ.get("CI"):
            pytest.skip(f"cannot make a pid namespace here: {err.strip()}")
        raise AssertionError(err)
    return inner, line
