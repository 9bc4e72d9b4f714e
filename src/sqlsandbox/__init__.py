"""sqlsandbox: a real database per test run, one rolled-back sandbox per test, sync and async."""

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
    SandboxLayerError,
    SandboxLoopError,
    ServerUnreachableError,
)
from .layers import seed
from .sandbox import Sandbox

__version__ = "0.1.0"
__all__ = [
    "ConfigError",
    "DatabaseAccessBlocked",
    "DriverMissingError",
    "NotOurDatabaseError",
    "Sandbox",
    "SandboxClosedError",
    "SandboxDeadlockError",
    "SandboxError",
    "SandboxEscapeError",
    "SandboxInterleavingError",
    "SandboxLayerError",
    "SandboxLoopError",
    "ServerUnreachableError",
    "__version__",
    "seed",
]
