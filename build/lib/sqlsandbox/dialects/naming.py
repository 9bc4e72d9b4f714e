"""How test databases and templates are named, and how a URL is shown: the same on every server."""

from __future__ import annotations

import re
from pathlib import Path

from sqlalchemy.engine import URL, make_url

from .. import drivers
from ..errors import ConfigError

TEMPLATE_PREFIX = "sqlsandbox_tpl_"


def safe_url(url: URL | str) -> str:
    """The URL as it may be shown: password hidden."""
    return make_url(url).render_as_string(hide_password=True)


def parse_url(raw: str | None) -> URL:
    if not raw:
        return make_url("sqlite:///sqlsandbox.db")
    try:
        return make_url(raw)
    except Exception as exc:
        raise ConfigError(
            f"sqlsandbox_url {raw!r} is not a SQLAlchemy URL ({exc}).",
            fix="write it as dialect+driver://user:password@host:port/dbname, "
            "e.g. postgresql+psycopg://postgres@127.0.0.1:5432/app",
        ) from None


def base_name(url: URL) -> str:
    base = url.database or "sqlsandbox"
    if drivers.family(url) == "sqlite":
        base = Path(base).stem if base != ":memory:" else "sqlsandbox"
    return re.sub(r"[^A-Za-z0-9_]", "_", f"test_{base}")[:40]


def test_database_name(url: URL, suffix: str = "") -> str:
    """test_<name>_<run id>[_<xdist worker>]: unique per run, so concurrent runs, nested pytest runs and
    CI shards never share (or drop) each other's database."""
    return re.sub(r"[^A-Za-z0-9_]", "_", f"{base_name(url)}{suffix}")[:63]


def like_prefix(base: str) -> str:
    """A LIKE pattern for names that start with base and an underscore."""
    return base.replace("\\", "\\\\").replace("_", "\\_").replace("%", "\\%") + "\\_%"


def template_name(key: str, run_id: str) -> str:
    return f"{TEMPLATE_PREFIX}{key[:16]}_{re.sub(r'[^A-Za-z0-9]', '', run_id)[:8] or 'run'}"


def run_database(base: str) -> re.Pattern[str]:
    """The names of the test databases runs of project `base` make: test_<name>_<run id>[_gw<N>]; not
    test_<name>_v2_<run id>, which project <name>_v2's runs make."""
    return re.compile(rf"{re.escape(base)}_[0-9A-Za-z]+(_gw\d+)?")
