"""Configure every mapper once, before any test runs, and explain a failure in plain words."""

from __future__ import annotations

from sqlalchemy.exc import InvalidRequestError
from sqlalchemy.orm import configure_mappers

from .errors import ConfigError


def check_mappers() -> None:
    try:
        configure_mappers()
    except InvalidRequestError as exc:
        raise ConfigError(
            f"SQLAlchemy could not configure the models: {exc.args[0] if exc.args else exc}",
            why="a relationship names a class by string, and no class of that name is known to the "
            "registry when the mappers are configured (its module was never imported), or the "
            "name is spelled differently.",
            fix="import every model module before use (e.g. in your models package's __init__, "
            "or point sqlsandbox_metadata at a module that imports them all).",
        ) from None
