"""Agent governance: what an agent may do on its own, and how it earns more autonomy."""

from __future__ import annotations

import logging
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

# Import through the model registry so that every name-based relationship
# (UsageEvent.subscription -> "Subscription") can be resolved.
from atom.models import AgentRegistry, AgentStatus, Subscription, UsageEvent

logger = logging.getLogger(__name__)

#: Highest action complexity each maturity level may perform without a human (None = no limit).
MAX_COMPLEXITY: dict[AgentStatus, int | None] = {
    AgentStatus.STUDENT: 1,
    AgentStatus.INTERN: 2,
    AgentStatus.SUPERVISED: 3,
    AgentStatus.AUTONOMOUS: None,
}

#: Confidence needed to reach each level, highest first.
PROMOTION_THRESHOLDS: list[tuple[float, AgentStatus]] = [
    (0.9, AgentStatus.AUTONOMOUS),
    (0.7, AgentStatus.SUPERVISED),
    (0.5, AgentStatus.INTERN),
]

SUCCESS_DELTA = 0.05
FAILURE_DELTA = -0.1
USAGE_EVENT_TYPE = "agent_execution"


class AgentNotFoundError(LookupError):
    pass


def status_for_confidence(score: float) -> AgentStatus:
    for threshold, status in PROMOTION_THRESHOLDS:
        if score >= threshold:
            return status
    return AgentStatus.STUDENT


class AgentGovernanceService:
    def __init__(self, db: Session) -> None:
        self.db = db

    def get_agent(self, agent_id: str, *, for_update: bool = False) -> AgentRegistry:
        stmt = select(AgentRegistry).where(AgentRegistry.id == agent_id)
        if for_update:
            stmt = stmt.with_for_update()
        agent = self.db.scalars(stmt).one_or_none()
        if agent is None:
            raise AgentNotFoundError(agent_id)
        return agent

    def can_perform_action(self, agent_id: str, action_complexity: int) -> dict[str, Any]:
        if action_complexity < 1:
            raise ValueError(f"action_complexity must be >= 1, got {action_complexity}")
        try:
            agent = self.get_agent(agent_id)
        except AgentNotFoundError:
            return {
                "allowed": False,
                "agent_id": agent_id,
                "agent_status": None,
                "action_complexity": action_complexity,
                "max_complexity": 0,
                "reason": "agent is not registered",
            }
        status = AgentStatus(agent.status)
        limit = MAX_COMPLEXITY[status]
        allowed = limit is None or action_complexity <= limit
        if allowed:
            reason = f"{status.value} agents may perform this action"
        else:
            reason = (
                f"{status.value} agents are limited to complexity {limit}; "
                f"complexity {action_complexity} requires approval"
            )
        return {
            "allowed": allowed,
            "agent_id": agent_id,
            "agent_status": status.value,
            "action_complexity": action_complexity,
            "max_complexity": limit,
            "reason": reason,
        }

    def record_outcome(self, agent_id: str, success: bool) -> dict[str, Any]:
        """Adjust the agent's confidence after an execution and bill the usage.

        Changes are flushed, not committed: the caller owns the unit of work.
        """
        agent = self.get_agent(agent_id, for_update=True)
        previous_status = AgentStatus(agent.status)
        previous_score = agent.confidence_score or 0.0

        delta = SUCCESS_DELTA if success else FAILURE_DELTA
        score = round(min(1.0, max(0.0, previous_score + delta)), 4)
        agent.confidence_score = score

        # Promotion only: demotion is a human decision.
        earned = status_for_confidence(score)
        new_status = earned if earned.rank > previous_status.rank else previous_status
        if new_status is not previous_status:
            agent.status = new_status.value
            logger.info("agent %s promoted %s -> %s", agent_id, previous_status, new_status)

        subscription = self.db.scalars(
            select(Subscription)
            .where(Subscription.workspace_id == agent.workspace_id)
            .where(Subscription.status == "active")
            .order_by(Subscription.id.desc())
            .limit(1)
        ).first()
        event = UsageEvent(
            subscription=subscription,
            workspace_id=agent.workspace_id,
            agent_id=agent.id,
            event_type=USAGE_EVENT_TYPE,
            quantity=1,
            success=success,
        )
        self.db.add(event)
        self.db.flush()

        return {
            "agent_id": agent_id,
            "success": success,
            "previous_status": previous_status.value,
            "status": new_status.value,
            "previous_confidence": previous_score,
            "confidence_score": score,
            "promoted": new_status is not previous_status,
            "usage_event_id": event.id,
        }
