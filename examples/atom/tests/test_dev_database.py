"""The app's module-level engine points at ./atom_dev.db; the test run must never open it."""

from __future__ import annotations

from atom.core.atom_meta_agent import AtomMetaAgent
from atom.core.database import SessionLocal, engine, get_db
from atom.models import AgentRegistry
from sqlalchemy import select, text


class AnsweringLLM:
    async def generate_response(self, prompt: str) -> str:
        return "Final Answer: ok"


async def test_running_the_app_never_opens_the_dev_database(dev_db_guard):
    # Every way the app reaches its database: raw engine, sessions, the request dependency,
    # and the agent's own sessions.
    with engine.connect() as conn:
        assert conn.execute(text("SELECT 1")).scalar() == 1
    with engine.begin() as conn:
        conn.execute(select(AgentRegistry.id)).all()
    with SessionLocal() as db:
        db.scalars(select(AgentRegistry)).all()
    gen = get_db()
    db = next(gen)
    db.scalars(select(AgentRegistry)).all()
    gen.close()
    result = await AtomMetaAgent(llm=AnsweringLLM()).execute("ping")
    assert result["status"] == "success"

    assert dev_db_guard.violations() == []
