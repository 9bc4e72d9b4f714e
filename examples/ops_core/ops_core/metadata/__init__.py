"""Task metadata storage."""

from ops_core.metadata.base import (
    MetadataStore,
    TaskNotFoundError,
    TaskStatusConflictError,
)
from ops_core.metadata.store import SqlMetadataStore

__all__ = ["MetadataStore", "SqlMetadataStore", "TaskNotFoundError", "TaskStatusConflictError"]
