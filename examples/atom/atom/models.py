"""Model registry: importing this module registers every mapped class on ``Base``.

Relationships between model modules are declared by class name (``relationship("Subscription")``),
so SQLAlchemy can only configure the mappers once *all* model modules have been imported. Every
entry point (CLI, workers, schema creation, the test configuration) imports this module rather
than individual model modules.
"""

from atom.core.database import Base
from atom.core.models import AgentExecution, AgentRegistry, AgentStatus
from atom.ecommerce.models import Subscription
from atom.saas.models import UsageEvent

__all__ = [
    "AgentExecution",
    "AgentRegistry",
    "AgentStatus",
    "Base",
    "Subscription",
    "UsageEvent",
]
