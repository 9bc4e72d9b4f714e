"""Core models: the agent registry and the execution log."""

from __future__ import annotations

import enum
from datetime import datetime

from sqlalchemy import Double, ForeignKey, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column, relationship

from atom.core.database import Base, utcnow


class AgentStatus(str, enum.Enum):
    """Maturity level of an agent; governs which actions it may take on its own."""

    STUDENT = "STUDENT"
    INTERN = "INTERN"
    SUPERVISED = "SUPERVISED"
    AUTONOMOUS = "AUTONOMOUS"

    @property
    def rank(self) -> int:
        return list(AgentStatus).index(self)


class AgentRegistry(Base):
    __tablename__ = "agent_registry"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    name: Mapped[str] = mapped_column(String(128))
    workspace_id: Mapped[str] = mapped_column(String(64), default="default", index=True)
    status: Mapped[str] = mapped_column(String(32), default=AgentStatus.STUDENT.value)
    category: Mapped[str] = mapped_column(String(64), default="General")
    module_path: Mapped[str] = mapped_column(String(255))
    class_name: Mapped[str] = mapped_column(String(128))
    confidence_score: Mapped[float] = mapped_column(Double(), default=0.3)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)

    executions: Mapped[list[AgentExecution]] = relationship(
        "AgentExecution", back_populates="agent", order_by="AgentExecution.id"
    )

    def __repr__(self) -> str:
        return f"<AgentRegistry {self.id} {self.status} {self.confidence_score:.2f}>"


class AgentExecution(Base):
    __tablename__ = "agent_executions"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    agent_id: Mapped[str] = mapped_column(ForeignKey("agent_registry.id"), index=True)
    task: Mapped[str] = mapped_column(Text)
    status: Mapped[str] = mapped_column(String(32))
    output: Mapped[str | None] = mapped_column(Text, default=None)
    error: Mapped[str | None] = mapped_column(Text, default=None)
    duration_ms: Mapped[int] = mapped_column(Integer, default=0)
    started_at: Mapped[datetime] = mapped_column(default=utcnow)
    finished_at: Mapped[datetime] = mapped_column(default=utcnow)

    agent: Mapped[AgentRegistry] = relationship("AgentRegistry", back_populates="executions")
