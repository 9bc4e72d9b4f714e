"""AtomMetaAgent end to end: LLM -> Final Answer -> execution log -> governance -> billing.

Nothing in the app is patched: the real ``_record_execution`` and ``record_outcome`` run against
the sandboxed database through the app's own ``SessionLocal``. Only the LLM is replaced, by
injecting a small fake that implements the ``LLMClient`` interface.
"""

from __future__ import annotations

import pytest
from atom.core.atom_meta_agent import ATOM_AGENT_ID, AtomMetaAgent, parse_final_answer
from atom.core.database import SessionLocal
from atom.core.llm import LLMClient, LLMError
from atom.models import AgentExecution, AgentRegistry, AgentStatus, Subscription, UsageEvent
from sqlalchemy import func, select

DONE = "Thought: I should finish.\nFinal Answer: Done."


class ScriptedLLM:
    """LLMClient test double: replays canned responses (or raises them) and records prompts."""

    def __init__(self, *responses: str | Exception) -> None:
        self.responses = list(responses)
        self.prompts: list[str] = []

    async def generate_response(self, prompt: str) -> str:
        self.prompts.append(prompt)
        response = self.responses[min(len(self.prompts), len(self.responses)) - 1]
        if isinstance(response, Exception):
            raise response
        return response


def seed_atom(status: AgentStatus, score: float, *, ws: str = "acme") -> int:
    """Seed the Atom agent and its workspace subscription through the app's own SessionLocal."""
    with SessionLocal() as db:
        db.add(
            AgentRegistry(
                id=ATOM_AGENT_ID,
                name="Atom",
                workspace_id=ws,
                status=status.value,
                category="Meta",
                module_path="atom.core.atom_meta_agent",
                class_name="AtomMetaAgent",
                confidence_score=score,
            )
        )
        sub = Subscription(workspace_id=ws, plan="team", status="active")
        db.add(sub)
        db.commit()
        return sub.id


def load_atom() -> tuple[str, float]:
    with SessionLocal() as db:
        agent = db.get(AgentRegistry, ATOM_AGENT_ID)
        return agent.status, agent.confidence_score


def count(model, *where) -> int:
    with SessionLocal() as db:
        return db.scalar(select(func.count()).select_from(model).where(*where))


def test_scripted_llm_implements_the_interface():
    assert isinstance(ScriptedLLM(DONE), LLMClient)


async def test_atom_learning_progression():
    sub_id = seed_atom(AgentStatus.STUDENT, 0.49)
    llm = ScriptedLLM(DONE)
    atom = AtomMetaAgent(llm=llm)

    result = await atom.execute("Test task")

    assert result["status"] == "success"
    assert result["final_answer"] == "Done."
    assert result["agent_status"] == AgentStatus.INTERN.value
    assert result["promoted"] is True
    assert result["confidence_score"] == pytest.approx(0.54)
    assert len(llm.prompts) == 1
    assert "Test task" in llm.prompts[0]

    statuses = [result["agent_status"]]
    for i in range(8):
        result = await atom.execute(f"Follow-up task {i}")
        assert result["status"] == "success"
        statuses.append(result["agent_status"])

    # 0.49 + 9 * 0.05 = 0.94: INTERN at 0.54, SUPERVISED at 0.74, AUTONOMOUS at 0.94.
    assert statuses == ["INTERN"] * 4 + ["SUPERVISED"] * 4 + ["AUTONOMOUS"]
    assert load_atom() == ("AUTONOMOUS", pytest.approx(0.94))
    assert len(llm.prompts) == 9

    assert count(AgentExecution, AgentExecution.status == "success") == 9
    assert count(UsageEvent, UsageEvent.agent_id == ATOM_AGENT_ID) == 9
    assert count(UsageEvent, UsageEvent.subscription_id == sub_id) == 9
    with SessionLocal() as db:
        sub = db.get(Subscription, sub_id)
        assert len(sub.usage_events) == 9
        assert all(e.subscription is sub and e.success for e in sub.usage_events)


async def test_failure_lowers_confidence():
    sub_id = seed_atom(AgentStatus.STUDENT, 0.49)
    atom = AtomMetaAgent(llm=ScriptedLLM("Thought: I am not sure what to do."))

    result = await atom.execute("Ambiguous task")

    assert result["status"] == "failed"
    assert result["final_answer"] is None
    assert result["agent_status"] == AgentStatus.STUDENT.value
    assert result["confidence_score"] == pytest.approx(0.39)
    assert load_atom() == ("STUDENT", pytest.approx(0.39))
    with SessionLocal() as db:
        execution = db.get(AgentExecution, result["execution_id"])
        assert execution.status == "failed"
        assert "Final Answer" in execution.error
        event = db.scalars(select(UsageEvent)).one()
        assert event.success is False
        assert event.subscription_id == sub_id


async def test_failure_after_promotion_keeps_status():
    seed_atom(AgentStatus.STUDENT, 0.49)
    atom = AtomMetaAgent(llm=ScriptedLLM(DONE, "no answer"))

    first = await atom.execute("Task 1")
    second = await atom.execute("Task 2")

    assert (first["status"], first["agent_status"]) == ("success", "INTERN")
    assert (second["status"], second["agent_status"]) == ("failed", "INTERN")
    assert second["confidence_score"] == pytest.approx(0.44)


async def test_llm_error_is_recorded_as_a_failed_execution():
    seed_atom(AgentStatus.INTERN, 0.6)
    atom = AtomMetaAgent(llm=ScriptedLLM(LLMError("upstream timeout")))

    result = await atom.execute("Summarise the quarter")

    assert result["status"] == "failed"
    assert "upstream timeout" in result["error"]
    assert result["confidence_score"] == pytest.approx(0.5)
    assert count(AgentExecution, AgentExecution.status == "failed") == 1


async def test_governance_blocks_complex_actions_before_calling_the_llm():
    seed_atom(AgentStatus.STUDENT, 0.49)
    llm = ScriptedLLM(DONE)

    result = await AtomMetaAgent(llm=llm).execute("Migrate the billing database", complexity=3)

    assert result["status"] == "blocked"
    assert result["agent_status"] == "STUDENT"
    assert llm.prompts == []
    assert count(AgentExecution) == 0
    assert count(UsageEvent) == 0


async def test_promotion_unlocks_more_complex_actions():
    seed_atom(AgentStatus.INTERN, 0.69)
    atom = AtomMetaAgent(llm=ScriptedLLM(DONE))

    assert (await atom.execute("Deploy", complexity=3))["status"] == "blocked"
    assert (await atom.execute("Warm-up", complexity=2))["agent_status"] == "SUPERVISED"
    assert (await atom.execute("Deploy", complexity=3))["status"] == "success"


async def test_unregistered_atom_registers_itself_as_a_student():
    # Also checks isolation: whatever other tests seeded has been rolled back.
    assert count(AgentRegistry) == 0
    assert count(UsageEvent) == 0

    result = await AtomMetaAgent(llm=ScriptedLLM(DONE)).execute("Hello")

    assert result["status"] == "success"
    assert load_atom() == ("STUDENT", pytest.approx(0.35))
    with SessionLocal() as db:
        event = db.scalars(select(UsageEvent)).one()
        assert event.subscription is None  # the default workspace has no subscription


def test_default_llm_client_needs_an_api_key(monkeypatch):
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    with pytest.raises(LLMError, match="OPENAI_API_KEY"):
        AtomMetaAgent()


@pytest.mark.parametrize(
    ("text", "answer"),
    [
        (DONE, "Done."),
        ("final answer: 42", "42"),
        ("Final Answer: draft\nThought: again\nFinal Answer: final", "final"),
        ("Final Answer:   ", None),
        ("Thought: hmm", None),
        ("", None),
    ],
)
def test_parse_final_answer(text, answer):
    assert parse_final_answer(text) == answer
