"""Shared fixtures: the app's real services, wired to the sandboxed cache database.

Nothing here is mocked: ``SessionManager()`` uses the app's module-level ``async_cache_session``,
which sqlsandbox rebinds to the test's sandbox (see ``sqlsandbox_bind`` in pytest.ini). The test
reads back what the app wrote through ``async_db_session``.
"""

from __future__ import annotations

from typing import Any, TypeVar

import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from biomapper.core.mapping_executor import MappingExecutor
from biomapper.core.mapping_path import MappingPath
from biomapper.core.services.execution_trace_logger import ExecutionTraceLogger
from biomapper.db.session import SessionManager
from tests.helpers import Fetch, RecordingSessionManager, RowCount

M = TypeVar("M")


@pytest.fixture
def session_manager() -> SessionManager:
    return SessionManager()


@pytest.fixture
def recording_manager() -> RecordingSessionManager:
    return RecordingSessionManager()


@pytest.fixture
def trace_logger(session_manager: SessionManager) -> ExecutionTraceLogger:
    return ExecutionTraceLogger(session_manager)


@pytest.fixture
def executor(session_manager: SessionManager) -> MappingExecutor:
    return MappingExecutor(session_manager)


@pytest.fixture
def uniprot_to_ensembl() -> MappingPath:
    return MappingPath(
        id=7,
        name="UniProt_to_Ensembl_via_API",
        source_type="UNIPROTKB_AC",
        target_type="ENSEMBL_GENE",
        steps=("uniprot_api_lookup", "ensembl_xref"),
    )


@pytest.fixture
def row_count(async_db_session: AsyncSession) -> RowCount:
    """``await row_count(Model, *where)``: rows of a table as the database has them now."""

    async def count(model: Any, *where: Any) -> int:
        stmt = select(func.count()).select_from(model)
        if where:
            stmt = stmt.where(*where)
        return int(await async_db_session.scalar(stmt) or 0)

    return count


@pytest.fixture
def fetch(async_db_session: AsyncSession) -> Fetch:
    """``await fetch(Model, id, *loader_options)``: a fresh copy of a row (never a stale one)."""

    async def get(model: type[M], ident: Any, *options: Any) -> M | None:
        return await async_db_session.get(
            model, ident, options=list(options), populate_existing=True
        )

    return get


@pytest.fixture
async def foreign_keys_enforced(async_db_session: AsyncSession) -> None:
    """Skip unless the sandbox's database enforces foreign keys (SQLite may not)."""
    conn = await async_db_session.connection()
    if conn.dialect.name == "sqlite":
        enabled = (await conn.exec_driver_sql("PRAGMA foreign_keys")).scalar()
        if not enabled:
            pytest.skip("the sandbox's SQLite connection does not enforce foreign keys")
