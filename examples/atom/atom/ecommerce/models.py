"""Billing: workspace subscriptions."""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING

from sqlalchemy import Integer, String
from sqlalchemy.orm import Mapped, mapped_column, relationship

from atom.core.database import Base, utcnow

if TYPE_CHECKING:
    from atom.saas.models import UsageEvent


class Subscription(Base):
    __tablename__ = "ecommerce_subscriptions"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    workspace_id: Mapped[str] = mapped_column(String(64), index=True)
    plan: Mapped[str] = mapped_column(String(64), default="starter")
    status: Mapped[str] = mapped_column(String(32), default="active")
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    usage_events: Mapped[list[UsageEvent]] = relationship(
        "UsageEvent", back_populates="subscription", order_by="UsageEvent.id"
    )
