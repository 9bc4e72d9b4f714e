"""`make demo`: run the reference apps' suites on the embedded SQLite default and report what happened."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
APPS = {
    "ops_core": "FastAPI + grpc.aio + scheduler in one sandbox (seeds 002, 004)",
    "biomapper": "error paths and trace logging against a real database (seeds 000, 001)",
    "atom": "split models, string relationships, dev database never opened (seed 003)",
}


def main() -> int:
    env = {k: v for k, v in os.environ.items() if k != "SQLSANDBOX_URL"}
    rows, failed = [], False
    for app, story in APPS.items():
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
        report = next((ln for ln in out.splitlines() if "test(s) used the database" in ln), "")
        clean = "Every table is as the schema build left it." in out
        rows.append((app, story, result.strip("= "), report, clean, seconds))
        failed |= proc.returncode != 0
        if proc.returncode != 0:
            print(out[-4000:])
    print("\nsqlsandbox demo: the reference apps on the embedded SQLite default\n")
    for app, story, result, report, clean, seconds in rows:
        print(f"{app:10} {story}")
        print(f"{'':10} {result} in {seconds:.1f}s")
        print(f"{'':10} {report}")
        print(
            f"{'':10} {'nothing left behind: every table as the schema build left it' if clean else 'LEAK'}\n"
        )
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
