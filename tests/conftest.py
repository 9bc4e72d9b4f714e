from __future__ import annotations

import pytest
from sqlalchemy import func, select

from tests.models import Base

# tests/doctor_projects/ holds little projects as they were before conversion: test_doctor.py runs their
# suites in subprocesses, ours never collects them
collect_ignore = ["doctor_projects"]


def _committed_rows(conn) -> dict[str, int]:
    return {
        t.name: conn.execute(select(func.count()).select_from(t)).scalar_one()
        for t in Base.metadata.sorted_tables
    }


@pytest.fixture(autouse=True)
def _nothing_committed_before(request: pytest.FixtureRequest) -> None:
    """Every sandbox test starts on a database where nothing any earlier test did was committed."""
    if "sandbox" not in request.fixturenames:
        return
    sandbox = request.getfixturevalue("sandbox")
    tables = [t.name for t in Base.metadata.sorted_tables]
    assert sandbox.db.run(_committed_rows) == dict.fromkeys(tables, 0)


# pytester's in-process runs unload modules first imported inside them; re-importing a C extension such as
# asyncpg can crash the interpreter. Import the drivers here, before any inner run.
import asyncpg  # noqa: E402, F401
import psycopg  # noqa: E402, F401
