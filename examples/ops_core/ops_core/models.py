"""ORM models."""

import enum
import uuid
from datetime import datetime, timezone

from sqlalchemy import DateTime, Index, String, Text
from sqlalchemy.dialects import mysql
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

# MySQL/MariaDB DATETIME drops fractional seconds unless asked for them.
Timestamp = DateTime().with_variant(mysql.DATETIME(fsp=6), "mysql", "mariadb")


def utcnow() -> datetime:
    """Current UTC time as a naive datetime (stored timezone-naive on every backend)."""
    return datetime.now(timezone.utc).replace(tzinfo=None)


def new_task_id() -> str:
    return str(uuid.uuid4())


class TaskType(str, enum.Enum):
    AGENT = "agent"
    NON_AGENT = "non_agent"


class TaskStatus(str, enum.Enum):
    PENDING = "pending"
    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"


class Base(DeclarativeBase):
    pass


class Task(Base):
    __tablename__ = "tasks"
    __table_args__ = (Index("ix_tasks_status_created_at", "status", "created_at"),)

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_task_id)
    task_type: Mapped[str] = mapped_column(String(16))
    status: Mapped[str] = mapped_column(String(16), default=TaskStatus.PENDING.value)
    # JSON document, stored as text so that every backend treats it the same way.
    input_json: Mapped[str] = mapped_column("input", Text, default="{}")
    result: Mapped[str | None] = mapped_column(Text, default=None)
    agent_name: Mapped[str | None] = mapped_column(String(100), default=None)
    created_at: Mapped[datetime] = mapped_column(Timestamp, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(Timestamp, default=utcnow, onupdate=utcnow)

    def __repr__(self) -> str:
        return f"Task(id={self.id!r}, task_type={self.task_type!r}, status={self.status!r})"
