"""What a statement's text says: whether it ends a transaction, whether it writes, which tables it names.

Compiled ORM and Core statements are judged by what SQLAlchemy knows of them; text and driver SQL by their
words, after any leading comments.
"""

from __future__ import annotations

import re
from typing import Any

from sqlalchemy.sql.elements import TextClause
from sqlalchemy.sql.selectable import Select

LEADING_COMMENTS = r"(?:\s|--[^\n]*\n|/\*.*?\*/)*"
_TXN_CONTROL = re.compile(
    LEADING_COMMENTS + r"(COMMIT|ROLLBACK(?!\s+TO)|ABORT|END|BEGIN|START\s+TRANSACTION)\b", re.I | re.S
)
# the savepoint statements of the sandbox's units of work
_UNIT_SQL = re.compile(r"\s*(SAVEPOINT|RELEASE\s+SAVEPOINT|ROLLBACK\s+TO)\b", re.I)
# a table name, bare or quoted the way PostgreSQL, MariaDB/MySQL or SQLite quote it
_NAME = r"[`\"\[]?(\w+)[`\"\]]?"
_WRITTEN_TABLE = re.compile(r"^\s*(?:INSERT\s+(?:IGNORE\s+)?INTO|UPDATE|DELETE\s+FROM)\s+" + _NAME, re.I)
_NAMED_TABLE = re.compile(r"\b(?:FROM|INTO|UPDATE|JOIN)\s+" + _NAME, re.I)
_READ_ONLY = ("SELECT", "SAVEPOINT", "RELEASE", "ROLLBACK", "SHOW", "PRAGMA", "EXPLAIN", "SET ")


# what a `;` inside does not end: quoted strings and names, comments, PostgreSQL's dollar-quoted bodies
def _separators(backslash_escapes: bool) -> re.Pattern[str]:
    string = r"'(?:[^'\\]|\\.|'')*'" if backslash_escapes else r"'(?:[^']|'')*'"
    return re.compile(string + r"""|"(?:[^"]|"")*"|`[^`]*`|--[^\n]*|/\*.*?\*/|(\$\w*\$).*?\1|;""", re.S)


_SEPARATORS = {True: _separators(True), False: _separators(False)}
# a routine's or trigger's body holds statements of its own (`BEGIN ATOMIC ...; END`): it is one statement
_ROUTINE = re.compile(LEADING_COMMENTS + r"CREATE\b[^;]*?\b(TRIGGER|FUNCTION|PROCEDURE|EVENT)\b", re.I | re.S)


def statements(sql: str, backslash_escapes: bool = True) -> list[str]:
    """The statements of a multi-statement string (drivers run `select 1; commit; select 2` whole).
    backslash_escapes: whether a backslash escapes a quote in a string (MySQL's; not standard SQL's)."""
    if ";" not in sql or _ROUTINE.match(sql):
        return [sql]
    found, start = [], 0
    for match in _SEPARATORS[backslash_escapes].finditer(sql):
        if match.group(0) == ";":
            found.append(sql[start : match.start()])
            start = match.end()
    found.append(sql[start:])
    return [part for part in found if part.strip()] or [sql]


def is_transaction_control(statement: str) -> bool:
    """COMMIT, ROLLBACK (not to a savepoint), BEGIN and their synonyms."""
    return _TXN_CONTROL.match(statement) is not None


def verb(statement: str) -> str:
    """The statement's first word, after any leading comments."""
    rest = re.sub(r"^" + LEADING_COMMENTS, "", statement, flags=re.S)
    return rest.split(None, 1)[0].upper() if rest.strip() else "SQL"


def is_unit_sql(statement: str) -> bool:
    """SAVEPOINT, RELEASE SAVEPOINT, ROLLBACK TO: the sandbox's own statements."""
    return _UNIT_SQL.match(statement) is not None


def is_write(statement: str, context: Any) -> bool:
    compiled = getattr(context, "compiled", None)
    if compiled is not None and not isinstance(getattr(compiled, "statement", None), TextClause):
        return bool(context.isinsert or context.isupdate or context.isdelete or context.isddl)
    return not statement.lstrip()[:9].upper().startswith(_READ_ONLY)


def is_plain_read(context: Any) -> bool:
    """A compiled SELECT that takes no locks and streams nothing: what a read-only unit may have run and
    still give its savepoint up between statements (units.py). Text SQL, SET, FOR UPDATE, a server-side
    cursor are not."""
    statement = getattr(getattr(context, "compiled", None), "statement", None)
    if not isinstance(statement, Select) or getattr(statement, "_for_update_arg", None) is not None:
        return False
    options = getattr(context, "execution_options", None) or {}
    return not (options.get("stream_results") or options.get("yield_per"))


def tables_written(statement: str, context: Any) -> set[str]:
    compiled = getattr(context, "compiled", None)
    table = getattr(getattr(compiled, "statement", None), "table", None)
    name = getattr(table, "name", None)
    if isinstance(name, str):
        return {name}
    found = _WRITTEN_TABLE.match(statement)
    return {found.group(1)} if found else set()


def tables_named(statement: str) -> set[str]:
    """Every table the statement reads or writes (after FROM, INTO, UPDATE, JOIN), lower-cased."""
    return {name.lower() for name in _NAMED_TABLE.findall(statement)}
