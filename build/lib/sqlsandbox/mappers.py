"""Configure every mapper once, before any test runs, and explain a failure in plain words.

SQLAlchemy's own message names the expression that failed; then every later mapper fails with "One or more
mappers failed to initialize", far from the cause. This check runs once at start-up and says which
relationship, which name, which registry was searched, which modules define a class of that name (imported or
not), and the fix.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path
from typing import Any

from sqlalchemy.exc import InvalidRequestError
from sqlalchemy.orm import RelationshipProperty, configure_mappers

from .errors import ConfigError

_LOCATE = re.compile(r"expression '(?P<expr>[^']+)' failed to locate a name \('(?P<name>[^']+)'\)")
_SKIP_DIRS = {".venv", "venv", "site-packages", "node_modules", "__pycache__", ".git", ".tox", "build"}


def check_mappers(rootdir: Path | None = None) -> None:
    try:
        configure_mappers()
    except InvalidRequestError as exc:
        raise explain(exc, rootdir) from None


def explain(exc: InvalidRequestError, rootdir: Path | None) -> ConfigError:
    message = str(exc.args[0]) if exc.args else str(exc)
    found = _LOCATE.search(message)
    if found is None:
        return ConfigError(
            f"SQLAlchemy could not configure the models: {message}",
            fix="fix the mapping named above; sqlsandbox configures all mappers before the first test "
            "so this shows once, here.",
        )
    name = found["name"].rsplit(".", 1)[-1]
    where = _failing_relationship(found["expr"])
    registries = _registries_with_class(name)
    imported = sorted(
        mod_name
        for mod_name, module in list(sys.modules.items())
        if isinstance(getattr(module, name, None), type) and getattr(module, name).__module__ == mod_name
    )
    on_disk = sorted(set(_modules_defining(name, rootdir)) - set(imported)) if rootdir else []
    lines = [f"Relationship {where} names {found['expr']!r}, and no class {name!r} is in its registry."]
    if where.registry_classes is not None:
        lines.append(f"Registry searched: the one of {where.base} ({where.registry_classes} mapped classes).")
    if registries:
        lines.append(f"A class {name!r} is mapped in another registry: {', '.join(registries)}.")
    if imported:
        lines.append(f"Imported modules defining {name!r}: {', '.join(imported)}.")
    if on_disk:
        lines.append(f"Modules defining {name!r} that were never imported: {', '.join(on_disk)}.")
    if not imported and not on_disk:
        lines.append(f"No module under {rootdir} defines a class {name!r}.")
    if registries:
        fix = (
            f"map {name!r} on the same declarative base as {where.owner}, or use one registry for "
            "related models."
        )
    elif on_disk:
        fix = f"import {on_disk[0]} before the mappers are configured (e.g. in your models package's __init__)."
    else:
        fix = f"check the spelling of {found['expr']!r}, or import the module that defines it."
    return ConfigError(
        "\n".join(lines),
        why="SQLAlchemy resolves relationship('Name') strings when the mappers are first configured, "
        "looking only at classes already mapped in the same registry; patching or mocking later cannot "
        "help, and every other mapper then fails too.",
        fix=fix,
    )


class _Where:
    def __init__(self, owner: str, attr: str, base: str, registry_classes: int | None) -> None:
        self.owner, self.attr, self.base, self.registry_classes = owner, attr, base, registry_classes

    def __str__(self) -> str:
        return f"{self.owner}.{self.attr}"


def _all_registries() -> list[Any]:
    from sqlalchemy.orm import mapperlib

    return list(getattr(mapperlib, "_mapper_registries", {}))


def _failing_relationship(expr: str) -> _Where:
    for reg in _all_registries():
        for mapper in list(reg.mappers):
            for prop in mapper._props.values():
                if not isinstance(prop, RelationshipProperty):
                    continue
                argument = prop.argument
                if isinstance(argument, str) and argument == expr:
                    cls = mapper.class_
                    return _Where(
                        f"{cls.__module__}.{cls.__name__}",
                        prop.key,
                        _base_name(reg),
                        len(list(reg.mappers)),
                    )
    return _Where("<unknown>", "<relationship>", "<unknown registry>", None)


def _base_name(reg: Any) -> str:
    for mapper in reg.mappers:
        for base in mapper.class_.__mro__[1:]:
            if getattr(base, "registry", None) is reg and "__tablename__" not in vars(base):
                return f"{base.__module__}.{base.__name__}"
    return "a registry"


def _registries_with_class(name: str) -> list[str]:
    found = []
    for reg in _all_registries():
        for mapper in reg.mappers:
            if mapper.class_.__name__ == name:
                cls = mapper.class_
                found.append(f"{cls.__module__}.{name} (registry of {_base_name(reg)})")
    return found


def _modules_defining(name: str, rootdir: Path) -> list[str]:
    pattern = re.compile(rf"^class\s+{re.escape(name)}\b", re.M)
    modules = []
    for count, path in enumerate(rootdir.rglob("*.py")):
        if count > 5000:
            break
        parts = set(path.relative_to(rootdir).parts)
        if parts & _SKIP_DIRS or any(p.startswith(".") for p in parts):
            continue
        try:
            if pattern.search(path.read_text(encoding="utf-8", errors="ignore")):
                rel = path.relative_to(rootdir).with_suffix("")
                modules.append(".".join(rel.parts))
        except OSError:
            continue
    return modules
