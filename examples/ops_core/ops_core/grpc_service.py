"""gRPC ``TaskService``: submit and read tasks over grpc.aio."""

from __future__ import annotations

import json
import logging
from datetime import datetime, timezone

import grpc
from google.protobuf.timestamp_pb2 import Timestamp

from ops_core import tasks_pb2, tasks_pb2_grpc
from ops_core.metadata.base import TaskNotFoundError
from ops_core.metadata.store import SqlMetadataStore
from ops_core.models import Task, TaskType

logger = logging.getLogger(__name__)


def _timestamp(value: datetime) -> Timestamp:
    ts = Timestamp()
    ts.FromDatetime(value.replace(tzinfo=timezone.utc))  # stored as naive UTC
    return ts


def task_to_proto(task: Task) -> tasks_pb2.Task:
    message = tasks_pb2.Task(
        id=task.id,
        task_type=task.task_type,
        status=task.status,
        input_json=task.input_json,
        created_at=_timestamp(task.created_at),
        updated_at=_timestamp(task.updated_at),
    )
    if task.result is not None:
        message.result = task.result
    if task.agent_name is not None:
        message.agent_name = task.agent_name
    return message


class TaskServicer(tasks_pb2_grpc.TaskServiceServicer):
    """Each call uses its own session(s) through ``SqlMetadataStore()``."""

    async def SubmitTask(
        self, request: tasks_pb2.SubmitTaskRequest, context: grpc.aio.ServicerContext
    ) -> tasks_pb2.Task:
        if request.task_type not in {t.value for t in TaskType}:
            await context.abort(
                grpc.StatusCode.INVALID_ARGUMENT, f"unknown task_type {request.task_type!r}"
            )
        try:
            input_data = json.loads(request.input_json) if request.input_json else {}
        except ValueError:
            input_data = None
        if not isinstance(input_data, dict):
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "input_json must be an object")
        agent_name = request.agent_name if request.HasField("agent_name") else None
        try:
            task = await SqlMetadataStore().create_task(
                request.task_type, input_data, agent_name=agent_name
            )
        except ValueError as exc:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(exc))
        logger.info("task %s submitted over gRPC", task.id)
        return task_to_proto(task)

    async def GetTask(
        self, request: tasks_pb2.GetTaskRequest, context: grpc.aio.ServicerContext
    ) -> tasks_pb2.Task:
        try:
            task = await SqlMetadataStore().get_task(request.task_id)
        except TaskNotFoundError as exc:
            await context.abort(grpc.StatusCode.NOT_FOUND, str(exc))
        return task_to_proto(task)


async def serve(address: str = "[::]:50051") -> None:
    """Run the gRPC server until cancelled."""
    server = grpc.aio.server()
    tasks_pb2_grpc.add_TaskServiceServicer_to_server(TaskServicer(), server)
    server.add_insecure_port(address)
    await server.start()
    logger.info("gRPC TaskService listening on %s", address)
    try:
        await server.wait_for_termination()
    finally:
        await server.stop(grace=5)
