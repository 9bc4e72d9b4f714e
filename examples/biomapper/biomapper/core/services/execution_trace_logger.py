"""Execution trace logging: records mapping sessions, path executions, mappings and metrics.

Every ``log_*`` call runs in its own session and transaction on the cache database: it is either
stored completely or not at all. Database failures and malformed input are reported as
``CacheTransactionError`` (chained to the original error).
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Awaitable, Callable, Mapping, Sequence
from datetime import datetime
from typing import Any, TypeVar

from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncSession

from biomapper.core.exceptions import CacheTransactionError
from biomapper.db.cache_models import (
    EntityMapping,
    EntityMappingProvenance,
    ExecutionMetric,
    MappingPathExecutionLog,
    MappingSession,
    utcnow,
)
from biomapper.db.session import SessionManager

logger = logging.getLogger(__name__)

T = TypeVar("T")

SESSION_RUNNING = "running"
SESSION_END_STATUSES = frozenset({"completed", "failed", "cancelled"})


class ExecutionTraceLogger:
    """Writes execution traces of mapping runs to the cache database."""

    def __init__(self, session_manager: SessionManager) -> None:
        self.session_manager = session_manager

    async def log_mapping_session_start(
        self,
        identifier: str,
        parameters: Mapping[str, Any] | None = None,
        start_time: datetime | None = None,
    ) -> int:
        """Record the start of a mapping run; returns the new mapping session id."""
        parameters_text = _to_json(parameters, "parameters") if parameters is not None else None
        record = MappingSession(
            identifier=identifier,
            status=SESSION_RUNNING,
            start_time=start_time or utcnow(),
            parameters=parameters_text,
            results_count=0,
        )

        async def work(session: AsyncSession) -> int:
            session.add(record)
            await session.flush()
            return record.id

        session_id = await self._in_transaction("log_mapping_session_start", work)
        logger.info("Mapping session %s (%s) started", session_id, identifier)
        return session_id

    async def log_mapping_session_end(
        self,
        session_id: int,
        status: str = "completed",
        results_count: int | None = None,
        end_time: datetime | None = None,
    ) -> None:
        """Record the end of mapping session ``session_id``: status, end time and result count."""
        if status not in SESSION_END_STATUSES:
            raise CacheTransactionError(
                f"Invalid end status {status!r} for mapping session {session_id}",
                details={"session_id": session_id, "allowed": sorted(SESSION_END_STATUSES)},
            )
        count = _to_int(results_count, "results_count") if results_count is not None else None

        async def work(session: AsyncSession) -> None:
            record = await session.get(MappingSession, session_id)
            if record is None:
                raise CacheTransactionError(
                    f"Mapping session {session_id} not found", details={"session_id": session_id}
                )
            record.status = status
            record.end_time = end_time or utcnow()
            if count is not None:
                record.results_count = count

        await self._in_transaction("log_mapping_session_end", work)
        logger.info("Mapping session %s ended: %s", session_id, status)

    async def log_path_execution(
        self,
        session_id: int,
        path_id: int,
        path_name: str,
        status: str,
        duration_ms: float | None = None,
        source_count: int = 0,
        target_count: int = 0,
        error_message: str | None = None,
    ) -> int:
        """Record one mapping path execution of a session; returns the log entry id."""
        record = MappingPathExecutionLog(
            mapping_session_id=session_id,
            path_id=path_id,
            path_name=path_name,
            status=status,
            duration_ms=_to_float(duration_ms, "duration_ms") if duration_ms is not None else None,
            source_count=_to_int(source_count, "source_count"),
            target_count=_to_int(target_count, "target_count"),
            error_message=error_message,
        )

        async def work(session: AsyncSession) -> int:
            session.add(record)
            await session.flush()
            return record.id

        return await self._in_transaction("log_path_execution", work)

    async def log_entity_mappings(
        self,
        mappings: Sequence[Mapping[str, Any]],
        session_id: int | None = None,
    ) -> list[int]:
        """Store entity mappings with their provenance; returns their ids in input order.

        Each mapping needs ``source_id``, ``source_type``, ``target_id`` and ``target_type``;
        ``confidence``, ``mapping_source``, ``last_updated`` and ``provenance`` are optional.
        Each provenance entry needs ``source_name``; ``method``, ``path_id``, ``path_name`` and
        ``details`` (any JSON value) are optional. Provenance rows are linked to ``session_id``.
        All mappings are stored in one transaction.
        """
        records = [_build_entity_mapping(i, data, session_id) for i, data in enumerate(mappings)]
        if not records:
            return []

        async def work(session: AsyncSession) -> list[int]:
            session.add_all(records)
            await session.flush()
            return [record.id for record in records]

        ids = await self._in_transaction("log_entity_mappings", work)
        logger.debug("Logged %d entity mapping(s) for session %s", len(ids), session_id)
        return ids

    async def log_execution_metric(
        self,
        session_id: int,
        metric_name: str,
        metric_value: float,
        metric_type: str = "gauge",
        timestamp: datetime | None = None,
    ) -> int:
        """Record a metric of mapping session ``session_id``; returns the metric id."""
        record = ExecutionMetric(
            mapping_session_id=session_id,
            metric_name=metric_name,
            metric_value=_to_float(metric_value, "metric_value"),
            metric_type=metric_type,
            timestamp=timestamp or utcnow(),
        )

        async def work(session: AsyncSession) -> int:
            session.add(record)
            await session.flush()
            return record.id

        return await self._in_transaction("log_execution_metric", work)

    async def _in_transaction(
        self, operation: str, work: Callable[[AsyncSession], Awaitable[T]]
    ) -> T:
        """Run ``work`` in a new session and transaction; commit on success, else roll back."""
        try:
            async with (
                self.session_manager.get_async_cache_session() as session,
                session.begin(),
            ):
                result = await work(session)
            return result
        except SQLAlchemyError as exc:
            logger.error("%s failed, transaction rolled back: %s", operation, exc)
            raise CacheTransactionError(
                f"{operation} failed: {type(exc).__name__}", details={"operation": operation}
            ) from exc


def _build_entity_mapping(
    index: int, data: Mapping[str, Any], session_id: int | None
) -> EntityMapping:
    try:
        now = utcnow()
        confidence = data.get("confidence")
        return EntityMapping(
            source_id=data["source_id"],
            source_type=data["source_type"],
            target_id=data["target_id"],
            target_type=data["target_type"],
            confidence=_to_float(confidence, "confidence") if confidence is not None else None,
            mapping_source=data.get("mapping_source"),
            last_updated=data.get("last_updated") or now,
            provenance=[
                EntityMappingProvenance(
                    mapping_session_id=session_id,
                    source_name=entry["source_name"],
                    method=entry.get("method"),
                    path_id=entry.get("path_id"),
                    path_name=entry.get("path_name"),
                    details=(
                        _to_json(entry["details"], "details")
                        if entry.get("details") is not None
                        else None
                    ),
                    created_at=now,
                )
                for entry in data.get("provenance") or ()
            ],
        )
    except KeyError as exc:
        raise CacheTransactionError(
            f"Malformed entity mapping #{index}: missing field {exc.args[0]!r}",
            details={"index": index},
        ) from exc
    except (AttributeError, TypeError, CacheTransactionError) as exc:
        raise CacheTransactionError(
            f"Malformed entity mapping #{index}: {exc}", details={"index": index}
        ) from exc


def _to_float(value: Any, name: str) -> float:
    try:
        number = float(value)
    except (TypeError, ValueError) as exc:
        raise CacheTransactionError(f"{name} must be a number, got {value!r}") from exc
    if isinstance(value, bool) or not math.isfinite(number):
        raise CacheTransactionError(f"{name} must be a finite number, got {value!r}")
    return number


def _to_int(value: Any, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise CacheTransactionError(f"{name} must be an integer, got {value!r}")
    return value


def _to_json(value: Any, name: str) -> str:
    try:
        return json.dumps(value, sort_keys=True)
    except (TypeError, ValueError) as exc:
        raise CacheTransactionError(f"{name} is not JSON-serializable: {exc}") from exc
