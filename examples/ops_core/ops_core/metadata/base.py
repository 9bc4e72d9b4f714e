"""Storage interface and its errors."""

from __future__ import annotations

import abc
from collections.abc import Mapping
from typing import Any

from ops_core.models import Task


class TaskNotFoundError(LookupError):
    """No task with the given id."""

    def __init__(self, task_id: str) -> None:
        super().__init__(f"task {task_id!r} not found")
        self.task_id = task_id


class TaskStatusConflictError(RuntimeError):
    """The task is not in the status the caller expected (someone else moved it)."""

    def __init__(self, task_id: str, expected: str, actual: str) -> None:
        super().__init__(f"task {task_id!r} is {actual!r}, expected {expected!r}")
        self.task_id = task_id
        self.expected = expected
        self.actual = actual


class MetadataStore(abc.ABC):
    @abc.abstractmethod
    async def create_task(
        self,
        task_type: str,
        input_data: Mapping[str, Any] | None = None,
        agent_name: str | None = None,
    ) -> Task: ...

    @abc.abstractmethod
    async def get_task(self, task_id: str) -> Task: ...

    @abc.abstractmethod
    async def list_tasks(
        self, status: str | None = None, limit: int = 100, offset: int = 0
    ) -> list[Task]: ...

    @abc.abstractmethod
    async def update_status(
        self,
        task_id: str,
        status: str,
        *,
        result: str | None = None,
        expected_status: str | None = None,
    ) -> Task: ...
