"""The seed's mapper error: UsageEvent.subscription is declared by name ("Subscription")."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from atom.models import Base, Subscription, UsageEvent
from sqlalchemy.orm import configure_mappers

EXAMPLE_DIR = Path(__file__).resolve().parent.parent


def test_all_mappers_configure():
    configure_mappers()
    assert UsageEvent.subscription.property.mapper.class_ is Subscription
    assert Subscription.usage_events.property.mapper.class_ is UsageEvent


def test_metadata_knows_every_table():
    assert set(Base.metadata.tables) == {
        "agent_registry",
        "agent_executions",
        "saas_usage_events",
        "ecommerce_subscriptions",
    }


def test_importing_the_agent_alone_is_enough(tmp_path):
    """A fresh interpreter that only imports the meta-agent can configure every mapper."""
    code = (
        "from atom.core.atom_meta_agent import AtomMetaAgent\n"
        "from sqlalchemy.orm import configure_mappers\n"
        "configure_mappers()\n"
        "from atom.saas.models import UsageEvent\n"
        "print(UsageEvent.subscription.property.mapper.class_.__name__)\n"
    )
    env = {**os.environ, "PYTHONPATH": str(EXAMPLE_DIR)}
    proc = subprocess.run(
        [sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "Subscription"
    assert not (tmp_path / "atom_dev.db").exists()
