"""Mapping executor: runs mapping paths and caches their results."""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping, Sequence
from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncSession

from biomapper.core.exceptions import CacheStorageError
from biomapper.core.mapping_path import MappingPath
from biomapper.db.cache_models import EntityMapping, EntityMappingProvenance, utcnow
from biomapper.db.session import SessionManager

logger = logging.getLogger(__name__)

PATH_PROVENANCE_METHOD = "mapping_path"


class MappingExecutor:
    """Executes mapping paths and stores their results in the mapping cache."""

    def __init__(self, session_manager: SessionManager) -> None:
        self.session_manager = session_manager
        self.async_cache_session = session_manager.async_cache_session

    async def _cache_results(
        self,
        results: Mapping[str, Mapping[str, Any]],
        path: MappingPath,
        session_id: int | None,
    ) -> int:
        """Store successful results of ``path`` as entity mappings, in one transaction.

        ``results`` maps each source identifier to its result, e.g.::

            {"P12345": {"target_identifiers": ["ENSG0001"], "confidence_score": 0.9}}

        A mapping already in the cache is refreshed (confidence, source, timestamp) and gets a new
        provenance row; a new one is inserted with its provenance. Results without targets are
        skipped. Returns the number of mappings stored.

        Raises ``CacheStorageError`` (chained to the database error) if the flush or the commit
        fails; the transaction is then rolled back and nothing of the batch is stored.
        """
        pairs = self._target_pairs(results)
        if not pairs:
            logger.debug("No results to cache for path %s", path.name)
            return 0

        async with self.async_cache_session() as cache_session:
            try:
                existing = await self._existing_mappings(cache_session, path, pairs)
                now = utcnow()
                to_store: list[EntityMapping] = []
                for (source_id, target_id), result in pairs.items():
                    mapping = existing.get((source_id, target_id))
                    if mapping is None:
                        mapping = EntityMapping(
                            source_id=source_id,
                            source_type=path.source_type,
                            target_id=target_id,
                            target_type=path.target_type,
                        )
                    mapping.confidence = self._confidence(result, path)
                    mapping.mapping_source = path.name
                    mapping.last_updated = now
                    mapping.provenance.append(
                        EntityMappingProvenance(
                            mapping_session_id=session_id,
                            source_name=path.name,
                            method=PATH_PROVENANCE_METHOD,
                            path_id=path.id,
                            path_name=path.name,
                            details=self._details(result, path),
                            created_at=now,
                        )
                    )
                    to_store.append(mapping)
                cache_session.add_all(to_store)
                await cache_session.commit()
            except SQLAlchemyError as exc:
                await cache_session.rollback()
                logger.error("Caching results of path %s failed: %s", path.name, exc)
                raise CacheStorageError(
                    f"Failed to cache {len(pairs)} mapping(s) of path {path.name!r}",
                    details={"path_id": path.id, "session_id": session_id},
                ) from exc

        logger.info("Cached %d mapping(s) of path %s", len(to_store), path.name)
        return len(to_store)

    @staticmethod
    def _target_pairs(
        results: Mapping[str, Mapping[str, Any]],
    ) -> dict[tuple[str, str], Mapping[str, Any]]:
        """(source id, target id) -> result, for every successful result with targets."""
        pairs: dict[tuple[str, str], Mapping[str, Any]] = {}
        for source_id, result in results.items():
            if result.get("status", "success") != "success":
                continue
            targets: Sequence[str] | None = result.get("target_identifiers")
            for target_id in targets or ():
                if target_id:
                    pairs[(str(source_id), str(target_id))] = result
        return pairs

    @staticmethod
    async def _existing_mappings(
        cache_session: AsyncSession,
        path: MappingPath,
        pairs: Mapping[tuple[str, str], Any],
    ) -> dict[tuple[str, str], EntityMapping]:
        source_ids = sorted({source_id for source_id, _ in pairs})
        rows = await cache_session.scalars(
            select(EntityMapping).where(
                EntityMapping.source_type == path.source_type,
                EntityMapping.target_type == path.target_type,
                EntityMapping.source_id.in_(source_ids),
            )
        )
        return {(m.source_id, m.target_id): m for m in rows if (m.source_id, m.target_id) in pairs}

    @staticmethod
    def _confidence(result: Mapping[str, Any], path: MappingPath) -> float:
        score = result.get("confidence_score")
        if score is not None:
            return float(score)
        # Without an explicit score, every extra hop lowers the confidence a little.
        return max(0.1, 1.0 - 0.1 * max(0, path.hop_count - 1))

    @staticmethod
    def _details(result: Mapping[str, Any], path: MappingPath) -> str:
        details = {
            "hop_count": result.get("hop_count", path.hop_count),
            "mapping_direction": result.get("mapping_direction", "forward"),
            "steps": list(path.steps),
        }
        return json.dumps(details, sort_keys=True)
