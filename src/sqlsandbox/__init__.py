"""sqlsandbox: a real database per test run, one rolled-back sandbox per test, sync and async.

The library knows nothing of pytest (`import sqlsandbox` does not import it): `Run` and `Run.sandbox()` serve
a script or any test runner. The pytest plugin (sqlsandbox.plugin) is glue over them; `seed`, which makes
pytest fixtures, is imported from it on first use.
"""

from typing import Any

from .config import Settings
from .errors import (
    ConfigError,
    DatabaseAccessBlocked,
    DriverMissingError,
    NotOurDatabaseError,
    SandboxClosedError,
    SandboxDeadlockError,
    SandboxError,
    SandboxEscapeError,
    SandboxInterleavingError,
    SandboxLateWorkError,
    SandboxLayerError,
    SandboxLoopError,
    SandboxOwnerLoopError,
    ServerUnreachableError,
)
from .run import Run
from .sandbox import Sandbox

__version__ = "0.1.0"
__all__ = [
    "ConfigError",
    "DatabaseAccessBlocked",
    "DriverMissingError",
    "NotOurDatabaseError",
    "Run",
    "Sandbox",
    "SandboxClosedError",
    "SandboxDeadlockError",
    "SandboxError",
    "SandboxEscapeError",
    "SandboxInterleavingError",
    "SandboxLateWorkError",
    "SandboxLayerError",
    "SandboxLoopError",
    "SandboxOwnerLoopError",
    "ServerUnreachableError",
    "Settings",
    "__version__",
    "seed",
]


def __getattr__(name: str) -> Any:
    if name == "seed":  # a pytest fixture factory: importing it imports pytest
        from .plugin import seed

        return seed
    raise AttributeError(f"module 'sqlsandbox' has no attribute {name!r}")
