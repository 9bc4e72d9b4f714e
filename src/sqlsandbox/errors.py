"""Every error sqlsandbox raises says what happened, why, and the fix, in that order."""

from __future__ import annotations


class SandboxError(Exception):
    """Base class of sqlsandbox's errors.

    The message is built from three parts so that every error reads the same way.
    """

    def __init__(self, what: str, why: str = "", fix: str = "") -> None:
        self.what, self.why, self.fix = what, why, fix
        parts = [what]
        if why:
            parts.append(f"Why: {why}")
        if fix:
            parts.append(f"Fix: {fix}")
        super().__init__("\n".join(parts))


class ConfigError(SandboxError):
    """A setting is missing, malformed or names something that cannot be imported."""


class DriverMissingError(SandboxError):
    """The database driver a test needs is not installed."""


class ServerUnreachableError(SandboxError):
    """The configured database server did not accept a connection."""


class NotOurDatabaseError(SandboxError):
    """The derived test database exists and was not created by sqlsandbox."""


class SandboxEscapeError(SandboxError):
    """Something committed or rolled back the sandbox's outer transaction."""


class SandboxLoopError(SandboxError):
    """The sandbox connection was used from another event loop or thread."""


class SandboxInterleavingError(SandboxError):
    """Two units of work on the sandbox connection were closed out of order."""


class SandboxDeadlockError(SandboxError):
    """A task waited too long for a unit of work that another task holds."""


class SandboxOwnerLoopError(SandboxError):
    """The owner loop stopped while the async connection it holds was in use (see owner.py)."""


class SandboxLayerError(SandboxError):
    """A seed layer cannot be used (or made) where it was asked for."""


class SandboxLateWorkError(SandboxError):
    """Work a finished test started (a task or thread it left running) used the database during another."""


class SandboxClosedError(SandboxError):
    """The sandbox was used after its test ended."""


class DatabaseAccessBlocked(SandboxError):
    """A test opened a database connection without asking for the sandbox."""
