"""The project as pytest sees it: its ini file, the folders it puts on sys.path, its tests and conftests."""

from __future__ import annotations

import configparser
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..config import load_toml

# Folders no test or app module of the project lives in.
SKIPPED_DIRS = {"node_modules", "build", "dist", "__pycache__", "site-packages", "venv", "env"}


@dataclass(frozen=True)
class IniFile:
    path: Path  # where the plan's lines go (it may not exist yet)
    style: str  # "pyproject" (TOML lists), or "ini" (one entry a line): pytest.ini, tox.ini, setup.cfg
    section: str  # the header the lines go under
    exists: bool  # the file has that section already


@dataclass(frozen=True)
class Project:
    root: Path
    ini: IniFile
    values: dict[str, Any]  # the ini section's raw values (strings, or lists from TOML)
    pythonpath: list[Path] = field(default_factory=list)
    test_files: list[Path] = field(default_factory=list)  # test modules and conftests, sorted

    def relative(self, path: Path | str) -> str:
        try:
            return Path(path).resolve().relative_to(self.root).as_posix()
        except ValueError:
            return Path(path).as_posix()

    def import_roots(self) -> list[Path]:
        """The folders pytest puts on sys.path: `pythonpath` entries, then each test file's first folder
        above its packages (the "prepend" import mode), then the root itself, which conftests import from."""
        roots = list(self.pythonpath)
        for path in self.test_files:
            base = path.parent
            while (base / "__init__.py").exists() and base != self.root:
                base = base.parent
            roots.append(base)
        roots.append(self.root)
        return list(dict.fromkeys(roots))


def load(root: Path) -> Project:
    root = root.resolve()
    ini, values = _find_ini(root)
    pythonpath = [(root / entry).resolve() for entry in _as_list(values.get("pythonpath"))]
    testpaths = [root / entry for entry in _as_list(values.get("testpaths"))] or [root]
    files: set[Path] = set()
    for top in testpaths:
        files.update(_test_files(top))
    files.update(p for p in _test_files(root) if p.name == "conftest.py")  # conftests outside testpaths
    return Project(root, ini, values, pythonpath, sorted(files))


def _as_list(value: Any) -> list[str]:
    if value is None:
        return []
    if isinstance(value, list):
        return [str(v) for v in value]
    return str(value).split()


def _find_ini(root: Path) -> tuple[IniFile, dict[str, Any]]:
    """pytest's own order: pytest.ini, .pytest.ini, pyproject.toml with [tool.pytest.ini_options], tox.ini
    with [pytest], setup.cfg with [tool:pytest]. With none, pyproject.toml if there is one, else pytest.ini."""
    for name in ("pytest.ini", ".pytest.ini"):
        if (root / name).is_file():
            return IniFile(root / name, "ini", "[pytest]", True), _ini_section(root / name, "pytest")
    pyproject = root / "pyproject.toml"
    if pyproject.is_file():
        values = _pyproject_section(pyproject)
        if values is not None:
            return IniFile(pyproject, "pyproject", "[tool.pytest.ini_options]", True), values
    for name, section in (("tox.ini", "pytest"), ("setup.cfg", "tool:pytest")):
        path = root / name
        if path.is_file() and section in _parser(path):
            return IniFile(path, "ini", f"[{section}]", True), _ini_section(path, section)
    if pyproject.is_file():
        return IniFile(pyproject, "pyproject", "[tool.pytest.ini_options]", False), {}
    return IniFile(root / "pytest.ini", "ini", "[pytest]", False), {}


def _parser(path: Path) -> configparser.ConfigParser:
    parser = configparser.ConfigParser(interpolation=None, strict=False)
    try:
        parser.read(path, encoding="utf-8")
    except (configparser.Error, OSError, UnicodeDecodeError) as exc:
        raise UnreadableConfig(f"{path.name}: {type(exc).__name__}: {exc}") from None
    return parser


def _ini_section(path: Path, section: str) -> dict[str, Any]:
    parser = _parser(path)
    return dict(parser[section]) if section in parser else {}


def _pyproject_section(path: Path) -> dict[str, Any] | None:
    try:
        data = load_toml(path)
    except (OSError, UnicodeDecodeError, ValueError) as exc:  # TOMLDecodeError is a ValueError
        raise UnreadableConfig(f"{path.name}: {type(exc).__name__}: {exc}") from None
    section = data.get("tool", {}).get("pytest", {}).get("ini_options")
    return dict(section) if isinstance(section, dict) else None


def is_test_file(path: Path) -> bool:
    return path.name == "conftest.py" or (
        path.suffix == ".py" and (path.name.startswith("test_") or path.stem.endswith("_test"))
    )


def skipped(path: Path) -> bool:
    return path.name.startswith(".") or path.name in SKIPPED_DIRS or path.name.endswith(".egg-info")


class UnreadableConfig(Exception):
    """The project's pytest configuration cannot be parsed: the doctor says so in one line."""


def _test_files(top: Path) -> list[Path]:
    if top.is_file():
        return [top.resolve()] if is_test_file(top) else []
    found: list[Path] = []
    if not top.is_dir():
        return found
    try:
        children = sorted(top.iterdir())
    except OSError:  # a folder this user cannot read (a database container's volume): not the tests'
        return found
    for child in children:
        if child.is_dir():
            # symlinked folders are not followed: a link back up would loop, and pytest does not either
            if not skipped(child) and not child.is_symlink():
                found.extend(_test_files(child))
        elif is_test_file(child) and child.is_file():  # a broken symlink named test_x.py is nothing
            found.append(child.resolve())
    return found
