"""SQLAlchemy models of the mapping cache database.

The cache database records every mapping run (``MappingSession``), each mapping path executed
during a run (``MappingPathExecutionLog``), the resulting entity mappings with their provenance
(``EntityMapping`` / ``EntityMappingProvenance``) and numeric metrics (``ExecutionMetric``).

The schema is portable across SQLite, PostgreSQL and MariaDB: every string has a length,
datetimes are stored timezone-naive in UTC, and floats are double precision.
"""

from __future__ import annotations

from datetime import datetime, timezone

from sqlalchemy import (
    DateTime,
    Double,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship


def utcnow() -> datetime:
    """Current time in UTC, timezone-naive (the convention of the cache database)."""
    return datetime.now(timezone.utc).replace(tzinfo=None)


class Base(DeclarativeBase):
    """Declarative base of the cache database."""


class MappingSession(Base):
    """One mapping run: what was asked, when, and how it ended."""

    __tablename__ = "mapping_sessions"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    identifier: Mapped[str] = mapped_column(String(255), nullable=False, index=True)
    status: Mapped[str] = mapped_column(String(32), nullable=False, default="running")
    start_time: Mapped[datetime] = mapped_column(DateTime, nullable=False, default=utcnow)
    end_time: Mapped[datetime | None] = mapped_column(DateTime, nullable=True)
    parameters: Mapped[str | None] = mapped_column(Text, nullable=True)
    results_count: Mapped[int] = mapped_column(Integer, nullable=False, default=0)

    path_logs: Mapped[list[MappingPathExecutionLog]] = relationship(
        back_populates="mapping_session",
        cascade="all, delete-orphan",
        order_by="MappingPathExecutionLog.id",
    )
    metrics: Mapped[list[ExecutionMetric]] = relationship(
        back_populates="mapping_session",
        cascade="all, delete-orphan",
        order_by="ExecutionMetric.id",
    )

    def __repr__(self) -> str:
        return f"<MappingSession id={self.id} identifier={self.identifier!r} status={self.status}>"


class MappingPathExecutionLog(Base):
    """Execution of one mapping path within a mapping session."""

    __tablename__ = "mapping_path_execution_logs"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    mapping_session_id: Mapped[int] = mapped_column(
        ForeignKey("mapping_sessions.id", ondelete="CASCADE"), nullable=False, index=True
    )
    path_id: Mapped[int] = mapped_column(Integer, nullable=False)
    path_name: Mapped[str] = mapped_column(String(255), nullable=False)
    status: Mapped[str] = mapped_column(String(32), nullable=False)
    duration_ms: Mapped[float | None] = mapped_column(Double, nullable=True)
    source_count: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    target_count: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    error_message: Mapped[str | None] = mapped_column(Text, nullable=True)
    created_at: Mapped[datetime] = mapped_column(DateTime, nullable=False, default=utcnow)

    mapping_session: Mapped[MappingSession] = relationship(back_populates="path_logs")


class EntityMapping(Base):
    """A cached mapping of one source identifier to one target identifier."""

    __tablename__ = "entity_mappings"
    __table_args__ = (
        UniqueConstraint(
            "source_id", "source_type", "target_id", "target_type", name="uq_entity_mapping"
        ),
        Index("ix_entity_mappings_source", "source_type", "source_id"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    source_id: Mapped[str] = mapped_column(String(255), nullable=False)
    source_type: Mapped[str] = mapped_column(String(64), nullable=False)
    target_id: Mapped[str] = mapped_column(String(255), nullable=False)
    target_type: Mapped[str] = mapped_column(String(64), nullable=False)
    confidence: Mapped[float | None] = mapped_column(Double, nullable=True)
    mapping_source: Mapped[str | None] = mapped_column(String(128), nullable=True)
    last_updated: Mapped[datetime] = mapped_column(
        DateTime, nullable=False, default=utcnow, onupdate=utcnow
    )

    provenance: Mapped[list[EntityMappingProvenance]] = relationship(
        back_populates="entity_mapping",
        cascade="all, delete-orphan",
        order_by="EntityMappingProvenance.id",
        lazy="selectin",
    )

    def __repr__(self) -> str:
        source = f"{self.source_type}:{self.source_id}"
        return f"<EntityMapping {source} -> {self.target_type}:{self.target_id}>"


class EntityMappingProvenance(Base):
    """Where an entity mapping came from: which source, method, path and session."""

    __tablename__ = "entity_mapping_provenance"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    entity_mapping_id: Mapped[int] = mapped_column(
        ForeignKey("entity_mappings.id", ondelete="CASCADE"), nullable=False, index=True
    )
    mapping_session_id: Mapped[int | None] = mapped_column(
        ForeignKey("mapping_sessions.id", ondelete="SET NULL"), nullable=True, index=True
    )
    source_name: Mapped[str] = mapped_column(String(128), nullable=False)
    method: Mapped[str | None] = mapped_column(String(128), nullable=True)
    path_id: Mapped[int | None] = mapped_column(Integer, nullable=True)
    path_name: Mapped[str | None] = mapped_column(String(255), nullable=True)
    details: Mapped[str | None] = mapped_column(Text, nullable=True)
    created_at: Mapped[datetime] = mapped_column(DateTime, nullable=False, default=utcnow)

    entity_mapping: Mapped[EntityMapping] = relationship(back_populates="provenance")


class ExecutionMetric(Base):
    """A named numeric measurement taken during a mapping session."""

    __tablename__ = "execution_metrics"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    mapping_session_id: Mapped[int] = mapped_column(
        ForeignKey("mapping_sessions.id", ondelete="CASCADE"), nullable=False, index=True
    )
    metric_name: Mapped[str] = mapped_column(String(128), nullable=False)
    metric_value: Mapped[float] = mapped_column(Double, nullable=False)
    metric_type: Mapped[str] = mapped_column(String(32), nullable=False, default="gauge")
    timestamp: Mapped[datetime] = mapped_column(DateTime, nullable=False, default=utcnow)

    mapping_session: Mapped[MappingSession] = relationship(back_populates="metrics")
