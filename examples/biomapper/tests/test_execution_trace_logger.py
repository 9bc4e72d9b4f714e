"""ExecutionTraceLogger against a real database: what each ``log_*`` call writes and returns.

The cases follow the test plan of the original (mock-based) suite, but check the rows the service
actually wrote, read back through ``async_db_session``, instead of the calls made on mocks.
"""

from __future__ import annotations

import json
from datetime import datetime

import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import selectinload

from biomapper.core.exceptions import CacheTransactionError
from biomapper.core.services.execution_trace_logger import ExecutionTraceLogger
from biomapper.db.cache_models import (
    EntityMapping,
    EntityMappingProvenance,
    ExecutionMetric,
    MappingPathExecutionLog,
    MappingSession,
)
from biomapper.db.session import SessionManager, async_cache_session
from tests.helpers import Fetch, RecordingSessionManager, RowCount, as_any, recent

START = datetime(2025, 6, 24, 0, 22, 9)
END = datetime(2025, 6, 24, 0, 25, 41)


def _mapping(source: str, target: str, **extra: object) -> dict[str, object]:
    data: dict[str, object] = {
        "source_id": source,
        "source_type": "UNIPROTKB_AC",
        "target_id": target,
        "target_type": "ENSEMBL_GENE",
    }
    data.update(extra)
    return data


# --- 1. __init__ -------------------------------------------------------------------------------


def test_init_keeps_the_session_manager(session_manager: SessionManager) -> None:
    logger = ExecutionTraceLogger(session_manager)

    assert logger.session_manager is session_manager


def test_default_session_manager_uses_the_app_cache_sessionmaker() -> None:
    assert SessionManager().async_cache_session is async_cache_session


async def test_writes_go_through_the_given_session_manager(
    recording_manager: RecordingSessionManager, fetch: Fetch
) -> None:
    logger = ExecutionTraceLogger(recording_manager)

    session_id = await logger.log_mapping_session_start("run-through-manager")

    assert len(recording_manager.sessions) == 1
    assert isinstance(recording_manager.sessions[0], AsyncSession)
    row = await fetch(MappingSession, session_id)
    assert row is not None and row.identifier == "run-through-manager"


# --- 2. log_mapping_session_start ---------------------------------------------------------------


async def test_session_start_writes_a_running_session_and_returns_its_id(
    trace_logger: ExecutionTraceLogger, fetch: Fetch, row_count: RowCount
) -> None:
    parameters = {"source_endpoint": "UKBB_PROTEIN", "target_endpoint": "ARIVALE", "limit": 10}

    session_id = await trace_logger.log_mapping_session_start(
        "ukbb-to-arivale", parameters=parameters, start_time=START
    )

    assert isinstance(session_id, int)
    assert await row_count(MappingSession) == 1
    row = await fetch(MappingSession, session_id)
    assert row is not None
    assert row.id == session_id
    assert row.identifier == "ukbb-to-arivale"
    assert row.status == "running"
    assert row.start_time == START
    assert row.end_time is None
    assert row.results_count == 0
    assert row.parameters is not None
    assert json.loads(row.parameters) == parameters


async def test_session_start_defaults(trace_logger: ExecutionTraceLogger, fetch: Fetch) -> None:
    session_id = await trace_logger.log_mapping_session_start("defaults")

    row = await fetch(MappingSession, session_id)
    assert row is not None
    assert row.parameters is None
    assert recent(row.start_time)


async def test_each_session_start_creates_its_own_row(
    trace_logger: ExecutionTraceLogger, async_db_session: AsyncSession
) -> None:
    first = await trace_logger.log_mapping_session_start("first")
    second = await trace_logger.log_mapping_session_start("second")

    assert first != second
    rows = await async_db_session.execute(select(MappingSession.id, MappingSession.identifier))
    assert sorted(rows.all()) == sorted([(first, "first"), (second, "second")])


# --- 3. log_mapping_session_end -----------------------------------------------------------------


async def test_session_end_updates_that_session_only(
    trace_logger: ExecutionTraceLogger, fetch: Fetch
) -> None:
    ended = await trace_logger.log_mapping_session_start("ended", start_time=START)
    other = await trace_logger.log_mapping_session_start("still-running", start_time=START)

    await trace_logger.log_mapping_session_end(
        ended, status="completed", results_count=42, end_time=END
    )

    row = await fetch(MappingSession, ended)
    assert row is not None
    assert (row.status, row.end_time, row.results_count) == ("completed", END, 42)
    assert row.start_time == START
    untouched = await fetch(MappingSession, other)
    assert untouched is not None
    assert (untouched.status, untouched.end_time, untouched.results_count) == ("running", None, 0)


async def test_session_end_without_count_keeps_the_count_and_stamps_now(
    trace_logger: ExecutionTraceLogger, fetch: Fetch
) -> None:
    session_id = await trace_logger.log_mapping_session_start("failing-run")

    await trace_logger.log_mapping_session_end(session_id, status="failed")

    row = await fetch(MappingSession, session_id)
    assert row is not None
    assert row.status == "failed"
    assert row.results_count == 0
    assert recent(row.end_time)


async def test_session_end_of_an_unknown_session_raises_and_creates_nothing(
    trace_logger: ExecutionTraceLogger, row_count: RowCount
) -> None:
    with pytest.raises(CacheTransactionError, match="not found"):
        await trace_logger.log_mapping_session_end(987654, status="completed", results_count=1)

    assert await row_count(MappingSession) == 0


# --- 4. log_path_execution ----------------------------------------------------------------------


async def test_log_path_execution_writes_a_row_linked_to_its_session(
    trace_logger: ExecutionTraceLogger, fetch: Fetch, row_count: RowCount
) -> None:
    session_id = await trace_logger.log_mapping_session_start("paths")

    log_id = await trace_logger.log_path_execution(
        session_id,
        path_id=7,
        path_name="UniProt_to_Ensembl_via_API",
        status="success",
        duration_ms=153.25,
        source_count=10,
        target_count=8,
    )

    assert isinstance(log_id, int)
    assert await row_count(MappingPathExecutionLog) == 1
    row = await fetch(MappingPathExecutionLog, log_id)
    assert row is not None
    assert row.mapping_session_id == session_id
    assert (row.path_id, row.path_name, row.status) == (7, "UniProt_to_Ensembl_via_API", "success")
    assert row.duration_ms == pytest.approx(153.25)
    assert (row.source_count, row.target_count) == (10, 8)
    assert row.error_message is None
    assert recent(row.created_at)

    session = await fetch(MappingSession, session_id, selectinload(MappingSession.path_logs))
    assert [log.id for log in session.path_logs] == [log_id]


async def test_log_path_execution_records_failures(
    trace_logger: ExecutionTraceLogger, fetch: Fetch
) -> None:
    session_id = await trace_logger.log_mapping_session_start("failing-path")

    log_id = await trace_logger.log_path_execution(
        session_id,
        path_id=3,
        path_name="Gene_to_UniProt_via_HGNC",
        status="failed",
        duration_ms=12.5,
        source_count=4,
        error_message="HGNC API timed out",
    )

    row = await fetch(MappingPathExecutionLog, log_id)
    assert row is not None
    assert (row.status, row.error_message) == ("failed", "HGNC API timed out")
    assert (row.source_count, row.target_count) == (4, 0)


async def test_path_logs_of_a_session_keep_their_order(
    trace_logger: ExecutionTraceLogger, fetch: Fetch
) -> None:
    session_id = await trace_logger.log_mapping_session_start("many-paths")
    ids = [
        await trace_logger.log_path_execution(session_id, i, f"path-{i}", "success")
        for i in (3, 1, 2)
    ]

    session = await fetch(MappingSession, session_id, selectinload(MappingSession.path_logs))
    assert [log.id for log in session.path_logs] == ids
    assert [log.path_id for log in session.path_logs] == [3, 1, 2]


# --- 5. log_entity_mappings ---------------------------------------------------------------------


async def test_log_entity_mappings_writes_rows_and_returns_ids_in_order(
    trace_logger: ExecutionTraceLogger, fetch: Fetch, row_count: RowCount
) -> None:
    last_updated = datetime(2025, 6, 1, 12, 0, 0)
    mappings = [
        _mapping("P12345", "ENSG00000139618", confidence=0.95, mapping_source="UniProt API"),
        _mapping("Q67890", "ENSG00000141510", confidence=0.5, last_updated=last_updated),
        _mapping("P12345", "ENSG00000012048"),
    ]

    ids = await trace_logger.log_entity_mappings(mappings)

    assert len(ids) == 3 and len(set(ids)) == 3
    assert await row_count(EntityMapping) == 3
    rows = [await fetch(EntityMapping, i) for i in ids]
    assert [(r.source_id, r.target_id) for r in rows] == [
        ("P12345", "ENSG00000139618"),
        ("Q67890", "ENSG00000141510"),
        ("P12345", "ENSG00000012048"),
    ]
    assert {(r.source_type, r.target_type) for r in rows} == {("UNIPROTKB_AC", "ENSEMBL_GENE")}
    assert rows[0].confidence == pytest.approx(0.95)
    assert rows[0].mapping_source == "UniProt API"
    assert rows[1].confidence == pytest.approx(0.5)
    assert rows[1].last_updated == last_updated
    assert rows[2].confidence is None and rows[2].mapping_source is None
    assert recent(rows[2].last_updated)


async def test_provenance_rows_are_linked_to_their_mapping_and_session(
    trace_logger: ExecutionTraceLogger,
    async_db_session: AsyncSession,
    fetch: Fetch,
    row_count: RowCount,
) -> None:
    session_id = await trace_logger.log_mapping_session_start("with-provenance")
    mappings = [
        _mapping(
            "P12345",
            "ENSG00000139618",
            confidence=0.9,
            provenance=[
                {
                    "source_name": "UniProt API",
                    "method": "idmapping",
                    "path_id": 7,
                    "path_name": "UniProt_to_Ensembl_via_API",
                    "details": {"hop_count": 2, "release": "2025_02"},
                },
                {"source_name": "Ensembl xref"},
            ],
        ),
        _mapping("Q67890", "ENSG00000141510", provenance=[{"source_name": "UniProt API"}]),
    ]

    first, second = await trace_logger.log_entity_mappings(mappings, session_id=session_id)

    assert await row_count(EntityMappingProvenance) == 3
    mapping = await fetch(EntityMapping, first)
    assert [p.source_name for p in mapping.provenance] == ["UniProt API", "Ensembl xref"]
    detailed, bare = mapping.provenance
    assert detailed.entity_mapping_id == first
    assert detailed.mapping_session_id == session_id
    assert (detailed.method, detailed.path_id) == ("idmapping", 7)
    assert detailed.path_name == "UniProt_to_Ensembl_via_API"
    assert detailed.details is not None
    assert json.loads(detailed.details) == {"hop_count": 2, "release": "2025_02"}
    assert (bare.method, bare.path_id, bare.path_name, bare.details) == (None, None, None, None)
    assert bare.mapping_session_id == session_id

    linked = await async_db_session.scalars(
        select(EntityMappingProvenance.entity_mapping_id).where(
            EntityMappingProvenance.source_name == "UniProt API"
        )
    )
    assert sorted(linked) == sorted([first, second])


async def test_mappings_without_provenance_or_session(
    trace_logger: ExecutionTraceLogger, fetch: Fetch, row_count: RowCount
) -> None:
    (with_prov,) = await trace_logger.log_entity_mappings(
        [_mapping("P1", "G1", provenance=[{"source_name": "manual curation"}])]
    )
    (without,) = await trace_logger.log_entity_mappings([_mapping("P2", "G2")])

    assert (await fetch(EntityMapping, without)).provenance == []
    prov = (await fetch(EntityMapping, with_prov)).provenance
    assert len(prov) == 1 and prov[0].mapping_session_id is None
    assert await row_count(EntityMappingProvenance) == 1


async def test_empty_mapping_list_writes_nothing(
    recording_manager: RecordingSessionManager, row_count: RowCount
) -> None:
    logger = ExecutionTraceLogger(recording_manager)

    assert await logger.log_entity_mappings([]) == []

    assert recording_manager.sessions == []
    assert await row_count(EntityMapping) == 0


async def test_deleting_a_mapping_deletes_its_provenance(
    trace_logger: ExecutionTraceLogger,
    async_db_session: AsyncSession,
    fetch: Fetch,
    row_count: RowCount,
) -> None:
    keep, drop = await trace_logger.log_entity_mappings(
        [
            _mapping("P1", "G1", provenance=[{"source_name": "a"}]),
            _mapping("P2", "G2", provenance=[{"source_name": "b"}, {"source_name": "c"}]),
        ]
    )

    await async_db_session.delete(await fetch(EntityMapping, drop))
    await async_db_session.flush()

    assert await row_count(EntityMapping) == 1
    remaining = await async_db_session.scalars(select(EntityMappingProvenance.entity_mapping_id))
    assert list(remaining) == [keep]


# --- 6. log_execution_metric --------------------------------------------------------------------


async def test_log_execution_metric_writes_a_row_and_returns_its_id(
    trace_logger: ExecutionTraceLogger, fetch: Fetch, row_count: RowCount
) -> None:
    session_id = await trace_logger.log_mapping_session_start("metrics")
    taken_at = datetime(2025, 6, 24, 0, 23, 0)

    metric_id = await trace_logger.log_execution_metric(
        session_id, "api_latency_ms", 123.456, metric_type="timer", timestamp=taken_at
    )

    assert isinstance(metric_id, int)
    assert await row_count(ExecutionMetric) == 1
    row = await fetch(ExecutionMetric, metric_id)
    assert row is not None
    assert row.mapping_session_id == session_id
    assert row.metric_name == "api_latency_ms"
    assert row.metric_value == pytest.approx(123.456)
    assert row.metric_type == "timer"
    assert row.timestamp == taken_at


async def test_metrics_belong_to_their_session(
    trace_logger: ExecutionTraceLogger, fetch: Fetch
) -> None:
    session_id = await trace_logger.log_mapping_session_start("metrics-a")
    other_id = await trace_logger.log_mapping_session_start("metrics-b")
    ids = [
        await trace_logger.log_execution_metric(session_id, "mapped", 8),
        await trace_logger.log_execution_metric(session_id, "unmapped", 2, metric_type="counter"),
        await trace_logger.log_execution_metric(other_id, "mapped", 1),
    ]

    session = await fetch(MappingSession, session_id, selectinload(MappingSession.metrics))
    assert [m.id for m in session.metrics] == ids[:2]
    assert [(m.metric_name, m.metric_value, m.metric_type) for m in session.metrics] == [
        ("mapped", 8.0, "gauge"),
        ("unmapped", 2.0, "counter"),
    ]
    assert all(recent(m.timestamp) for m in session.metrics)
    other = await fetch(MappingSession, other_id, selectinload(MappingSession.metrics))
    assert [m.id for m in other.metrics] == ids[2:]


# --- 7. Database interaction --------------------------------------------------------------------


async def test_each_call_runs_in_its_own_committed_session(
    recording_manager: RecordingSessionManager, row_count: RowCount
) -> None:
    logger = ExecutionTraceLogger(recording_manager)

    session_id = await logger.log_mapping_session_start("own-sessions")
    await logger.log_path_execution(session_id, 1, "path", "success")
    await logger.log_entity_mappings([_mapping("P1", "G1")], session_id=session_id)
    await logger.log_execution_metric(session_id, "mapped", 1)
    await logger.log_mapping_session_end(session_id, status="completed", results_count=1)

    sessions = recording_manager.sessions
    assert len(sessions) == 5
    assert len({id(s) for s in sessions}) == 5
    for index, session in enumerate(sessions):
        assert recording_manager.events_of(index) == ["commit"], index
        assert not session.in_transaction()
    assert await row_count(MappingSession, MappingSession.status == "completed") == 1


async def test_a_failed_call_rolls_back_its_own_session_only(
    recording_manager: RecordingSessionManager, fetch: Fetch, row_count: RowCount
) -> None:
    logger = ExecutionTraceLogger(recording_manager)
    session_id = await logger.log_mapping_session_start("partly-failing")

    with pytest.raises(CacheTransactionError):
        await logger.log_path_execution(session_id, 1, as_any(None), "success")
    log_id = await logger.log_path_execution(session_id, 2, "second-path", "success")

    assert recording_manager.events_of(0) == ["commit"]
    assert recording_manager.rolled_back(1)
    assert recording_manager.events_of(2) == ["commit"]
    assert not recording_manager.sessions[1].in_transaction()
    assert await fetch(MappingSession, session_id) is not None
    assert await row_count(MappingPathExecutionLog) == 1
    row = await fetch(MappingPathExecutionLog, log_id)
    assert (row.path_id, row.path_name) == (2, "second-path")
