"""AgentGovernanceService against the sandboxed database (sync tests, seeded with db_session)."""

from __future__ import annotations

import pytest
from atom.core.agent_governance_service import AgentGovernanceService
from atom.core.database import SessionLocal
from atom.models import AgentRegistry, AgentStatus, Subscription, UsageEvent
from sqlalchemy import func, select

ST, IN, SV, AU = (
    AgentStatus.STUDENT,
    AgentStatus.INTERN,
    AgentStatus.SUPERVISED,
    AgentStatus.AUTONOMOUS,
)


def make_agent(
    db, status: AgentStatus = ST, score: float = 0.3, *, agent_id: str = "agent-1", ws: str = "acme"
) -> AgentRegistry:
    agent = AgentRegistry(
        id=agent_id,
        name=f"Agent {agent_id}",
        workspace_id=ws,
        status=status.value,
        category="Operations",
        module_path="atom.agents.ops",
        class_name="OpsAgent",
        confidence_score=score,
    )
    db.add(agent)
    db.flush()
    return agent


def make_subscription(db, ws: str = "acme", status: str = "active") -> Subscription:
    sub = Subscription(workspace_id=ws, plan="team", status=status)
    db.add(sub)
    db.flush()
    return sub


GATING = [
    (ST, 1, True),
    (ST, 2, False),
    (ST, 3, False),
    (ST, 4, False),
    (IN, 1, True),
    (IN, 2, True),
    (IN, 3, False),
    (IN, 4, False),
    (SV, 1, True),
    (SV, 2, True),
    (SV, 3, True),
    (SV, 4, False),
    (AU, 1, True),
    (AU, 2, True),
    (AU, 3, True),
    (AU, 4, True),
    (AU, 10, True),
]


@pytest.mark.parametrize(("status", "complexity", "allowed"), GATING)
def test_governance_gating(db_session, status, complexity, allowed):
    make_agent(db_session, status)

    decision = AgentGovernanceService(db_session).can_perform_action("agent-1", complexity)

    assert decision["allowed"] is allowed
    assert decision["agent_status"] == status.value
    assert decision["action_complexity"] == complexity


def test_unregistered_agent_may_do_nothing(db_session):
    decision = AgentGovernanceService(db_session).can_perform_action("ghost", 1)
    assert decision["allowed"] is False
    assert decision["agent_status"] is None


def test_complexity_must_be_positive(db_session):
    make_agent(db_session, AU)
    with pytest.raises(ValueError):
        AgentGovernanceService(db_session).can_perform_action("agent-1", 0)


def test_success_raises_confidence_and_bills_the_subscription(db_session):
    make_agent(db_session, ST, 0.3)
    sub = make_subscription(db_session)

    outcome = AgentGovernanceService(db_session).record_outcome("agent-1", success=True)

    assert outcome["confidence_score"] == pytest.approx(0.35)
    assert outcome["status"] == ST.value
    assert outcome["promoted"] is False
    event = db_session.get(UsageEvent, outcome["usage_event_id"])
    assert event.subscription is sub
    assert event.subscription_id == sub.id
    assert (event.agent_id, event.workspace_id, event.success) == ("agent-1", "acme", True)
    assert sub.usage_events == [event]


def test_failure_lowers_confidence_but_never_demotes(db_session):
    agent = make_agent(db_session, IN, 0.55)
    make_subscription(db_session)

    outcome = AgentGovernanceService(db_session).record_outcome("agent-1", success=False)

    assert outcome["confidence_score"] == pytest.approx(0.45)
    assert outcome["status"] == IN.value
    db_session.expire_all()
    assert agent.confidence_score == pytest.approx(0.45)
    assert agent.status == IN.value
    event = db_session.get(UsageEvent, outcome["usage_event_id"])
    assert event.success is False


@pytest.mark.parametrize(
    ("start", "success", "expected"), [(0.98, True, 1.0), (1.0, True, 1.0), (0.05, False, 0.0)]
)
def test_confidence_is_clamped(db_session, start, success, expected):
    make_agent(db_session, ST, start)
    outcome = AgentGovernanceService(db_session).record_outcome("agent-1", success=success)
    assert outcome["confidence_score"] == pytest.approx(expected)


@pytest.mark.parametrize(
    ("status", "score", "expected_status", "expected_score"),
    [
        (ST, 0.49, IN, 0.54),
        (ST, 0.45, IN, 0.5),
        (ST, 0.40, ST, 0.45),
        (IN, 0.69, SV, 0.74),
        (SV, 0.89, AU, 0.94),
        (ST, 0.65, SV, 0.7),
        (AU, 0.2, AU, 0.25),
    ],
)
def test_promotion_thresholds(db_session, status, score, expected_status, expected_score):
    make_agent(db_session, status, score)

    outcome = AgentGovernanceService(db_session).record_outcome("agent-1", success=True)

    assert outcome["status"] == expected_status.value
    assert outcome["promoted"] is (expected_status is not status)
    assert outcome["confidence_score"] == pytest.approx(expected_score)
    db_session.expire_all()
    stored = db_session.get(AgentRegistry, "agent-1")
    assert stored.status == expected_status.value
    assert stored.confidence_score == pytest.approx(expected_score)


def test_usage_without_active_subscription_is_unbilled(db_session):
    make_agent(db_session, ST, 0.3, ws="acme")
    make_subscription(db_session, ws="acme", status="cancelled")
    make_subscription(db_session, ws="globex", status="active")

    outcome = AgentGovernanceService(db_session).record_outcome("agent-1", success=True)

    event = db_session.get(UsageEvent, outcome["usage_event_id"])
    assert event.subscription is None
    assert event.subscription_id is None


def test_app_sessions_share_the_sandbox(db_session):
    """Rows committed by the test are seen by the app's SessionLocal, and vice versa."""
    make_agent(db_session, ST, 0.49)
    sub = make_subscription(db_session)
    db_session.commit()

    with SessionLocal() as db:
        outcome = AgentGovernanceService(db).record_outcome("agent-1", success=True)
        db.commit()
    assert outcome["status"] == IN.value

    db_session.expire_all()
    assert db_session.get(AgentRegistry, "agent-1").status == IN.value
    billed = db_session.scalar(
        select(func.count()).select_from(UsageEvent).where(UsageEvent.subscription_id == sub.id)
    )
    assert billed == 1
