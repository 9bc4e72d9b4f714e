"""MappingExecutor._cache_results against a real database (no fault injection needed)."""

from __future__ import annotations

import json
from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from biomapper.core.exceptions import CacheStorageError
from biomapper.core.mapping_executor import MappingExecutor
from biomapper.core.mapping_path import MappingPath
from biomapper.core.services.execution_trace_logger import ExecutionTraceLogger
from biomapper.db.cache_models import EntityMapping, EntityMappingProvenance, MappingSession
from biomapper.db.session import SessionManager
from tests.helpers import RecordingSessionManager, RowCount, recent

RESULTS: dict[str, dict[str, Any]] = {
    "P12345": {
        "source_identifier": "P12345",
        "target_identifiers": ["ENSG00000139618"],
        "status": "success",
        "confidence_score": 0.92,
        "hop_count": 2,
        "mapping_direction": "forward",
    },
    "Q67890": {
        "source_identifier": "Q67890",
        "target_identifiers": ["ENSG00000141510", "ENSG00000012048"],
        "status": "success",
        "confidence_score": 0.75,
    },
    "O00000": {"source_identifier": "O00000", "target_identifiers": [], "status": "success"},
    "A11111": {"source_identifier": "A11111", "target_identifiers": None, "status": "no_mapping"},
    "B22222": {"target_identifiers": ["ENSG_IGNORED"], "status": "error"},
}


async def _all_mappings(session: AsyncSession) -> list[EntityMapping]:
    rows = await session.scalars(
        select(EntityMapping)
        .order_by(EntityMapping.source_id, EntityMapping.target_id)
        .execution_options(populate_existing=True)
    )
    return list(rows)


def test_executor_uses_the_session_managers_cache_sessionmaker(
    session_manager: SessionManager,
) -> None:
    executor = MappingExecutor(session_manager)

    assert executor.session_manager is session_manager
    assert executor.async_cache_session is session_manager.async_cache_session


async def test_cache_results_stores_successful_mappings_with_provenance(
    executor: MappingExecutor,
    trace_logger: ExecutionTraceLogger,
    uniprot_to_ensembl: MappingPath,
    async_db_session: AsyncSession,
    row_count: RowCount,
) -> None:
    session_id = await trace_logger.log_mapping_session_start("cache-run")

    stored = await executor._cache_results(RESULTS, uniprot_to_ensembl, session_id)

    assert stored == 3
    assert await row_count(EntityMapping) == 3
    assert await row_count(EntityMappingProvenance) == 3
    mappings = await _all_mappings(async_db_session)
    assert [(m.source_id, m.target_id) for m in mappings] == [
        ("P12345", "ENSG00000139618"),
        ("Q67890", "ENSG00000012048"),
        ("Q67890", "ENSG00000141510"),
    ]
    assert [m.confidence for m in mappings] == pytest.approx([0.92, 0.75, 0.75])
    for mapping in mappings:
        assert (mapping.source_type, mapping.target_type) == ("UNIPROTKB_AC", "ENSEMBL_GENE")
        assert mapping.mapping_source == "UniProt_to_Ensembl_via_API"
        assert recent(mapping.last_updated)
        (prov,) = mapping.provenance
        assert prov.entity_mapping_id == mapping.id
        assert prov.mapping_session_id == session_id
        assert (prov.path_id, prov.path_name) == (7, "UniProt_to_Ensembl_via_API")
        assert (prov.source_name, prov.method) == ("UniProt_to_Ensembl_via_API", "mapping_path")
    details = json.loads(mappings[0].provenance[0].details or "")
    assert details == {
        "hop_count": 2,
        "mapping_direction": "forward",
        "steps": ["uniprot_api_lookup", "ensembl_xref"],
    }


async def test_cache_results_without_a_session_id(
    executor: MappingExecutor, uniprot_to_ensembl: MappingPath, async_db_session: AsyncSession
) -> None:
    stored = await executor._cache_results(
        {"P1": {"target_identifiers": ["G1"]}}, uniprot_to_ensembl, None
    )

    assert stored == 1
    (mapping,) = await _all_mappings(async_db_session)
    assert mapping.provenance[0].mapping_session_id is None


async def test_cache_results_derives_confidence_from_hop_count(
    executor: MappingExecutor, async_db_session: AsyncSession
) -> None:
    three_hops = MappingPath(10, "long-path", "GENE_NAME", "CHEBI", steps=("a", "b", "c"))

    await executor._cache_results({"TP53": {"target_identifiers": ["CHEBI:1"]}}, three_hops, None)

    (mapping,) = await _all_mappings(async_db_session)
    assert mapping.confidence == pytest.approx(0.8)


async def test_nothing_to_cache_opens_no_session(
    recording_manager: RecordingSessionManager,
    uniprot_to_ensembl: MappingPath,
    row_count: RowCount,
) -> None:
    executor = MappingExecutor(recording_manager)
    nothing = {key: RESULTS[key] for key in ("O00000", "A11111", "B22222")}

    assert await executor._cache_results(nothing, uniprot_to_ensembl, None) == 0
    assert await executor._cache_results({}, uniprot_to_ensembl, None) == 0

    assert recording_manager.sessions == []
    assert await row_count(EntityMapping) == 0


async def test_caching_again_refreshes_the_mapping_and_adds_provenance(
    executor: MappingExecutor,
    trace_logger: ExecutionTraceLogger,
    uniprot_to_ensembl: MappingPath,
    async_db_session: AsyncSession,
    row_count: RowCount,
) -> None:
    first_run = await trace_logger.log_mapping_session_start("first")
    second_run = await trace_logger.log_mapping_session_start("second")
    await executor._cache_results(
        {"P1": {"target_identifiers": ["G1"], "confidence_score": 0.5}},
        uniprot_to_ensembl,
        first_run,
    )

    stored = await executor._cache_results(
        {"P1": {"target_identifiers": ["G1", "G2"], "confidence_score": 0.9}},
        uniprot_to_ensembl,
        second_run,
    )

    assert stored == 2
    assert await row_count(EntityMapping) == 2
    refreshed, added = await _all_mappings(async_db_session)
    assert refreshed.target_id == "G1"
    assert refreshed.confidence == pytest.approx(0.9)
    assert [p.mapping_session_id for p in refreshed.provenance] == [first_run, second_run]
    assert [p.mapping_session_id for p in added.provenance] == [second_run]


async def test_cache_results_commits_once_in_one_session(
    recording_manager: RecordingSessionManager, uniprot_to_ensembl: MappingPath
) -> None:
    executor = MappingExecutor(recording_manager)

    await executor._cache_results(RESULTS, uniprot_to_ensembl, None)

    assert len(recording_manager.sessions) == 1
    assert recording_manager.events_of(0) == ["commit"]
    assert not recording_manager.sessions[0].in_transaction()


@pytest.mark.usefixtures("foreign_keys_enforced")
async def test_commit_rejected_by_the_database_raises_cache_storage_error(
    recording_manager: RecordingSessionManager,
    trace_logger: ExecutionTraceLogger,
    uniprot_to_ensembl: MappingPath,
    row_count: RowCount,
) -> None:
    """The seed-000 scenario with a real failure: the commit's flush violates a foreign key
    (provenance -> missing mapping session). CacheStorageError, chained, and nothing stored."""
    kept = await trace_logger.log_mapping_session_start("kept")
    executor = MappingExecutor(recording_manager)

    with pytest.raises(CacheStorageError, match="Failed to cache 3 mapping") as raised:
        await executor._cache_results(RESULTS, uniprot_to_ensembl, 987_654)

    assert isinstance(raised.value.__cause__, IntegrityError)
    assert raised.value.details == {"path_id": 7, "session_id": 987_654}
    assert recording_manager.rolled_back(0)
    assert await row_count(EntityMapping) == 0
    assert await row_count(EntityMappingProvenance) == 0
    assert await row_count(MappingSession, MappingSession.id == kept) == 1
