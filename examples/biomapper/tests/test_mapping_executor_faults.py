"""MappingExecutor._cache_results when the database fails: the seed-000 scenario, without mocks.

The original test replaced the cache sessionmaker with ``AsyncMock``s and made ``commit`` raise
``OperationalError("Commit failed", {}, None)``, a hand-built exception that crashed the run.
Here the app runs unchanged against the sandboxed database and the failure is injected by
sqlsandbox's fault API, which raises real, correctly built SQLAlchemy exceptions.

These tests need the fault-injection API: deselect them with ``-m "not needs_faults"`` until
it is available.
"""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import event
from sqlalchemy.exc import DBAPIError, IntegrityError, OperationalError
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Session

from biomapper.core.exceptions import CacheStorageError
from biomapper.core.mapping_executor import MappingExecutor
from biomapper.core.mapping_path import MappingPath
from biomapper.core.services.execution_trace_logger import ExecutionTraceLogger
from biomapper.db.cache_models import EntityMapping, EntityMappingProvenance, MappingSession
from tests.helpers import ObservingSessionManager, RecordingSessionManager, RowCount

pytestmark = pytest.mark.needs_faults

RESULTS = {
    "P12345": {"target_identifiers": ["ENSG00000139618"], "confidence_score": 0.92},
    "Q67890": {"target_identifiers": ["ENSG00000141510"], "confidence_score": 0.75},
}


async def _nothing_cached(row_count: RowCount) -> bool:
    return await row_count(EntityMapping) == 0 and await row_count(EntityMappingProvenance) == 0


async def test_commit_failure_raises_cache_storage_error_and_stores_nothing(
    sandbox: Any,
    recording_manager: RecordingSessionManager,
    trace_logger: ExecutionTraceLogger,
    uniprot_to_ensembl: MappingPath,
    row_count: RowCount,
) -> None:
    session_id = await trace_logger.log_mapping_session_start("commit-fails")
    executor = MappingExecutor(recording_manager)
    sandbox.faults.fail_next("commit", error="operational")

    with pytest.raises(CacheStorageError, match="Failed to cache 2 mapping") as raised:
        await executor._cache_results(RESULTS, uniprot_to_ensembl, session_id)

    cause = raised.value.__cause__
    assert isinstance(cause, OperationalError)
    assert cause.orig is not None
    assert str(cause)  # a correctly built exception renders (the seed's one crashed here)
    assert recording_manager.rolled_back(0)
    assert await _nothing_cached(row_count)
    assert await row_count(MappingSession, MappingSession.id == session_id) == 1

    # The fault fired once: the retry goes through.
    assert await executor._cache_results(RESULTS, uniprot_to_ensembl, session_id) == 2
    assert await row_count(EntityMapping) == 2
    assert await row_count(EntityMappingProvenance) == 2


async def test_unique_violation_on_insert_raises_cache_storage_error(
    sandbox: Any,
    executor: MappingExecutor,
    uniprot_to_ensembl: MappingPath,
    row_count: RowCount,
) -> None:
    """A concurrent writer inserted the same mapping between our lookup and our insert."""
    sandbox.faults.fail("INSERT", table="entity_mappings", error="unique_violation")

    with pytest.raises(CacheStorageError) as raised:
        await executor._cache_results(RESULTS, uniprot_to_ensembl, None)

    assert isinstance(raised.value.__cause__, IntegrityError)
    assert await _nothing_cached(row_count)


class _FailingFlushSessionManager(ObservingSessionManager):
    """Sessions whose commit fails after their rows were sent to the database.

    The error is raised from SQLAlchemy's ``after_flush_postexec`` session event, i.e. inside
    ``commit()``, once the INSERTs have been executed: the rollback must remove them.
    """

    def __init__(self, error: BaseException) -> None:
        super().__init__()
        self.error = error
        self.raised = 0

    def on_new_session(self, session: AsyncSession) -> None:
        def fail(sync_session: Session, flush_context: object) -> None:
            self.raised += 1
            raise self.error

        event.listen(session.sync_session, "after_flush_postexec", fail)


async def test_commit_failure_by_hand_with_a_correctly_built_error(
    uniprot_to_ensembl: MappingPath, row_count: RowCount
) -> None:
    from sqlsandbox.faults import dbapi_error

    error = dbapi_error(OperationalError, "commit failed")
    assert isinstance(error, OperationalError) and isinstance(error, DBAPIError)
    assert error.orig is not None
    assert "commit failed" in str(error)

    manager = _FailingFlushSessionManager(error)
    executor = MappingExecutor(manager)

    with pytest.raises(CacheStorageError) as raised:
        await executor._cache_results(RESULTS, uniprot_to_ensembl, None)

    assert raised.value.__cause__ is error
    assert manager.raised == 1
    assert await _nothing_cached(row_count)
