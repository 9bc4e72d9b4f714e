"""`make demo`: run the reference apps' suites on the embedded SQLite default and report what happened.

The three apps are independent (each its own folder, its own test database): they run SQLSANDBOX_TEST_JOBS
at a time (default min(2, cores)), each app's output kept apart, and the table comes at the end.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
APPS = {
    "ops_core": "FastAPI + grpc.aio + scheduler in one sandbox (seeds 002, 004)",
    "biomapper": "error paths and trace logging against a real database (seeds 000, 001)",
    "atom": "split models, string relationships, dev database never opened (seed 003)",
}


@dataclass
class Result:
    app: str
    passed: int
    failed: int
    seconds: float
    report: str  # the plugin's "N test(s) used the database ..." line
    clean: bool  # the end-of-run check found every table as the schema build left it
    code: int
    output: str


def run(app: str) -> Result:
    env = {k: v for k, v in os.environ.items() if k != "SQLSANDBOX_URL"}
    start = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:randomly"],
        cwd=ROOT / "examples" / app,
        env=env,
        capture_output=True,
        text=True,
    )
    seconds = time.perf_counter() - start
    out = proc.stdout + proc.stderr
    result = next((ln for ln in reversed(out.splitlines()) if re.search(r"\d+ (passed|failed)", ln)), "")
    passed = re.search(r"(\d+) passed", result)
    failed = re.search(r"(\d+) (failed|error)", result)
    report = next((ln.strip() for ln in out.splitlines() if "test(s) used the database" in ln), "")
    return Result(
        app,
        int(passed.group(1)) if passed else 0,
        int(failed.group(1)) if failed else 0,
        seconds,
        report,
        "Every table is as the schema build left it." in out,
        proc.returncode,
        out,
    )


def main() -> int:
    raw = os.environ.get("SQLSANDBOX_TEST_JOBS", "").strip()
    workers = max(1, int(raw)) if raw.isdigit() else max(1, min(2, os.cpu_count() or 1))
    print(
        f"sqlsandbox demo: the reference apps' suites on the embedded SQLite default, {workers} at a time ..."
    )
    start = time.perf_counter()
    with ThreadPoolExecutor(max_workers=workers) as pool:
        results = list(pool.map(run, APPS))
    wall = time.perf_counter() - start

    for r in results:
        if r.code != 0:
            print(f"\n--- {r.app}: pytest exited with {r.code}; the end of its output:\n{r.output[-4000:]}")
    width = max(len(app) for app in APPS)
    print(f"\n{'app':{width}}  {'passed':>6}  {'failed':>6}  {'seconds':>7}  story / sandbox report")
    for r in results:
        print(f"{r.app:{width}}  {r.passed:6}  {r.failed:6}  {r.seconds:7.1f}  {APPS[r.app]}")
        print(f"{'':{width}}  {'':6}  {'':6}  {'':7}  {r.report or 'NO REPORT LINE (see the output above)'}")
        left = "nothing left behind: every table as the schema build left it" if r.clean else "LEAK: rows left"
        print(f"{'':{width}}  {'':6}  {'':6}  {'':7}  {left}")
    ok = all(r.code == 0 and r.clean for r in results)
    print(
        f"{'total':{width}}  {sum(r.passed for r in results):6}  {sum(r.failed for r in results):6}  "
        f"{wall:7.1f}  wall time, {workers} apps at a time ({sum(r.seconds for r in results):.1f}s of "
        f"app time) — {'ok' if ok else 'FAILED'}"
    )
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
