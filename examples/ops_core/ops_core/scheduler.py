"""Background scheduler: picks pending tasks and runs them.

Every step (claim, finish) is its own short transaction, so the API always sees a task's progress
and a crashed worker leaves at most one task ``running``. Claims are a conditional UPDATE, so any
number of schedulers (processes or asyncio tasks) can share one database.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import sys
from typing import Any

from ops_core.metadata.base import TaskStatusConflictError
from ops_core.metadata.store import SqlMetadataStore
from ops_core.models import Task, TaskStatus, TaskType

logger = logging.getLogger(__name__)


class TaskExecutionError(Exception):
    """The task's work failed; its message becomes the task's result."""


def execute_task(task: Task) -> str:
    """Do the task's work and return its result (a JSON document)."""
    try:
        data: Any = json.loads(task.input_json)
    except ValueError as exc:
        raise TaskExecutionError(f"input is not valid JSON: {exc}") from exc
    if not isinstance(data, dict):
        raise TaskExecutionError("input must be a JSON object")
    if data.get("fail"):
        raise TaskExecutionError(str(data.get("reason") or "task input asked to fail"))
    if task.task_type == TaskType.AGENT:
        output = f"{task.agent_name} handled {len(data)} field(s)"
        return json.dumps({"agent": task.agent_name, "output": output}, sort_keys=True)
    return json.dumps({"echo": data}, sort_keys=True)


class SchedulerTickError(RuntimeError):
    """Raised by ``wait_idle`` when the background loop's tick failed."""


class Scheduler:
    """Asyncio scheduler polling the task table every ``poll_interval`` seconds.

    ``start()``/``stop()`` run it as a background task; ``run_once()`` does one tick in the
    caller's task; ``wake()`` makes the background loop poll now; ``wait_idle()`` returns once a
    tick that started after the call found nothing left to do.
    """

    def __init__(self, poll_interval: float = 0.5, batch_size: int = 50) -> None:
        if poll_interval <= 0:
            raise ValueError("poll_interval must be positive")
        self.poll_interval = poll_interval
        self.batch_size = batch_size
        self.processed_total = 0
        self.failed_total = 0
        self.tick_errors = 0
        self._loop_task: asyncio.Task[None] | None = None
        self._loop_active = False
        self._stopping = asyncio.Event()
        self._wake = asyncio.Event()
        self._tick_finished = asyncio.Event()  # set (and replaced) after every tick
        self._ticks_started = 0
        self._last_idle_tick = 0
        self._last_error_tick = 0
        self._last_error: BaseException | None = None

    @property
    def running(self) -> bool:
        return self._loop_active

    async def start(self) -> None:
        if self.running:
            return
        self._stopping.clear()
        self._loop_active = True
        self._loop_task = asyncio.create_task(self._loop(), name="ops_core-scheduler")
        logger.info("scheduler started (poll every %.3fs)", self.poll_interval)

    async def stop(self) -> None:
        task, self._loop_task = self._loop_task, None
        if task is None:
            return
        self._stopping.set()
        self._wake.set()
        await task
        logger.info("scheduler stopped")

    def wake(self) -> None:
        self._wake.set()

    async def run_once(self) -> int:
        """Run every task that is pending now; return how many this call ran."""
        store = SqlMetadataStore()
        processed = 0
        while True:
            pending = await store.list_tasks(status=TaskStatus.PENDING, limit=self.batch_size)
            if not pending:
                return processed
            for task in pending:
                if await self._process(store, task.id):
                    processed += 1

    async def _process(self, store: SqlMetadataStore, task_id: str) -> bool:
        try:
            task = await store.update_status(
                task_id, TaskStatus.RUNNING, expected_status=TaskStatus.PENDING
            )
        except TaskStatusConflictError:
            return False  # another worker claimed it first
        try:
            result = execute_task(task)
        except TaskExecutionError as exc:
            await store.update_status(
                task_id, TaskStatus.FAILED, result=str(exc), expected_status=TaskStatus.RUNNING
            )
            self.failed_total += 1
            logger.info("task %s failed: %s", task_id, exc)
        else:
            await store.update_status(
                task_id, TaskStatus.DONE, result=result, expected_status=TaskStatus.RUNNING
            )
        self.processed_total += 1
        return True

    async def wait_idle(self, timeout: float | None = 10.0) -> None:
        """Wait until no task is pending.

        With the background loop running, wakes it and waits for a tick that started after this
        call and found nothing to do; otherwise runs ticks in the caller's task.
        """
        if sys.version_info >= (3, 11):
            async with asyncio.timeout(timeout):  # stays in the caller's task
                await self._wait_idle()
        else:
            await asyncio.wait_for(self._wait_idle(), timeout)

    async def _wait_idle(self) -> None:
        if not self.running:
            while await self.run_once():
                pass
            return
        target = self._ticks_started + 1
        self.wake()
        while True:
            if self._last_error_tick >= target:
                raise SchedulerTickError("scheduler tick failed") from self._last_error
            if self._last_idle_tick >= target:
                return
            if not self.running:
                raise SchedulerTickError("scheduler stopped before becoming idle")
            await self._tick_finished.wait()

    def _finish_tick(self) -> None:
        event, self._tick_finished = self._tick_finished, asyncio.Event()
        event.set()

    async def _loop(self) -> None:
        try:
            while not self._stopping.is_set():
                self._wake.clear()
                self._ticks_started += 1
                tick = self._ticks_started
                try:
                    processed = await self.run_once()
                except Exception as exc:  # keep polling: the database may come back
                    logger.exception("scheduler tick failed")
                    processed = 0
                    self.tick_errors += 1
                    self._last_error, self._last_error_tick = exc, tick
                else:
                    if processed == 0:
                        self._last_idle_tick = tick
                self._finish_tick()
                if processed:
                    continue
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), self.poll_interval)
        finally:
            self._loop_active = False
            self._finish_tick()
