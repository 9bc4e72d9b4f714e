"""ExecutionTraceLogger error handling against a real database.

Malformed input is rejected with ``CacheTransactionError`` before anything is written. Real
constraint violations (unique, NOT NULL, foreign key) raised by the database surface as
``CacheTransactionError`` chained to SQLAlchemy's ``IntegrityError``, and the failed call leaves
nothing half-written while earlier, committed writes stay.
"""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from biomapper.core.exceptions import CacheTransactionError
from biomapper.core.services.execution_trace_logger import ExecutionTraceLogger
from biomapper.db.cache_models import (
    EntityMapping,
    EntityMappingProvenance,
    ExecutionMetric,
    MappingPathExecutionLog,
    MappingSession,
)
from tests.helpers import Fetch, RecordingSessionManager, RowCount, as_any

MISSING_SESSION_ID = 987_654
MALFORMED: Any = None


def _mapping(source: str, target: str | None, **extra: object) -> dict[str, object]:
    data: dict[str, object] = {
        "source_id": source,
        "source_type": "UNIPROTKB_AC",
        "target_id": target,
        "target_type": "ENSEMBL_GENE",
    }
    data.update(extra)
    return data


async def _nothing_written(row_count: RowCount) -> bool:
    return (
        await row_count(EntityMapping) == 0
        and await row_count(EntityMappingProvenance) == 0
        and await row_count(MappingPathExecutionLog) == 0
        and await row_count(ExecutionMetric) == 0
    )


# --- Malformed input: rejected before any session is opened -------------------------------------


@pytest.mark.parametrize("field", ["source_id", "source_type", "target_id", "target_type"])
async def test_mapping_missing_a_required_field_writes_nothing(
    field: str, recording_manager: RecordingSessionManager, row_count: RowCount
) -> None:
    logger = ExecutionTraceLogger(recording_manager)
    broken = _mapping("Q67890", "ENSG00000141510")
    del broken[field]
    batch = [_mapping("P12345", "ENSG00000139618", provenance=[{"source_name": "a"}]), broken]

    with pytest.raises(CacheTransactionError, match=f"#1: missing field '{field}'") as raised:
        await logger.log_entity_mappings(batch)

    assert isinstance(raised.value.__cause__, KeyError)
    assert raised.value.details == {"index": 1}
    assert recording_manager.sessions == []
    assert await _nothing_written(row_count)


@pytest.mark.parametrize(
    ("provenance", "message"),
    [
        ([{"method": "idmapping"}], "missing field 'source_name'"),
        ([{"source_name": "x", "details": {"bad": {1, 2}}}], "not JSON-serializable"),
        ({"source_name": "not a list"}, "Malformed entity mapping #0"),
    ],
    ids=["no-source-name", "details-not-json", "not-a-list"],
)
async def test_malformed_provenance_writes_nothing(
    provenance: object, message: str, trace_logger: ExecutionTraceLogger, row_count: RowCount
) -> None:
    with pytest.raises(CacheTransactionError, match=message):
        await trace_logger.log_entity_mappings([_mapping("P1", "G1", provenance=provenance)])

    assert await _nothing_written(row_count)


@pytest.mark.parametrize("confidence", ["high", float("nan"), [0.9]])
async def test_mapping_with_a_non_numeric_confidence_writes_nothing(
    confidence: object, trace_logger: ExecutionTraceLogger, row_count: RowCount
) -> None:
    with pytest.raises(CacheTransactionError, match="confidence must be a"):
        await trace_logger.log_entity_mappings([_mapping("P1", "G1", confidence=confidence)])

    assert await _nothing_written(row_count)


async def test_non_mapping_entry_writes_nothing(
    trace_logger: ExecutionTraceLogger, row_count: RowCount
) -> None:
    with pytest.raises(CacheTransactionError, match="#1"):
        await trace_logger.log_entity_mappings([_mapping("P1", "G1"), MALFORMED])

    assert await _nothing_written(row_count)


async def test_session_start_with_unserializable_parameters_writes_nothing(
    recording_manager: RecordingSessionManager, row_count: RowCount
) -> None:
    logger = ExecutionTraceLogger(recording_manager)

    with pytest.raises(CacheTransactionError, match="not JSON-serializable") as raised:
        await logger.log_mapping_session_start("bad-params", parameters={"ids": {"P1", "P2"}})

    assert isinstance(raised.value.__cause__, TypeError)
    assert recording_manager.sessions == []
    assert await row_count(MappingSession) == 0


async def test_session_end_with_an_unknown_status_leaves_the_session_as_is(
    trace_logger: ExecutionTraceLogger, fetch: Fetch
) -> None:
    session_id = await trace_logger.log_mapping_session_start("bad-status")

    with pytest.raises(CacheTransactionError, match="Invalid end status 'done'"):
        await trace_logger.log_mapping_session_end(session_id, status="done", results_count=3)

    row = await fetch(MappingSession, session_id)
    assert (row.status, row.end_time, row.results_count) == ("running", None, 0)


async def test_session_end_with_a_non_integer_count_leaves_the_session_as_is(
    trace_logger: ExecutionTraceLogger, fetch: Fetch
) -> None:
    session_id = await trace_logger.log_mapping_session_start("bad-count")

    with pytest.raises(CacheTransactionError, match="results_count must be an integer"):
        await trace_logger.log_mapping_session_end(session_id, results_count=as_any("7"))

    row = await fetch(MappingSession, session_id)
    assert (row.status, row.results_count) == ("running", 0)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"source_count": "ten"}, "source_count must be an integer"),
        ({"target_count": 2.5}, "target_count must be an integer"),
        ({"duration_ms": "slow"}, "duration_ms must be a number"),
    ],
)
async def test_path_execution_with_malformed_numbers_writes_nothing(
    kwargs: dict[str, Any],
    message: str,
    trace_logger: ExecutionTraceLogger,
    row_count: RowCount,
) -> None:
    session_id = await trace_logger.log_mapping_session_start("bad-path-numbers")

    with pytest.raises(CacheTransactionError, match=message):
        await trace_logger.log_path_execution(session_id, 1, "path", "success", **kwargs)

    assert await row_count(MappingPathExecutionLog) == 0


@pytest.mark.parametrize("value", ["fast", None, float("inf"), True])
async def test_metric_with_a_non_numeric_value_writes_nothing(
    value: object, trace_logger: ExecutionTraceLogger, row_count: RowCount
) -> None:
    session_id = await trace_logger.log_mapping_session_start("bad-metric")

    with pytest.raises(CacheTransactionError, match="metric_value must be a"):
        await trace_logger.log_execution_metric(session_id, "latency", as_any(value))

    assert await row_count(ExecutionMetric) == 0


# --- Unique constraint (entity_mappings: source/target pair) -------------------------------------


async def test_duplicate_of_a_stored_mapping_rolls_back_the_whole_batch(
    trace_logger: ExecutionTraceLogger,
    async_db_session: AsyncSession,
    fetch: Fetch,
    row_count: RowCount,
) -> None:
    (stored,) = await trace_logger.log_entity_mappings(
        [_mapping("P12345", "ENSG00000139618", provenance=[{"source_name": "first run"}])]
    )
    batch = [
        _mapping("Q67890", "ENSG00000141510", provenance=[{"source_name": "second run"}]),
        _mapping("P12345", "ENSG00000139618", provenance=[{"source_name": "second run"}]),
    ]

    with pytest.raises(CacheTransactionError, match="log_entity_mappings failed") as raised:
        await trace_logger.log_entity_mappings(batch)

    assert isinstance(raised.value.__cause__, IntegrityError)
    ids = await async_db_session.scalars(select(EntityMapping.id))
    assert list(ids) == [stored]
    prov = await async_db_session.scalars(select(EntityMappingProvenance.source_name))
    assert list(prov) == ["first run"]
    assert (await fetch(EntityMapping, stored)).source_id == "P12345"


async def test_duplicate_within_one_batch_writes_nothing(
    trace_logger: ExecutionTraceLogger, row_count: RowCount
) -> None:
    batch = [_mapping("P1", "G1"), _mapping("P2", "G2"), _mapping("P1", "G1")]

    with pytest.raises(CacheTransactionError) as raised:
        await trace_logger.log_entity_mappings(batch)

    assert isinstance(raised.value.__cause__, IntegrityError)
    assert await _nothing_written(row_count)


# --- NOT NULL constraints -----------------------------------------------------------------------


async def test_path_execution_without_a_path_name_is_rejected_by_the_database(
    trace_logger: ExecutionTraceLogger, fetch: Fetch, row_count: RowCount
) -> None:
    session_id = await trace_logger.log_mapping_session_start("not-null")

    with pytest.raises(CacheTransactionError, match="log_path_execution failed") as raised:
        await trace_logger.log_path_execution(session_id, 1, as_any(None), "success")

    assert isinstance(raised.value.__cause__, IntegrityError)
    assert raised.value.details == {"operation": "log_path_execution"}
    assert await row_count(MappingPathExecutionLog) == 0
    session = await fetch(MappingSession, session_id)
    assert session is not None and session.status == "running"


async def test_null_target_in_a_batch_writes_nothing(
    trace_logger: ExecutionTraceLogger, row_count: RowCount
) -> None:
    batch = [
        _mapping("P1", "G1", provenance=[{"source_name": "a"}]),
        _mapping("P2", None, provenance=[{"source_name": "b"}]),
    ]

    with pytest.raises(CacheTransactionError) as raised:
        await trace_logger.log_entity_mappings(batch)

    assert isinstance(raised.value.__cause__, IntegrityError)
    assert await _nothing_written(row_count)


async def test_session_start_without_an_identifier_is_rejected_by_the_database(
    trace_logger: ExecutionTraceLogger, row_count: RowCount
) -> None:
    with pytest.raises(CacheTransactionError) as raised:
        await trace_logger.log_mapping_session_start(as_any(None))

    assert isinstance(raised.value.__cause__, IntegrityError)
    assert await row_count(MappingSession) == 0


# --- Foreign keys (skipped where the sandbox does not enforce them) ------------------------------


@pytest.mark.usefixtures("foreign_keys_enforced")
async def test_path_execution_for_a_missing_session_is_rejected(
    trace_logger: ExecutionTraceLogger, row_count: RowCount
) -> None:
    with pytest.raises(CacheTransactionError) as raised:
        await trace_logger.log_path_execution(MISSING_SESSION_ID, 1, "path", "success")

    assert isinstance(raised.value.__cause__, IntegrityError)
    assert await row_count(MappingPathExecutionLog) == 0


@pytest.mark.usefixtures("foreign_keys_enforced")
async def test_metric_for_a_missing_session_is_rejected(
    trace_logger: ExecutionTraceLogger, row_count: RowCount
) -> None:
    with pytest.raises(CacheTransactionError) as raised:
        await trace_logger.log_execution_metric(MISSING_SESSION_ID, "mapped", 1)

    assert isinstance(raised.value.__cause__, IntegrityError)
    assert await row_count(ExecutionMetric) == 0


@pytest.mark.usefixtures("foreign_keys_enforced")
async def test_provenance_for_a_missing_session_leaves_no_half_written_mappings(
    trace_logger: ExecutionTraceLogger, row_count: RowCount
) -> None:
    """The mapping rows are inserted first; the provenance insert then fails on its foreign key:
    the mapping rows of the same transaction must be gone too."""
    session_id = await trace_logger.log_mapping_session_start("kept")
    batch = [
        _mapping("P1", "G1", provenance=[{"source_name": "a"}]),
        _mapping("P2", "G2", provenance=[{"source_name": "b"}]),
    ]

    with pytest.raises(CacheTransactionError) as raised:
        await trace_logger.log_entity_mappings(batch, session_id=MISSING_SESSION_ID)

    assert isinstance(raised.value.__cause__, IntegrityError)
    assert await _nothing_written(row_count)
    assert await row_count(MappingSession, MappingSession.id == session_id) == 1
