"""Import the app as pytest would, and list what sqlsandbox's settings name: module-level engines and session
factories (sqlsandbox_bind), declarative bases and MetaData (sqlsandbox_metadata), with the empty ones and the
table names two metadatas define differently.

Importing never reaches a database: the imports run under sqlsandbox's blocker, which refuses every connection
(an app that connects at import time is reported, as any import that fails is, by its error's last line)."""

from __future__ import annotations

import ast
import importlib
import sys
import traceback
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import MetaData
from sqlalchemy.engine import Engine
from sqlalchemy.ext.asyncio import AsyncEngine, async_scoped_session, async_sessionmaker
from sqlalchemy.orm import scoped_session, sessionmaker

from .. import blocker
from .findings import ADD, CLASH, NOT_IMPORTED, Finding
from .project import Project, is_test_file, skipped

# Folders of a project that hold no app code to import (their modules need a runner: alembic's env.py).
NOT_APP_DIRS = {"tests", "test", "testing", "migrations", "alembic", "docs", "examples", "scripts"}
BIND_TYPES: tuple[tuple[type, str], ...] = (
    (Engine, "Engine"),
    (AsyncEngine, "AsyncEngine"),
    (async_sessionmaker, "async_sessionmaker"),
    (sessionmaker, "sessionmaker"),
    (async_scoped_session, "async_scoped_session"),
    (scoped_session, "scoped_session"),
)
ASGI_FRAMEWORKS = {"starlette", "fastapi", "litestar"}
ASGI_APP_CLASSES = {"Starlette", "FastAPI", "Litestar"}
ASYNC_KINDS = {"AsyncEngine", "async_sessionmaker", "async_scoped_session"}


@dataclass(frozen=True)
class AppObject:
    spec: str  # "package.module:attr", as the ini names it
    file: str
    line: int
    kind: str  # a BIND_TYPES name, "declarative base" or "MetaData"
    tables: tuple[str, ...] = ()


@dataclass
class AppInspection:
    binds: list[AppObject] = field(default_factory=list)
    metadatas: list[AppObject] = field(default_factory=list)  # those with tables: the ini lines
    empty_metadatas: list[AppObject] = field(default_factory=list)
    asgi_apps: list[AppObject] = field(default_factory=list)  # sqlsandbox_asgi_app, when there is one
    mapped_classes: set[str] = field(default_factory=set)  # "User" and "shop.models.User"
    findings: list[Finding] = field(default_factory=list)
    server_url: str | None = None  # an engine's URL on a server (not SQLite), password hidden
    # the live objects behind each spec (ids tell an object met twice under two names), and where each
    # mapped table's class is defined
    objects: dict[str, Any] = field(default_factory=dict, repr=False)
    class_lines: dict[int, tuple[str, int]] = field(default_factory=dict, repr=False)

    @property
    def has_async(self) -> bool:
        return any(obj.kind in ASYNC_KINDS for obj in self.binds)


def inspect(project: Project, imported: Iterable[str]) -> AppInspection:
    """`imported`: the module names the tests and conftests import; those of the project are imported too."""
    roots = project.import_roots()
    modules = sorted(set(_package_modules(project, roots)) | set(_project_modules(project, roots, imported)))
    result = AppInspection()
    with _imports_as_pytest_would(project.root, roots):
        loaded: dict[str, Any] = {}
        for name in modules:
            try:
                loaded[name] = importlib.import_module(name)
            except BaseException as exc:
                if isinstance(exc, KeyboardInterrupt):
                    raise
                result.findings.append(_import_failure(project, name, exc))
        for name, module in sorted(loaded.items()):
            _collect(project, name, module, result)
    _tables_defined_twice(project, result)
    return result


def _package_modules(project: Project, roots: list[Path]) -> Iterator[str]:
    """Every module of the project's own packages (folders with __init__.py under an import root)."""
    for root in roots:
        if not root.is_relative_to(project.root):
            continue
        for child in sorted(root.iterdir()) if root.is_dir() else ():
            if child.is_dir() and (child / "__init__.py").exists() and _app_dir(child):
                yield from _walk_package(child, child.name)


def _app_dir(path: Path) -> bool:
    return not skipped(path) and path.name not in NOT_APP_DIRS


def _walk_package(folder: Path, dotted: str) -> Iterator[str]:
    for child in sorted(folder.iterdir()):
        if child.is_dir() and (child / "__init__.py").exists() and _app_dir(child):
            yield from _walk_package(child, f"{dotted}.{child.name}")
        elif child.suffix == ".py" and not is_test_file(child) and child.name != "__main__.py":
            yield dotted if child.name == "__init__.py" else f"{dotted}.{child.stem}"


def _project_modules(project: Project, roots: list[Path], imported: Iterable[str]) -> Iterator[str]:
    """The modules tests import that are files of the project (a single-module app: `from main import app`)."""
    for name in imported:
        parts = name.split(".")
        for root in roots:
            base = root.joinpath(*parts)
            path = base / "__init__.py" if base.is_dir() else base.with_suffix(".py")
            if path.is_file() and path.resolve().is_relative_to(project.root) and not is_test_file(path):
                if not any(part in NOT_APP_DIRS for part in path.relative_to(root).parts[:-1]):
                    yield name
                break


@contextmanager
def _imports_as_pytest_would(root: Path, roots: list[Path]) -> Iterator[None]:
    """The project's folders on sys.path and every connection refused; afterwards sys.path and sys.modules
    as they were, so a second project (or the suite itself) imports its own modules of the same names."""
    saved_path = list(sys.path)
    saved_modules = set(sys.modules)
    sys.path[:0] = [str(path) for path in roots]
    refuse_all = blocker.Blocker(current_test="sqlsandbox doctor (importing the app)")
    blocker.push(refuse_all)
    try:
        yield
    finally:
        blocker.pop(refuse_all)
        sys.path[:] = saved_path
        for name in set(sys.modules) - saved_modules:
            file = getattr(sys.modules[name], "__file__", None)
            if file and Path(file).resolve().is_relative_to(root):
                del sys.modules[name]


def _import_failure(project: Project, name: str, exc: BaseException) -> Finding:
    lines = str(exc).strip().splitlines()
    last = f"{type(exc).__name__}: {lines[0]}" if lines else type(exc).__name__
    where = [f for f in traceback.extract_tb(exc.__traceback__) if _under(project.root, f.filename)]
    file, line = (project.relative(where[-1].filename), where[-1].lineno or 1) if where else (name, 1)
    return Finding(
        file,
        line,
        line,
        "import-error",
        NOT_IMPORTED,
        f"importing {name} failed: {last}",
        "fix the import (it fails the same way under pytest), then run the doctor again: what that module "
        "defines is missing from the plan",
    )


def _under(root: Path, filename: str) -> bool:
    try:
        return Path(filename).resolve().is_relative_to(root)
    except (OSError, ValueError):
        return False


def _collect(project: Project, module_name: str, module: Any, result: AppInspection) -> None:
    file = getattr(module, "__file__", None)
    if not file or not _under(project.root, file):
        return
    for attr, line in _defined_at_top_level(Path(file)):
        obj = module.__dict__.get(attr)
        spec = f"{module_name}:{attr}"
        where = (project.relative(file), line)
        for cls, kind in BIND_TYPES:
            if isinstance(obj, cls):
                if not _known(result, result.binds, obj):
                    result.binds.append(AppObject(spec, *where, kind))
                    result.objects[spec] = obj
                    _note_url(obj, result)
                break
        if _is_asgi_app(obj) and not _known(result, result.asgi_apps, obj):
            result.asgi_apps.append(AppObject(spec, *where, "ASGI app"))
            result.objects[spec] = obj
        metadata = _metadata_of(obj)
        if metadata is not None and not _known(result, _all_metadatas(result), metadata):
            kind = "MetaData" if obj is metadata else "declarative base"
            entry = AppObject(spec, *where, kind, tuple(sorted(metadata.tables)))
            result.objects[spec] = metadata
            (result.metadatas if metadata.tables else result.empty_metadatas).append(entry)
            if obj is not metadata:
                for mapper in obj.registry.mappers:
                    cls_ = mapper.class_
                    result.mapped_classes.update({cls_.__name__, f"{cls_.__module__}.{cls_.__name__}"})
                    result.class_lines[id(mapper.local_table)] = _class_line(project, cls_)


def _is_asgi_app(obj: Any) -> bool:
    """An app of the ASGI frameworks asgi_client is made for (told by class, without importing them)."""
    return not isinstance(obj, type) and any(
        cls.__module__.split(".")[0] in ASGI_FRAMEWORKS and cls.__name__ in ASGI_APP_CLASSES
        for cls in type(obj).__mro__
    )


def _known(result: AppInspection, entries: list[AppObject], obj: Any) -> bool:
    return any(result.objects.get(entry.spec) is obj for entry in entries)


def _all_metadatas(result: AppInspection) -> list[AppObject]:
    return result.metadatas + result.empty_metadatas


def _metadata_of(obj: Any) -> MetaData | None:
    if isinstance(obj, MetaData):
        return obj
    # A declarative base owns its metadata (DeclarativeBase subclasses and declarative_base() results set it
    # in their own class dict); mapped classes and abstract mixins only inherit it.
    if isinstance(obj, type) and "__table__" not in vars(obj) and hasattr(obj, "registry"):
        own = vars(obj).get("metadata")
        if isinstance(own, MetaData):
            return own
    return None


def _note_url(obj: Any, result: AppInspection) -> None:
    if (
        result.server_url is None
        and isinstance(obj, (Engine, AsyncEngine))
        and obj.url.get_backend_name() != "sqlite"
    ):
        result.server_url = obj.url.render_as_string(hide_password=True)


def _defined_at_top_level(path: Path) -> list[tuple[str, int]]:
    """Names a module itself binds at top level (not those it imports), with their lines."""
    try:
        tree = ast.parse(path.read_text(encoding="utf-8"))
    except (OSError, SyntaxError, UnicodeDecodeError, ValueError):
        return []
    names: list[tuple[str, int]] = []
    for node in tree.body:
        if isinstance(node, ast.ClassDef):
            names.append((node.name, node.lineno))
        elif isinstance(node, ast.Assign):
            names.extend((t.id, node.lineno) for t in node.targets if isinstance(t, ast.Name))
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name) and node.value is not None:
            names.append((node.target.id, node.lineno))
    return names


def _class_line(project: Project, cls: type) -> tuple[str, int]:
    module = sys.modules.get(cls.__module__)
    file = getattr(module, "__file__", None)
    if not file:
        return (cls.__module__, 1)
    for name, line in _defined_at_top_level(Path(file)):
        if name == cls.__name__:
            return (project.relative(file), line)
    return (project.relative(file), 1)


def _tables_defined_twice(project: Project, result: AppInspection) -> None:
    """The same table name in two metadatas with different columns: sqlsandbox builds one of them (the first
    listed wins, silently), and the other's models run against the wrong columns."""
    by_name: dict[str, list[tuple[AppObject, Any]]] = {}
    for entry in result.metadatas:
        metadata = result.objects[entry.spec]
        for table in metadata.tables.values():
            by_name.setdefault(table.name, []).append((entry, table))
    for name, defs in sorted(by_name.items()):
        shapes = {tuple(sorted(c.name for c in table.columns)) for _, table in defs}
        if len(defs) < 2 or len(shapes) < 2:
            continue
        places = []
        for entry, table in defs:
            file, line = result.class_lines.get(id(table), (entry.file, entry.line))
            places.append((file, line, entry.spec, ", ".join(c.name for c in table.columns)))
        places.sort()
        first = places[0]
        others = "; ".join(f"{spec} at {file}:{line} ({cols})" for file, line, spec, cols in places)
        result.findings.append(
            Finding(
                first[0],
                first[1],
                first[1],
                "table-clash",
                CLASH,
                f"table {name!r} is defined by {len(places)} metadatas with different columns: {others}. "
                "One database has one such table: the first metadata listed builds it and the others' models "
                "query columns it does not have",
                f'give each its own table name (__tablename__ = "legacy_{name}"), or merge the models into one '
                "base; then list every base in sqlsandbox_metadata",
            )
        )
    for entry in result.empty_metadatas:
        result.findings.append(empty_metadata_finding(entry, entry.file, entry.line, result))


def empty_metadata_finding(entry: AppObject, file: str, line: int, result: AppInspection) -> Finding:
    models = ", ".join(m.spec for m in result.metadatas) or "none found"
    return Finding(
        file,
        line,
        line,
        "empty-metadata",
        ADD,
        f"{entry.spec} is a {entry.kind} with no tables: create_all on it creates nothing, and the tests "
        "that rely on it fail with 'relation does not exist' (PostgreSQL) or 'no such table' (SQLite)",
        f"left out of sqlsandbox_metadata; the models' metadata is {models}",
    )
