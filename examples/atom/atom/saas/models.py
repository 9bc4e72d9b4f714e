"""SaaS metering: usage events billed against a workspace subscription."""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING

from sqlalchemy import Boolean, ForeignKey, Integer, String
from sqlalchemy.orm import Mapped, mapped_column, relationship

from atom.core.database import Base, utcnow

if TYPE_CHECKING:
    from atom.ecommerce.models import Subscription


class UsageEvent(Base):
    __tablename__ = "saas_usage_events"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    subscription_id: Mapped[int | None] = mapped_column(
        ForeignKey("ecommerce_subscriptions.id"), default=None, index=True
    )
    workspace_id: Mapped[str] = mapped_column(String(64), index=True)
    agent_id: Mapped[str] = mapped_column(String(64), index=True)
    event_type: Mapped[str] = mapped_column(String(64))
    quantity: Mapped[int] = mapped_column(Integer, default=1)
    success: Mapped[bool] = mapped_column(Boolean, default=True)
    recorded_at: Mapped[datetime] = mapped_column(default=utcnow)

    # Resolved by name in the shared registry: atom.ecommerce.models must be imported before the
    # mappers are configured (see atom/models.py).
    subscription: Mapped[Subscription | None] = relationship(
        "Subscription", back_populates="usage_events"
    )
