"""The mark that makes a database ours: one value, one parser, one formatter (as SQLAlchemy's URL is).

Every database sqlsandbox creates carries a mark (a comment on PostgreSQL, a marker table on MariaDB/MySQL,
a marker file on SQLite), and nothing without one is ever dropped or built in. It says who made it (pid,
host and pid namespace, time), and for a schema template which one it is and how far its build got:

    sqlsandbox: created by pid 4242 on ci-7~4026531836 at 1764590000
    sqlsandbox: created by pid 4242 on ci-7~4026531836 at 1764590000; template 24df3b6da2617382 of test_app;
    ready; run 3c04532e   (one line)
    sqlsandbox: kept; created by pid 4242 on ci-7~4026531836 at 1764590000

The last is a test database its run kept, as the user asked (sqlsandbox_keep_db): no run ever drops it, and
`--sqlsandbox-clean` only when told to. "kept" comes before "created by" so that earlier versions of
sqlsandbox, which read a mark from "created by" on, do not read it as theirs: they neither list nor drop it.

A template's time is when a run last cloned it (or built it), so that `--sqlsandbox-clean-templates` can
drop those unused for a while; earlier versions read the same format.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import os
import re
import socket
import time
from dataclasses import dataclass

MARK = "sqlsandbox"
MARKER_TABLE = "_sqlsandbox_owner"  # MariaDB/MySQL's marker table, and SQLite's marker file
_ORIGIN = re.compile(rf"^{MARK}: (kept; )?created by pid (\d+) on (\S+) at (\d+)")
_TEMPLATE = re.compile(r"; template (\S+) of (\S+); ([\w ]+); run (\S*)$")

# what a template's mark says of it
BUILDING, READY, UNCOPYABLE, DROPPING = "building", "ready", "uncopyable", "being dropped"
KEPT = "kept"  # a test database's: its run kept it, as the user asked


@functools.cache
def host() -> str:
    """Where a pid means one process: the host name and, on Linux, the pid namespace's id. Containers that
    share a host name (and a database server) but not their pids so never judge each other's databases."""
    name = socket.gethostname()
    with contextlib.suppress(OSError):
        name += "~" + re.sub(r"\D", "", os.readlink("/proc/self/ns/pid"))  # 'pid:[4026531836]'
    return name


def user_tag() -> str:
    """Names this user's folders under the shared temp dir, so two users on one machine never share one."""
    geteuid = getattr(os, "geteuid", None)
    return str(geteuid()) if geteuid is not None else re.sub(r"\W", "_", os.environ.get("USERNAME", "user"))


@dataclass(frozen=True)
class Mark:
    pid: int
    host: str
    at: float  # unix time, to the second
    # a schema template's: the first 16 digits of its key, the base name it serves, its state, the run
    # that built it ("" for a test database, whose state is "" or KEPT)
    key: str = ""
    base: str = ""
    state: str = ""
    run: str = ""

    @classmethod
    def now(cls, *, key: str = "", base: str = "", state: str = "", run: str = "") -> Mark:
        """The mark of a database this process makes now."""
        return cls(os.getpid(), host(), float(int(time.time())), key[:16], base, state, run)

    @classmethod
    def parse(cls, text: str | None) -> Mark | None:
        """The mark a database carries, or None for none of ours (or one that cannot be read)."""
        origin = _ORIGIN.match(text or "")
        if origin is None:
            return None
        kept, pid, where, at = origin.group(1), int(origin.group(2)), origin.group(3), float(origin.group(4))
        if kept:
            return cls(pid, where, at, state=KEPT)
        if "; template " not in str(text):
            return cls(pid, where, at)
        template = _TEMPLATE.search(str(text))
        if template is None:  # a template's mark we cannot read: neither ready nor kept
            return cls(pid, where, at, state=DROPPING)
        key, base, state, run = template.groups()
        return cls(pid, where, at, key, base, state, run)

    def __str__(self) -> str:
        origin = f"{MARK}: created by pid {self.pid} on {self.host} at {self.at:.0f}"
        if self.state == KEPT:
            return origin.replace(": created", ": kept; created", 1)
        if not self.state:
            return origin
        return f"{origin}; template {self.key} of {self.base}; {self.state}; run {self.run}"

    def with_time(self, at: float) -> Mark:
        return dataclasses.replace(self, at=float(int(at)))

    def kept(self) -> Mark:
        """The mark of this test database once its run kept it."""
        return dataclasses.replace(self, state=KEPT)

    @property
    def is_kept(self) -> bool:
        """A test database its run kept, as the user asked: only --sqlsandbox-clean-kept drops it."""
        return self.state == KEPT

    @property
    def is_ready(self) -> bool:
        """A template to clone."""
        return self.state == READY

    @property
    def is_uncopyable(self) -> bool:
        """What is left of a template that could not be copied (MariaDB/MySQL views, triggers, routines): an
        empty database whose mark tells later runs to build the schema in their test database straight
        away."""
        return self.state == UNCOPYABLE

    @property
    def is_kept_template(self) -> bool:
        """Meant to outlive its run."""
        return self.state in (READY, UNCOPYABLE)

    @property
    def made_here(self) -> bool:
        """Whether it was made on this host (and pid namespace), where its pid can be looked up."""
        # a mark without "~" was made before pid namespaces were recorded: judged by host name, as then
        return self.host in (host(), socket.gethostname())

    @property
    def is_stale(self) -> bool:
        """Made on this host by a process that no longer exists. A kept template or a kept test database is
        never stale: outliving its run is its purpose."""
        if not self.made_here or self.is_kept_template or self.is_kept or self.pid == os.getpid():
            return False
        try:
            os.kill(self.pid, 0)
        except ProcessLookupError:
            return True
        except PermissionError:
            return False
        return False


def is_stale(text: str | None) -> bool:
    """Whether a database carrying this mark text was left by a dead run (see Mark.is_stale)."""
    mark = Mark.parse(text)
    return mark is not None and mark.is_stale
