"""Which sync and which async driver serve a URL, and a plain message when one is missing.

A sync test needs a sync driver and an async test an async one, whichever the configured URL names:
the URL says which server; the test says which kind of driver.
"""

from __future__ import annotations

import asyncio
import importlib.util
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

from sqlalchemy import create_engine
from sqlalchemy.engine import URL, Connection
from sqlalchemy.ext.asyncio import create_async_engine
from sqlalchemy.pool import NullPool

from .binding import mark_own
from .errors import DriverMissingError

T = TypeVar("T")


@dataclass(frozen=True)
class Driver:
    name: str  # SQLAlchemy's driver name, as in "postgresql+<name>"
    module: str  # the DBAPI module to look for
    pip: str  # what to install

    def installed(self) -> bool:
        return importlib.util.find_spec(self.module) is not None


# family -> its drivers, best first; each family's file in dialects/ registers its own
_SYNC: dict[str, tuple[Driver, ...]] = {}
_ASYNC: dict[str, tuple[Driver, ...]] = {}
# A driver named in the URL pairs best with its own library's other half (psycopg and psycopg_async).
_PARTNER: dict[str, str] = {}


def register(
    family: str,
    sync: tuple[Driver, ...],
    async_: tuple[Driver, ...],
    partners: tuple[tuple[str, str], ...] = (),
) -> None:
    """A family's drivers (its file in dialects/ declares them), best first."""
    _SYNC[family], _ASYNC[family] = sync, async_
    _PARTNER.update(partners)


def family(url: URL) -> str:
    backend = url.get_backend_name()
    return "mysql" if backend == "mariadb" else backend


def is_async(url: URL) -> bool:
    return any(url.get_driver_name() == d.name for drivers in _ASYNC.values() for d in drivers)


def _choose(url: URL, table: dict[str, tuple[Driver, ...]], kind: str) -> URL:
    fam = family(url)
    candidates = table.get(fam)
    if candidates is None:
        raise DriverMissingError(
            f"sqlsandbox does not support the {url.get_backend_name()!r} dialect.",
            fix="use a PostgreSQL, MariaDB/MySQL or SQLite URL.",
        )
    named = url.get_driver_name()
    wanted = [d for d in candidates if d.name in (named, _PARTNER.get(named))]
    for driver in wanted + [d for d in candidates if d not in wanted]:
        if driver.installed():
            return url.set(drivername=f"{url.get_backend_name()}+{driver.name}")
    options = " or ".join(f"pip install {d.pip}" for d in candidates)
    raise DriverMissingError(
        f"No {kind} driver for {fam} is installed.",
        why=f"a {kind} test needs a {kind} driver to reach the {fam} server named in the URL.",
        fix=f"{options} (sqlsandbox extras: pip install 'sqlsandbox[{fam}]').",
    )


def sync_url(url: URL) -> URL:
    return _choose(url, _SYNC, "sync")


def async_url(url: URL) -> URL:
    return _choose(url, _ASYNC, "async")


def run_on_any_driver(url: URL, fn: Callable[[Connection], T], *, autocommit: bool = False) -> T:
    """fn(conn) on a connection of its own to url, through the sync driver if one is installed, else
    through the async one (in asyncio.run); committed at the end, or AUTOCOMMIT throughout."""
    options = {"poolclass": NullPool, **({"isolation_level": "AUTOCOMMIT"} if autocommit else {})}
    try:
        sync = sync_url(url)
    except DriverMissingError:
        sync = None
    if sync is not None:
        engine = mark_own(create_engine(sync, **options))
        try:
            with engine.connect() as conn:
                result = fn(conn)
                conn.commit()
                return result
        finally:
            engine.dispose()

    async def via_async() -> T:
        aengine = create_async_engine(async_url(url), **options)
        mark_own(aengine.sync_engine)
        try:
            async with aengine.connect() as aconn:
                result = await aconn.run_sync(fn)
                await aconn.commit()
                return result
        finally:
            await aengine.dispose()

    return asyncio.run(via_async())
