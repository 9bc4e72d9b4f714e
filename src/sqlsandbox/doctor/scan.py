"""A static scan of the tests and conftests (nothing is imported or run): the fixtures sqlsandbox replaces, the
anti-patterns it has a better test for, and what it cannot configure around. Each is a Finding at file:line."""

from __future__ import annotations

import ast
import re
from collections.abc import Iterator
from dataclasses import dataclass, field

from .findings import CLASH, DELETE, KEEP, REWRITE, Finding
from .project import Project

OUR_FIXTURES = (
    "sandbox",
    "db_session",
    "async_db_session",
    "db_connection",
    "async_db_connection",
    "asgi_app",
    "asgi_client",
    "grpc_server",
)
URL_FIXTURES = ("db_url", "async_db_url")  # ours too, but a suite's own by that name does not turn us on
FACTORIES = {"create_engine", "create_async_engine", "sessionmaker", "async_sessionmaker", "scoped_session"}
DBAPI_ERRORS = {
    "DBAPIError",
    "OperationalError",
    "IntegrityError",
    "ProgrammingError",
    "DataError",
    "InterfaceError",
    "DatabaseError",
    "InternalError",
    "NotSupportedError",
}
CLEANUP_SQL = re.compile(r"^\s*(DELETE\s+FROM|TRUNCATE)\b", re.I)
DDL_SQL = re.compile(
    r"^\s*(CREATE|ALTER|DROP|RENAME)\s+(?!TEMPORARY)(TABLE|INDEX|VIEW|SCHEMA|DATABASE)\b", re.I
)
URL_VARIABLE = re.compile(r"(DATABASE|DB|SQLALCHEMY).*(URL|URI|DSN)", re.I)
SESSION_NAME = re.compile(r"session|(^|_)db($|_)|conn", re.I)

# What each kind of replaced fixture did, and what does it now; in the order a fixture is named by.
REPLACED = {
    "savepoint-recipe": (
        "a hand-written savepoint recipe (begin_nested / an after_transaction_end listener)",
        "every test runs in a rolled-back SAVEPOINT sandbox; db_session / async_db_session are its sessions",
    ),
    "create-all": (
        "create_all / drop_all of the tests' own",
        "sqlsandbox_metadata: the schema is built once per run (then cloned), each test rolls back",
    ),
    "delete-cleanup": (
        "DELETE FROM / TRUNCATE clean-up",
        "nothing a test writes survives it: the sandbox rolls back",
    ),
    "session-override": (
        "an engine / session factory of the tests' own",
        "sqlsandbox_bind: the app's own factories join the sandbox",
    ),
}


@dataclass
class Scan:
    findings: list[Finding] = field(default_factory=list)
    imported: set[str] = field(default_factory=set)  # module names the files import
    imports: list[tuple[str, int, str, str]] = field(default_factory=list)  # file, line, module, name
    testclient_calls: list[tuple[str, int]] = field(default_factory=list)


def scan(project: Project, mapped_classes: set[str] | None = None) -> Scan:
    result = Scan()
    requested = _requested_fixtures(project)
    for path in project.test_files:
        try:
            tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        except (SyntaxError, UnicodeDecodeError, ValueError, OSError) as exc:
            result.findings.append(
                Finding(
                    project.relative(path),
                    getattr(exc, "lineno", 1) or 1,
                    1,
                    "syntax-error",
                    CLASH,
                    f"cannot parse: {exc}",
                    "fix the file; pytest cannot collect it either",
                )
            )
            continue
        _FileScan(project.relative(path), tree, requested, mapped_classes or set(), result).run()
    return result


def _requested_fixtures(project: Project) -> set[str]:
    """Every argument name of a function in the tests and conftests, and usefixtures names: the fixtures
    something asks for (a replaced fixture that nothing asks for needs no alias)."""
    names: set[str] = set()
    for path in project.test_files:
        try:
            tree = ast.parse(path.read_text(encoding="utf-8"))
        except (SyntaxError, UnicodeDecodeError, ValueError, OSError):
            continue
        for node in ast.walk(tree):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                names.update(a.arg for a in node.args.args + node.args.kwonlyargs)
            elif isinstance(node, ast.Call) and _name(node.func).endswith("usefixtures"):
                names.update(
                    a.value for a in node.args if isinstance(a, ast.Constant) and isinstance(a.value, str)
                )
    return names


def _name(node: ast.AST) -> str:
    """'a.b.c' for a Name/Attribute chain (calls in between dropped), '' otherwise."""
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        inner = _name(node.value)
        return f"{inner}.{node.attr}" if inner else node.attr
    if isinstance(node, ast.Call):
        return _name(node.func)
    return ""


def _last(node: ast.AST) -> str:
    return _name(node).rpartition(".")[2]


def _start(node: ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef) -> int:
    return min([node.lineno, *(d.lineno for d in node.decorator_list)])


def _strings(node: ast.AST) -> Iterator[ast.Constant]:
    for sub in ast.walk(node):
        if isinstance(sub, ast.Constant) and isinstance(sub.value, str):
            yield sub


class _FileScan:
    def __init__(self, file: str, tree: ast.Module, requested: set[str], mapped: set[str], out: Scan) -> None:
        self.file, self.tree, self.requested, self.mapped, self.out = file, tree, requested, mapped, out
        self.sqlalchemy_errors: set[str] = set()  # names bound to sqlalchemy.exc classes in this file
        self.deleted: list[tuple[int, int]] = []

    def add(
        self,
        node: ast.AST,
        kind: str,
        section: str,
        message: str,
        fix: str,
        *,
        start: int | None = None,
        replacement: str | None = None,
    ) -> None:
        line: int = start if start is not None else getattr(node, "lineno", 1)
        end: int = getattr(node, "end_lineno", None) or line
        self.out.findings.append(Finding(self.file, line, end, kind, section, message, fix, replacement))
        if section == DELETE:
            self.deleted.append((line, end))

    def is_deleted(self, node: ast.AST) -> bool:
        line = getattr(node, "lineno", 0)
        return any(start <= line <= end for start, end in self.deleted)

    def run(self) -> None:
        self._imports()
        overrides = self._module_level()
        for node in self.tree.body:
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                if self._fixture_decorator(node) is not None:
                    self._fixture(node)
                elif node.name in overrides:
                    self.add(
                        node,
                        "dependency-override",
                        DELETE,
                        f"{node.name}: the session override app.dependency_overrides installs",
                        "the app's own dependency opens its bound session factory, in the sandbox",
                        start=_start(node),
                    )
        self._anywhere()

    # -- imports ---------------------------------------------------------------------------------------

    def _imports(self) -> None:
        for node in ast.walk(self.tree):
            if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                self.out.imported.add(node.module)
                for alias in node.names:
                    self.out.imports.append((self.file, node.lineno, node.module, alias.name))
                    if node.module == "sqlalchemy.exc" and alias.name in DBAPI_ERRORS:
                        self.sqlalchemy_errors.add(alias.asname or alias.name)
            elif isinstance(node, ast.Import):
                self.out.imported.update(alias.name for alias in node.names)

    # -- module level: engines, overrides, create_all run at import -------------------------------------

    def _module_level(self) -> set[str]:
        overrides: set[str] = set()
        for node in self.tree.body:
            if (
                isinstance(node, (ast.Assign, ast.AnnAssign))
                and isinstance(node.value, ast.Call)
                and _last(node.value.func) in FACTORIES
            ):
                what, instead = REPLACED["session-override"]
                targets = node.targets if isinstance(node, ast.Assign) else [node.target]
                named = ", ".join(_name(t) for t in targets)
                self.add(node, "session-override", DELETE, f"{named}: {what}", instead)
            if isinstance(node, ast.Expr) and _last(node.value) in {"create_all", "drop_all"}:
                what, instead = REPLACED["create-all"]
                self.add(node, "create-all", DELETE, f"{what}, at import", instead)
            if isinstance(node, ast.Assign) and self._overrides_dependency(node):
                if isinstance(node.value, ast.Name):
                    overrides.add(node.value.id)
                self._dependency_override(node)
            if (
                isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))
                and self._fixture_decorator(node) is None
                and self._listens(node)
            ):
                what, instead = REPLACED["savepoint-recipe"]
                self.add(node, "savepoint-recipe", DELETE, what, instead, start=_start(node))
        return overrides

    @staticmethod
    def _overrides_dependency(node: ast.Assign | ast.Delete | ast.Expr) -> bool:
        targets = node.targets if isinstance(node, (ast.Assign, ast.Delete)) else [node.value]
        return any(
            "dependency_overrides" in _name(t.value if isinstance(t, ast.Subscript) else t) for t in targets
        )

    def _dependency_override(self, node: ast.stmt) -> None:
        self.add(
            node,
            "dependency-override",
            DELETE,
            "app.dependency_overrides for the session dependency",
            "the app's own dependency (get_db / get_session) opens its bound factory, which joins the "
            "sandbox: the test and the app see one another's writes",
        )

    @staticmethod
    def _listens(node: ast.AST) -> bool:
        return any(s.value == "after_transaction_end" for s in _strings(node))

    # -- fixtures --------------------------------------------------------------------------------------

    @staticmethod
    def _fixture_decorator(node: ast.FunctionDef | ast.AsyncFunctionDef) -> ast.expr | None:
        for decorator in node.decorator_list:
            if _name(decorator).endswith("fixture"):
                return decorator
        return None

    def _fixture(self, node: ast.FunctionDef | ast.AsyncFunctionDef) -> None:
        decorator = self._fixture_decorator(node)
        keywords = {k.arg: k.value for k in decorator.keywords} if isinstance(decorator, ast.Call) else {}
        scope_node = keywords.get("scope")
        scope = str(scope_node.value) if isinstance(scope_node, ast.Constant) else "function"
        autouse_node = keywords.get("autouse")
        autouse = isinstance(autouse_node, ast.Constant) and autouse_node.value is True
        traits = self._traits(node)
        start = _start(node)
        if scope != "function" and "commits" in traits and "savepoint-recipe" not in traits:
            self.add(
                node,
                "seed-fixture",
                REWRITE,
                f"{node.name}: a {scope}-scoped fixture that commits its rows once, for every later test "
                "(a clean-up between tests takes them away, and what stays is seen by every later run)",
                f'a seed layer: `@seed(scope="{scope}")` over `def {node.name}(layer):`, writing with '
                "`layer.session()` and committing; its rows live in a transaction that is rolled back, "
                "each test in a savepoint above it (from sqlsandbox import seed); no create_all: the schema "
                "is built by then",
                start=start,
            )
            return
        replaced = [kind for kind in REPLACED if kind in traits]
        if replaced:
            what = "; ".join(REPLACED[kind][0] for kind in replaced)
            what = f"per-test {what}" if scope == "function" and replaced[0] == "create-all" else what
            instead = "; ".join(REPLACED[kind][1] for kind in replaced)
            alias = None if autouse or node.name in OUR_FIXTURES else self._alias(node)
            fix = instead + (f"; a one-line alias keeps tests that ask for {node.name!r}" if alias else "")
            self.add(node, replaced[0], DELETE, f"{node.name}: {what}", fix, start=start, replacement=alias)
        else:
            for sub in ast.walk(node):
                if (isinstance(sub, (ast.Assign, ast.Delete)) and self._overrides_dependency(sub)) or (
                    isinstance(sub, ast.Expr)
                    and isinstance(sub.value, ast.Call)
                    and "dependency_overrides" in _name(sub.value.func)
                ):
                    self._dependency_override(sub)
        if node.name in OUR_FIXTURES:
            what = (
                "tests asking for it get this one, outside the sandbox; and since they ask for that name, an "
                "installed sqlsandbox turns itself on and refuses this fixture's own database "
                "(DatabaseAccessBlocked)"
            )
            fix = "delete it (sqlsandbox's takes its place), or rename it if it is something else"
        elif node.name in URL_FIXTURES:
            what = (
                "(the test database's URL for engines the app builds itself): tests and fixtures asking for "
                "it get this one"
            )
            fix = "rename it, or delete it if it named a test database sqlsandbox now makes"
        else:
            return
        sep = " " if what.startswith("(") else ": "
        message = f"{node.name}: the suite's own fixture shadows sqlsandbox's {node.name!r}{sep}{what}"
        self.out.findings.append(
            Finding(self.file, start, node.end_lineno or start, "shadowed-fixture", CLASH, message, fix)
        )

    def _traits(self, node: ast.AST) -> set[str]:
        traits: set[str] = set()
        for sub in ast.walk(node):
            if isinstance(sub, ast.Attribute):
                if sub.attr in {"create_all", "drop_all"}:
                    traits.add("create-all")
                elif sub.attr == "begin_nested":
                    traits.add("savepoint-recipe")
                elif sub.attr == "commit":
                    traits.add("commits")
            elif isinstance(sub, ast.Call):
                if _last(sub.func) in FACTORIES:
                    traits.add("session-override")
                elif _last(sub.func) == "delete" and _last(getattr(sub.func, "value", sub)) == "query":
                    traits.add("delete-cleanup")
            elif isinstance(sub, ast.Constant) and isinstance(sub.value, str):
                if sub.value == "after_transaction_end":
                    traits.add("savepoint-recipe")
                elif CLEANUP_SQL.match(sub.value):
                    traits.add("delete-cleanup")
        return traits

    def _alias(self, node: ast.FunctionDef | ast.AsyncFunctionDef) -> str | None:
        """A fixture of the same name over ours, so tests that ask for it keep working unchanged."""
        if node.name not in self.requested:
            return None
        text = ast.unparse(node)
        is_async = isinstance(node, ast.AsyncFunctionDef) or "Async" in text or "async_" in text
        if "engine" in node.name:
            value, arg = ("sandbox.async_engine" if is_async else "sandbox.sync_engine"), "sandbox"
        elif "conn" in node.name:
            arg = value = "async_db_connection" if is_async else "db_connection"
        else:
            arg = value = "async_db_session" if is_async else "db_session"
        return f"@pytest.fixture\ndef {node.name}({arg}):\n    return {value}\n"

    # -- anywhere: anti-patterns and what cannot be configured around ------------------------------------

    def _anywhere(self) -> None:
        functions: dict[int, ast.FunctionDef | ast.AsyncFunctionDef] = {}
        for node in ast.walk(self.tree):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                for sub in ast.walk(node):
                    functions.setdefault(id(sub), node)
        for node in ast.walk(self.tree):
            if isinstance(node, ast.Call):
                self._call(node, functions.get(id(node)))
            elif isinstance(node, (ast.Assign, ast.Return)) and isinstance(node.value, ast.Call):
                self._unspecced_mock(node, functions.get(id(node)))
            elif isinstance(node, ast.Constant) and isinstance(node.value, str):
                owner = functions.get(id(node))
                if DDL_SQL.match(node.value) and owner is not None and not self.is_deleted(node):
                    self._ddl(node)

    def _call(self, node: ast.Call, owner: ast.AST | None) -> None:
        name = _name(node.func)
        last = name.rpartition(".")[2]
        if last in DBAPI_ERRORS and (last in self.sqlalchemy_errors or "exc." in name):
            given = len(node.args) + sum(k.arg in {"statement", "params", "orig"} for k in node.keywords)
            if given < 3 or not node.args:
                text = ast.unparse(node)
                self.add(
                    node,
                    "dbapi-error-by-hand",
                    REWRITE,
                    f"{text}: SQLAlchemy's {last} takes (statement, params, orig); this raises TypeError, "
                    "or renders the message as the SQL with no driver error behind it",
                    f'sqlsandbox.faults.dbapi_error({last}, "..."), or make the real statement fail: '
                    'sandbox.faults.fail("INSERT", error="operational") / sandbox.faults.fail_next("commit")',
                )
        elif last in {"patch", "setattr"} and node.args and isinstance(node.args[0], ast.Constant):
            target = node.args[0].value
            if isinstance(target, str) and self._names_model(target):
                self.add(
                    node,
                    "patched-model",
                    REWRITE,
                    f"{ast.unparse(node)}: a patched model constructor tests the mock, not the mapping "
                    "(columns, constraints, defaults)",
                    f"build a real {target.rpartition('.')[2]}(...) and add it with db_session; the "
                    "sandbox rolls it back",
                )
        elif last in {"get", "getenv"} and name.rpartition(".")[0] in {"os.environ", "os", "environ"}:
            self._env_url(node)
        elif last == "TestClient":
            self.out.testclient_calls.append((self.file, node.lineno))

    def _names_model(self, target: str) -> bool:
        module, _, attr = target.rpartition(".")
        if not attr[:1].isupper():
            return False
        return (
            target in self.mapped or attr in self.mapped or (not self.mapped and "models" in module.split("."))
        )

    def _env_url(self, node: ast.Call) -> None:
        key = node.args[0] if node.args else None
        if not (
            isinstance(key, ast.Constant) and isinstance(key.value, str) and URL_VARIABLE.search(key.value)
        ):
            return
        default = node.args[1] if len(node.args) > 1 else None
        shown = ast.unparse(default) if default is not None else "none"
        self.add(
            node,
            "database-url-from-env",
            REWRITE,
            f"{key.value} read from the environment (default {shown}): a run where it is unset, or set "
            "for development, tests against that database",
            "delete it: sqlsandbox_url names the server, each run makes its own test_<name> database, and "
            "during tests every other database is refused (DatabaseAccessBlocked)",
        )

    def _unspecced_mock(self, node: ast.Assign | ast.Return, owner: ast.AST | None) -> None:
        call = node.value
        assert isinstance(call, ast.Call)
        if _last(call.func) not in {"AsyncMock", "MagicMock", "Mock"} or call.args:
            return
        if any(k.arg in {"spec", "spec_set"} for k in call.keywords):
            return
        if isinstance(node, ast.Assign):
            named = " ".join(_name(t) for t in node.targets)
        else:
            named = getattr(owner, "name", "")
        if not SESSION_NAME.search(named):
            return
        async_mock = _last(call.func) == "AsyncMock"
        real, mock = ("async_db_session", "async_session") if async_mock else ("db_session", "session")
        self.add(
            node,
            "unspecced-session-mock",
            REWRITE,
            f"{ast.unparse(node).splitlines()[0]}: an {_last(call.func)}() session with no spec accepts "
            "any method, misspelt or awaited wrongly, and runs no SQL",
            f"{real} (a real session in the sandbox: the query runs and rolls back); for a pure unit test "
            f"sqlsandbox.mocks.{mock}() (autospecced)"
            if async_mock
            else f"{real} (a real session in the sandbox: the query runs and rolls back); for a pure unit test "
            "MagicMock(spec=Session)",
        )

    def _ddl(self, node: ast.Constant) -> None:
        statement = " ".join(str(node.value).split()[:3])
        self.add(
            node,
            "ddl-in-test",
            CLASH,
            f"{statement!r} in a test: on MariaDB/MySQL DDL commits implicitly, past any sandbox, and "
            "sqlsandbox refuses it there (SandboxEscapeError); PostgreSQL and SQLite roll it back",
            "put the table in the models (built once per run), or use CREATE TEMPORARY TABLE",
        )


def testclient_findings(scan_result: Scan, has_async: bool) -> list[Finding]:
    """TestClient with an async engine once needed a sync engine of the tests' own; not any more."""
    if not has_async:
        return []
    first: dict[str, int] = {}
    for file, line in sorted(scan_result.testclient_calls):
        first.setdefault(file, line)
    return [
        Finding(
            file,
            line,
            line,
            "testclient-async-engine",
            KEEP,
            "TestClient with the app's async engine: fine as it is, sqlsandbox serves TestClient's thread "
            "and its event loop on the test's sandbox connection",
            "nothing to change (asgi_client, in the test's own loop, is the lighter choice for new tests)",
        )
        for file, line in sorted(first.items())
    ]


def imports_of(scan_result: Scan, module: str, name: str) -> list[tuple[str, int]]:
    return [(f, line) for f, line, mod, attr in scan_result.imports if mod == module and attr == name]


__all__ = ["OUR_FIXTURES", "Scan", "imports_of", "scan", "testclient_findings"]
