"""Whole applications inside the sandbox: ASGI apps and grpc.aio servers run in the test's own loop."""
