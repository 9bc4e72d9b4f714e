"""One file per database family, each a Provisioner subclass: provisioning and every quirk of that family.

A new database (CockroachDB, SQL Server...) is one new file here, listed in FAMILIES below, which registers
its drivers too, as SQLAlchemy's own testing/provision.py registers each dialect's provision hooks.
"""

from __future__ import annotations

from pathlib import Path

from sqlalchemy.engine import URL

from .. import drivers
from ..errors import ConfigError
from .base import Kept, Provisioned, Provisioner, TemplateGone, run_admin
from .mysql import MySQLProvisioner
from .naming import base_name, parse_url, safe_url
from .postgresql import PostgresProvisioner
from .sqlite import SQLiteProvisioner

FAMILIES: dict[str, type[Provisioner]] = {
    cls.family: cls for cls in (PostgresProvisioner, MySQLProvisioner, SQLiteProvisioner)
}
_BY_DIALECT = {name: cls for cls in FAMILIES.values() for name in cls.dialect_names}
for _family in FAMILIES.values():
    drivers.register(_family.family, _family.sync_drivers, _family.async_drivers, _family.driver_partners)


def provisioner_for(url: URL, cache_dir: Path | None = None) -> Provisioner:
    """The provisioner of the server url names (cache_dir: where file-based families keep templates)."""
    family = drivers.family(url)
    if family not in FAMILIES:
        raise ConfigError(
            f"sqlsandbox cannot provision {url.get_backend_name()!r} databases.",
            fix="use a PostgreSQL, MariaDB/MySQL or SQLite URL.",
        )
    return FAMILIES[family](url, cache_dir)


def quirks(dialect_name: str) -> type[Provisioner]:
    """The family class of a SQLAlchemy dialect name, for its class-level quirks (the base class's plain
    SQL defaults for a dialect we do not provision)."""
    return _BY_DIALECT.get(dialect_name, Provisioner)


__all__ = [
    "FAMILIES",
    "Kept",
    "Provisioned",
    "Provisioner",
    "TemplateGone",
    "base_name",
    "parse_url",
    "provisioner_for",
    "quirks",
    "run_admin",
    "safe_url",
]
