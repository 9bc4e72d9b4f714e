"""Settings from pytest's ini file, the environment and the command line (that order; the last wins)."""

from __future__ import annotations

import importlib
import os
from dataclasses import dataclass
from typing import Any, Literal

import pytest

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
    url: str | None
    metadata: tuple[str, ...]
    bind: tuple[str, ...]
    alembic: str | None
    check_migrations: bool
    rebuild: bool
    asgi_app: str | None
    lock_timeout: float


def add_options(parser: pytest.Parser) -> None:
    group = parser.getgroup("sqlsandbox", "real database per test run, rolled-back sandbox per test")
    for opt in OPTIONS:
        if opt.kind == "linelist":
            parser.addini(opt.ini, opt.help, type="linelist", default=None)
        else:
            parser.addini(opt.ini, opt.help, type="string", default=None)
        extra: dict[str, Any] = {"action": "store_const", "const": "true"} if opt.flag else {}
        group.addoption(opt.cli, dest=opt.ini, default=None, help=f"{opt.help} [env {opt.env}]", **extra)
    group.addoption(
        "--sqlsandbox-clean",
        dest="sqlsandbox_clean",
        nargs="?",
        const=str(CLEAN_DEFAULT_HOURS),
        default=None,
        metavar="HOURS",
        help="Run no tests: drop the databases this project's runs left on the server that no run can still "
        "be using: made on this host by a process that is gone, or elsewhere (another host or container) "
        f"more than HOURS ago (default {CLEAN_DEFAULT_HOURS}; another with '=': --sqlsandbox-clean=2) with "
        "nobody connected; then exit. Built templates are kept.",
    )


def _split(value: str) -> tuple[str, ...]:
    return tuple(part for part in value.replace(",", " ").split() if part)


def _convert(opt: Option, raw: Any, source: str) -> Any:
    if opt.kind == "linelist":
        if isinstance(raw, str):
            return _split(raw)
        return tuple(str(item).strip() for item in raw if str(item).strip())
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


def load_settings(config: pytest.Config) -> Settings:
    values: dict[str, Any] = {}
    for opt in OPTIONS:
        value: Any = opt.default
        ini_value = config.getini(opt.ini)
        if ini_value not in (None, [], ""):
            value = _convert(opt, ini_value, f"ini option {opt.ini}")
        env_value = os.environ.get(opt.env)
        if env_value:
            value = _convert(opt, env_value, f"environment variable {opt.env}")
        cli_value = config.getoption(opt.ini, default=None)
        if cli_value:
            value = _convert(opt, cli_value, f"command-line option {opt.cli}")
        values[opt.key] = value
    return Settings(**values)


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
