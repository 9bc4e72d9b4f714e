"""Atom, the meta-agent: answers tasks with an LLM and learns from its outcomes."""

from __future__ import annotations

import logging
import re
import time
from datetime import datetime
from typing import Any

from sqlalchemy.orm import Session, sessionmaker

from atom.core.agent_governance_service import AgentGovernanceService
from atom.core.database import SessionLocal, utcnow
from atom.core.llm import LLMClient, OpenAIChatClient
from atom.models import AgentExecution, AgentRegistry, AgentStatus

logger = logging.getLogger(__name__)

ATOM_AGENT_ID = "atom_main"

PROMPT_TEMPLATE = """You are Atom, a meta-agent that coordinates specialist agents.
Reason about the task, then give your result on a final line of the form
"Final Answer: <answer>".

Task: {task}
"""

_FINAL_ANSWER = re.compile(r"Final Answer:", re.IGNORECASE)


def parse_final_answer(text: str) -> str | None:
    """Return what follows the last ``Final Answer:`` marker, or None if there is none."""
    matches = list(_FINAL_ANSWER.finditer(text or ""))
    if not matches:
        return None
    answer = text[matches[-1].end() :].strip()
    return answer or None


class AtomMetaAgent:
    def __init__(
        self,
        llm: LLMClient | None = None,
        session_factory: sessionmaker[Session] = SessionLocal,
        *,
        agent_id: str = ATOM_AGENT_ID,
    ) -> None:
        self.llm: LLMClient = llm if llm is not None else OpenAIChatClient()
        self.session_factory = session_factory
        self.agent_id = agent_id

    async def execute(self, task: str, *, complexity: int = 1) -> dict[str, Any]:
        gate = self._check_governance(complexity)
        if not gate["allowed"]:
            return {
                "status": "blocked",
                "task": task,
                "reason": gate["reason"],
                "agent_status": gate["agent_status"],
            }

        started_at = utcnow()
        t0 = time.monotonic()
        raw: str | None = None
        error: str | None = None
        try:
            raw = await self.llm.generate_response(PROMPT_TEMPLATE.format(task=task))
        except Exception as exc:
            logger.warning("LLM call failed for %s: %s", self.agent_id, exc)
            error = f"{type(exc).__name__}: {exc}"

        answer = parse_final_answer(raw) if raw is not None else None
        if raw is not None and answer is None:
            error = "response has no 'Final Answer:'"
        success = answer is not None

        outcome = await self._record_execution(
            task,
            success=success,
            output=raw,
            error=error,
            started_at=started_at,
            duration_ms=int((time.monotonic() - t0) * 1000),
        )
        return {
            "status": "success" if success else "failed",
            "task": task,
            "final_answer": answer,
            "error": error,
            "agent_status": outcome["status"],
            "confidence_score": outcome["confidence_score"],
            "promoted": outcome["promoted"],
            "execution_id": outcome["execution_id"],
        }

    def _check_governance(self, complexity: int) -> dict[str, Any]:
        with self.session_factory() as db:
            if db.get(AgentRegistry, self.agent_id) is None:
                db.add(
                    AgentRegistry(
                        id=self.agent_id,
                        name="Atom",
                        status=AgentStatus.STUDENT.value,
                        category="Meta",
                        module_path=__name__,
                        class_name=type(self).__name__,
                    )
                )
                db.commit()
                logger.info("registered agent %s", self.agent_id)
            return AgentGovernanceService(db).can_perform_action(self.agent_id, complexity)

    async def _record_execution(
        self,
        task: str,
        *,
        success: bool,
        output: str | None,
        error: str | None,
        started_at: datetime,
        duration_ms: int,
    ) -> dict[str, Any]:
        with self.session_factory() as db:
            try:
                execution = AgentExecution(
                    agent_id=self.agent_id,
                    task=task,
                    status="success" if success else "failed",
                    output=output,
                    error=error,
                    started_at=started_at,
                    finished_at=utcnow(),
                    duration_ms=duration_ms,
                )
                db.add(execution)
                outcome = AgentGovernanceService(db).record_outcome(self.agent_id, success)
                db.commit()
            except Exception:
                db.rollback()
                raise
            return {**outcome, "execution_id": execution.id}
