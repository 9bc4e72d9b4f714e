"""pytest plugin loaded in every benchmark run (-p bench_timing): times each test's phases.

Per test it records setup, call and teardown (perf_counter around pytest's own phase hooks, as the
outermost wrapper), and for the sqlsandbox plugin the time spent opening the sandbox connection lazily
inside the test body (Sandbox._open_root: connect, or take the kept connection, and begin). The
benchmark's per-test isolation overhead is setup + teardown + that lazy part; the test body is excluded.

With BENCH_PROFILE=PATH it also runs cProfile over exactly that per-test overhead (setup, teardown, the lazy
open), one profile per kind of test, written to PATH.sync.prof and PATH.async.prof; with
BENCH_PROFILE_PHASE=call over the test bodies instead.

At the end it writes BENCH_OUT (per xdist worker: BENCH_OUT.<worker>) as JSON, with the wall-clock
times (time.time()) of start-up milestones relative to BENCH_T0, the moment run.py launched pytest.
"""

from __future__ import annotations

import cProfile
import json
import os
import time
from collections.abc import Iterator
from time import perf_counter
from typing import Any

import pytest

T0 = float(os.environ.get("BENCH_T0") or time.time())
_tests: dict[str, dict[str, Any]] = {}
_state: dict[str, Any] = {"lazy": 0.0, "first_setup": None, "first_call": None, "last_end": None}
PROFILE = os.environ.get("BENCH_PROFILE")
# overhead: setup + teardown + the lazy open (the default); call: the test bodies instead
PROFILE_PHASE = os.environ.get("BENCH_PROFILE_PHASE", "overhead")
_profilers: dict[str, cProfile.Profile] = {}
_current: list[cProfile.Profile | None] = [None]


def _kind(item: pytest.Item) -> str:
    return "async" if item.name.endswith("_async") else "sync"


def _profile_on(item: pytest.Item, phase: str = "overhead") -> None:
    if PROFILE and phase == PROFILE_PHASE:
        prof = _profilers.setdefault(_kind(item), cProfile.Profile())
        _current[0] = prof
        prof.enable()


def _profile_off() -> None:
    if PROFILE and _current[0] is not None:
        _current[0].disable()
        _current[0] = None


def pytest_configure(config: pytest.Config) -> None:
    _state["configured"] = time.time() - T0
    if config.pluginmanager.has_plugin("sqlsandbox"):
        _time_lazy_open()


def _time_lazy_open() -> None:
    from sqlsandbox.sandbox import Sandbox

    original = getattr(Sandbox, "_open_root", None)
    if original is None:  # the plugin changed: the lazy open is then not counted, and the results say so
        _state["lazy_open_timed"] = False
        return
    _state["lazy_open_timed"] = True

    def timed(self: Any, *args: Any, **kwargs: Any) -> Any:
        prof = _state.get("lazy_prof")
        if prof is not None:
            prof.enable()
        start = perf_counter()
        try:
            return original(self, *args, **kwargs)
        finally:
            _state["lazy"] += perf_counter() - start
            if prof is not None:
                prof.disable()

    Sandbox._open_root = timed  # type: ignore[method-assign]


def _rec(item: pytest.Item) -> dict[str, Any]:
    rec = _tests.get(item.nodeid)
    if rec is None:
        rec = _tests[item.nodeid] = {"id": item.nodeid, "kind": _kind(item), "lazy": 0.0, "outcome": "passed"}
    return rec


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_setup(item: pytest.Item) -> Iterator[None]:
    if _state["first_setup"] is None:
        _state["first_setup"] = time.time() - T0
    _state["lazy"] = 0.0
    _profile_on(item)
    start = perf_counter()
    try:
        return (yield)
    finally:
        _rec(item)["setup"] = perf_counter() - start
        _profile_off()


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_call(item: pytest.Item) -> Iterator[None]:
    if _state["first_call"] is None:
        _state["first_call"] = time.time() - T0
    _state["lazy"] = 0.0
    if PROFILE and PROFILE_PHASE == "overhead":
        _state["lazy_prof"] = _profilers.setdefault(_kind(item), cProfile.Profile())
    _profile_on(item, "call")
    start = perf_counter()
    try:
        return (yield)
    finally:
        if PROFILE_PHASE == "call":
            _profile_off()
        _state["lazy_prof"] = None
        rec = _rec(item)
        rec["call"] = perf_counter() - start
        rec["lazy"] = _state["lazy"]


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_teardown(item: pytest.Item) -> Iterator[None]:
    _profile_on(item)
    start = perf_counter()
    try:
        return (yield)
    finally:
        _rec(item)["teardown"] = perf_counter() - start
        _profile_off()
        _state["last_end"] = time.time() - T0


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    if report.failed:
        rec = _tests.setdefault(report.nodeid, {"id": report.nodeid, "kind": "?", "lazy": 0.0})
        rec["outcome"] = "failed"
        rec.setdefault("error", str(report.longrepr)[-1500:])


def pytest_unconfigure(config: pytest.Config) -> None:
    for kind, prof in _profilers.items():
        prof.dump_stats(f"{PROFILE}.{kind}.prof")
    out = os.environ.get("BENCH_OUT")
    if not out:
        return
    worker = os.environ.get("PYTEST_XDIST_WORKER")
    if worker:
        out = f"{out}.{worker}"
    elif hasattr(config, "workerinput"):
        return
    payload = {**_state, "finished": time.time() - T0, "tests": list(_tests.values())}
    payload.pop("lazy", None)
    payload.pop("lazy_prof", None)
    with open(out, "w") as fh:
        json.dump(payload, fh)
