"""Settings: one option table that drives pytest's ini keys, the environment and the command line (in that
order; the last wins), and the defaults a plain script gets."""

from __future__ import annotations

import importlib
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from .errors import ConfigError

Kind = Literal["string", "linelist", "float", "bool"]


@dataclass(frozen=True)
class Option:
    key: str
    kind: Kind
    help: str
    default: Any = None
    flag: bool = False  # on the command line a bare flag, taking no value

    @property
    def ini(self) -> str:
        return f"sqlsandbox_{self.key}"

    @property
    def cli(self) -> str:
        return "--sqlsandbox-" + self.key.replace("_", "-")

    @property
    def env(self) -> str:
        return f"SQLSANDBOX_{self.key.upper()}"


CLEAN_DEFAULT_HOURS = 24  # --sqlsandbox-clean's age limit for databases made elsewhere
CLEAN_HELP = (
    "Run no tests: drop the databases this project's runs left on the server that no run can still "
    "be using: made on this host by a process that is gone, or elsewhere (another host or container) "
    f"more than HOURS ago (default {CLEAN_DEFAULT_HOURS}; another with '=': --sqlsandbox-clean=2) with "
    "nobody connected; then exit. Built templates stay (see --sqlsandbox-clean-templates), and so do "
    "test databases kept with sqlsandbox_keep_db (see --sqlsandbox-clean-kept)."
)
CLEAN_TEMPLATES = "--sqlsandbox-clean-templates"
CLEAN_TEMPLATES_HELP = (
    "Clean up as --sqlsandbox-clean does, and also drop this project's schema templates that no run has "
    "cloned for DAYS days (a number), or all of them ('all'); later runs build them again."
)
CLEAN_KEPT = "--sqlsandbox-clean-kept"
CLEAN_KEPT_HELP = (
    "Clean up as --sqlsandbox-clean does, and also drop the test databases runs kept with "
    "sqlsandbox_keep_db: those NAMEd (comma-separated, as the run's report and --sqlsandbox-clean name "
    "them), or every one of this project's if no NAME is given."
)
MARKERS = (
    "sqlsandbox(committed=False): give this test a sandbox (as if it asked for the sandbox "
    "fixture), so the application's bound engines and session factories work in it. "
    "committed=True: work commits for real (other threads, processes, servers can see it) and the "
    "tables the test wrote to are emptied afterwards.",
    "sqlsandbox_allow_any_database: let this test connect to databases other than the test "
    "database (sqlsandbox blocks that by default).",
)

OPTIONS: tuple[Option, ...] = (
    Option(
        "url",
        "string",
        "SQLAlchemy URL of the server to test against (default: embedded SQLite in a temp dir). "
        "sqlsandbox creates and drops its own test_<name> database there.",
    ),
    Option(
        "metadata",
        "linelist",
        "'package.module:attr' naming a MetaData or declarative base whose schema is built once per run.",
        (),
    ),
    Option(
        "bind",
        "linelist",
        "'package.module:attr' of the app's sessionmaker / async_sessionmaker / Engine / AsyncEngine "
        "objects that join the sandbox during each test.",
        (),
    ),
    Option(
        "alembic",
        "string",
        "Path to an alembic.ini: the schema is built by `alembic upgrade head` instead of create_all.",
    ),
    Option(
        "check_migrations",
        "bool",
        "With sqlsandbox_alembic: fail at start-up when the models (sqlsandbox_metadata) and the "
        "migrations disagree, listing the differences (as alembic autogenerate sees them).",
        False,
    ),
    Option(
        "rebuild",
        "bool",
        "Build the schema afresh instead of cloning the template an earlier run kept (templates are "
        "rebuilt by themselves when models or migrations change; this is for changes they cannot see).",
        False,
        flag=True,
    ),
    Option(
        "keep_db",
        "bool",
        "Keep the test database after the run, for inspection: it is marked as kept, so no later run "
        "drops it; the report names it and the command that drops it (--sqlsandbox-clean-kept).",
        False,
        flag=True,
    ),
    Option(
        "sqlite_foreign_keys",
        "bool",
        "SQLite only: check foreign keys (PRAGMA foreign_keys=ON), as PostgreSQL and MariaDB do. false: "
        "leave them unchecked, as plain SQLite does.",
        True,
    ),
    Option("asgi_app", "string", "'package.module:attr' of the ASGI app behind asgi_client."),
    Option(
        "lock_timeout",
        "float",
        "Seconds a task may wait for another task's unit of work on the sandbox connection "
        "before the test fails as deadlocked.",
        10.0,
    ),
)


@dataclass(frozen=True)
class Settings:
    """What a run is told. The defaults are those of an unconfigured project: embedded SQLite, no schema.

    metadata and bind take 'package.module:attr' strings (as the ini file spells them) or the objects
    themselves (MetaData, declarative bases; sessionmakers, engines), as a script would pass them."""

    url: str | None = None
    metadata: tuple[Any, ...] = ()
    bind: tuple[Any, ...] = ()
    alembic: str | None = None
    check_migrations: bool = False
    rebuild: bool = False
    keep_db: bool = False
    sqlite_foreign_keys: bool = True
    asgi_app: str | None = None
    lock_timeout: float = 10.0


def _split(value: str) -> tuple[str, ...]:
    return tuple(part for part in value.replace(",", " ").split() if part)


def _convert(opt: Option, raw: Any, source: str) -> Any:
    if opt.kind == "linelist":
        if isinstance(raw, str):
            return _split(raw)
        # `sqlsandbox_bind = a b` in pytest.ini is one line of a line list: its entries are split too
        return tuple(part for item in raw for part in _split(str(item)))
    text = str(raw).strip()
    if opt.kind == "bool":
        if text.lower() in ("1", "true", "yes", "on"):
            return True
        if text.lower() in ("0", "false", "no", "off", ""):
            return False
        raise ConfigError(f"{source} is {text!r}, which is not true or false.", fix="use true or false.")
    if opt.kind == "float":
        try:
            return float(text)
        except ValueError:
            raise ConfigError(
                f"{source} is {text!r}, which is not a number.",
                fix=f"set it to a number of seconds, e.g. {opt.ini} = {opt.default}",
            ) from None
    return text or None


def _nothing(key: str) -> Any:
    return None


def load_settings(ini: Callable[[str], Any] = _nothing, cli: Callable[[str], Any] = _nothing) -> Settings:
    """Settings from ini values, the environment and command-line values (looked up by the ini key:
    sqlsandbox_<key>), the last found winning."""
    values: dict[str, Any] = {}
    for opt in OPTIONS:
        value: Any = opt.default
        ini_value = ini(opt.ini)
        if ini_value not in (None, [], ""):
            value = _convert(opt, ini_value, f"ini option {opt.ini}")
        env_value = os.environ.get(opt.env)
        if env_value:
            value = _convert(opt, env_value, f"environment variable {opt.env}")
        cli_value = cli(opt.ini)
        if cli_value:
            value = _convert(opt, cli_value, f"command-line option {opt.cli}")
        values[opt.key] = value
    return Settings(**values)


def configured_by(ini: Callable[[str], Any] = _nothing, cli: Callable[[str], Any] = _nothing) -> list[str]:
    """Where the project turned sqlsandbox on: each sqlsandbox_* ini key, SQLSANDBOX_* variable and
    --sqlsandbox-* option that is set. None: the plugin stays out of the way (see plugin.py)."""
    found = [opt.ini for opt in OPTIONS if ini(opt.ini) not in (None, [], "")]
    found += [opt.env for opt in OPTIONS if os.environ.get(opt.env)]
    return found + [opt.cli for opt in OPTIONS if cli(opt.ini)]


def load_toml(path: Path) -> dict[str, Any]:
    """A TOML file (pyproject.toml) as a dict: tomllib, or on Python 3.10 tomli, which pytest itself needs
    there. Raises OSError, UnicodeDecodeError or ValueError (TOMLDecodeError is one)."""
    if sys.version_info >= (3, 11):
        import tomllib
    else:
        import tomli as tomllib
    data: dict[str, Any] = tomllib.loads(path.read_text(encoding="utf-8"))
    return data


def import_string(spec: str, setting: str) -> Any:
    """Import 'package.module:attr.sub' and explain precisely what went wrong if it fails."""
    module_name, sep, attr_path = spec.partition(":")
    if not sep or not module_name or not attr_path:
        raise ConfigError(
            f"{setting} entry {spec!r} is not of the form 'package.module:attr'.",
            fix=f"write it as e.g. {setting} = myapp.db:SessionLocal",
        )
    try:
        obj: Any = importlib.import_module(module_name)
    except ImportError as exc:
        raise ConfigError(
            f"{setting} entry {spec!r}: module {module_name!r} could not be imported ({exc}).",
            why="the module is not on sys.path, or importing it raised ImportError.",
            fix="check the spelling, install the package, or add its folder to pytest's "
            "'pythonpath' ini option.",
        ) from exc
    for part in attr_path.split("."):
        try:
            obj = getattr(obj, part)
        except AttributeError:
            raise ConfigError(
                f"{setting} entry {spec!r}: {module_name!r} has no attribute {attr_path!r}.",
                fix="name an object that the module defines at import time.",
            ) from None
    return obj
