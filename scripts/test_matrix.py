"""`make test`: lint, types, then the suite on each database, each in its own pytest run.

SQLite always runs. PostgreSQL and MariaDB run when reachable at the URLs below (override with
SQLSANDBOX_TEST_POSTGRES / SQLSANDBOX_TEST_MARIADB); with CI set, an unreachable one fails the run.

Then the edges of what pyproject admits, each in a venv of its own under .venv-compat/: Python 3.10 with the
lowest versions of SQLAlchemy, pytest and pytest-asyncio, and Python 3.13 with the newest. They run where those
interpreters are found (on PATH or under pyenv); with CI set, a missing one fails the run.
"""

from __future__ import annotations

import glob
import hashlib
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import urlsplit

ROOT = Path(__file__).resolve().parent.parent
PY = sys.executable
PG = os.environ.get("SQLSANDBOX_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/sqlsandbox")
MARIA = os.environ.get("SQLSANDBOX_TEST_MARIADB", "mysql://root@127.0.0.1:3306/sqlsandbox")
EMBEDDED = "postgresql+embedded:///sqlsandbox"
EXAMPLES = ["ops_core", "biomapper", "atom"]
# the framework recipes under examples/recipes (docs/recipes): one pytest process each per database run
RECIPES = ["fastapi_sqlmodel", "fastapi_async", "flask_sqlalchemy", "litestar", "sqladmin", "starlette", "cli"]


def driver(url: str, name: str) -> str:
    scheme, rest = url.split("://", 1)
    return f"{scheme.split('+')[0]}+{name}://{rest}"


# (label, python version, pins, database runs): the oldest and the newest of what pyproject admits
COMPAT = [
    (
        "python 3.10, lowest versions",
        "3.10",
        ["SQLAlchemy==2.0.30", "pytest==8.2.*", "pytest-asyncio==1.0.*"],
        [
            ("sqlite", None),
            ("postgresql+asyncpg", driver(PG, "asyncpg")),
            ("mariadb+pymysql", driver(MARIA, "pymysql")),
        ],
    ),
    (
        "python 3.13, newest versions",
        "3.13",
        [],
        [
            ("sqlite", None),
            ("postgresql+psycopg", driver(PG, "psycopg")),
            ("mariadb+asyncmy", driver(MARIA, "asyncmy")),
        ],
    ),
]


def reachable(url: str) -> bool:
    parts = urlsplit(url)
    try:
        with socket.create_connection((parts.hostname or "127.0.0.1", parts.port or 0), timeout=2):
            return True
    except OSError:
        return False


def main() -> int:
    ci = bool(os.environ.get("CI"))
    runs: list[tuple[str, str | None]] = [("sqlite (pysqlite + aiosqlite)", None)]
    for label, url, drivers in (
        ("postgresql", PG, ("psycopg", "asyncpg")),
        ("mariadb", MARIA, ("pymysql", "asyncmy")),
    ):
        if reachable(url):
            runs += [(f"{label}+{d}", driver(url, d)) for d in drivers]
        elif ci:
            print(f"FAIL: {label} is not reachable at {url}, and CI requires it.", flush=True)
            return 1
        else:
            print(f"NOTE: {label} not reachable at {url}: its runs are left out (CI requires them).")

    steps: list[tuple[str, list[str], Path, str | None]] = [
        ("ruff", [PY, "-m", "ruff", "check", "src", "tests", "scripts"], ROOT, None),
        ("mypy --strict", [PY, "-m", "mypy"], ROOT, None),
    ]
    for label, url in runs:
        steps.append((f"plugin suite on {label}", [PY, "-m", "pytest", "-q", "tests"], ROOT, url))
        for example in EXAMPLES:
            steps.append(
                (f"{example} on {label}", [PY, "-m", "pytest", "-q"], ROOT / "examples" / example, url)
            )
        for recipe in RECIPES:
            recipe_dir = ROOT / "examples" / "recipes" / recipe
            steps.append((f"recipe {recipe} on {label}", [PY, "-m", "pytest", "-q"], recipe_dir, url))
        # 300 randomized tests while the sandbox connection is killed from outside (scripts/soak.py)
        steps.append((f"soak on {label}", [PY, "scripts/soak.py", "--tests", "300"], ROOT, url))
    # aiomysql: the async driver the MariaDB runs above do not pick
    if any(url and url.startswith("mysql") for _, url in runs):
        aiomysql = driver(MARIA, "aiomysql")
        steps.append(("plugin suite on mariadb+aiomysql", [PY, "-m", "pytest", "-q", "tests"], ROOT, aiomysql))
    # the reference apps on a throwaway PostgreSQL started for the run (postgresql+embedded://)
    for example in EXAMPLES:
        steps.append(
            (
                f"{example} on embedded postgresql",
                [PY, "-m", "pytest", "-q"],
                ROOT / "examples" / example,
                EMBEDDED,
            )
        )
    # parallel workers, each with its own database cloned from the one template they build once
    xdist = [PY, "-m", "pytest", "-q", "-n", "2", "tests"]
    steps.append(("plugin suite with -n 2", xdist, ROOT, None))
    if any(url and url.startswith("postgresql") for _, url in runs):
        steps.append(("plugin suite with -n 2 on postgresql", xdist, ROOT, driver(PG, "psycopg")))

    for label, version, pins, databases in COMPAT:
        python = compat_python(label, version, pins)
        if python is None:
            if ci:
                print(
                    f"FAIL: no python{version} venv for '{label}' (see above), and CI requires it.", flush=True
                )
                return 1
            print(
                f"NOTE: no python{version} venv for '{label}' (not found, or its install failed): "
                "its runs are left out (CI requires them)."
            )
            continue
        reached = {url.split("+")[0] for _, url in runs if url}
        for db_label, db_url in databases:
            if db_url is None or db_url.split("+")[0] in reached:
                suite = [python, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests"]
                steps.append((f"plugin suite on {label}, {db_label}", suite, ROOT, db_url))

    failed: list[str] = []
    passed_total = failed_total = 0
    for label, cmd, cwd, url in steps:
        env = dict(os.environ)
        env.pop("SQLSANDBOX_URL", None)
        if url:
            env["SQLSANDBOX_URL"] = url
        start = time.perf_counter()
        print(f"\n=== {label}", flush=True)
        proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True)
        out = proc.stdout + proc.stderr
        tail = [line for line in out.splitlines() if line.strip()][-12:]
        print("\n".join(tail if proc.returncode else tail[-3:]))
        print(f"--- {label}: {'ok' if proc.returncode == 0 else 'FAILED'} ({time.perf_counter() - start:.1f}s)")
        summary = _counts(out)
        passed_total += summary[0]
        failed_total += summary[1]
        if proc.returncode != 0:
            failed.append(label)
    print("\n=== make test summary")
    for label in failed:
        print(f"FAILED: {label}")
    print(f"{passed_total} passed, {failed_total} failed")
    return 1 if failed else 0


def find_python(version: str) -> str | None:
    candidates = [shutil.which(f"python{version}") or ""]
    candidates += sorted(glob.glob(os.path.expanduser(f"~/.pyenv/versions/{version}*/bin/python{version}")))
    for candidate in candidates:  # a pyenv shim is on PATH even where its version is not selected
        probe = subprocess.run([candidate, "--version"], capture_output=True) if candidate else None
        if probe is not None and probe.returncode == 0:
            return candidate
    return None


def compat_python(label: str, version: str, pins: list[str]) -> str | None:
    """The venv's python for one edge of the support range, (re)installed when pyproject or the pins
    change."""
    base = find_python(version)
    if base is None:
        return None
    venv = ROOT / ".venv-compat" / f"py{version.replace('.', '')}"
    python = venv / "bin" / "python"
    stamp = venv / ".installed"
    # the newest edge is installed afresh each week, so that it stays the newest
    fresh = "" if pins else time.strftime("%G-W%V")
    want = hashlib.sha256((ROOT / "pyproject.toml").read_bytes() + f"{pins} {fresh}".encode()).hexdigest()
    if not (python.exists() and stamp.exists() and stamp.read_text() == want):
        print(f"\n=== venv for {label} ({base})", flush=True)
        shutil.rmtree(venv, ignore_errors=True)
        install = [str(python), "-m", "pip", "install", "-q", "-e", f"{ROOT}[dev]", *pins]
        for cmd in ([base, "-m", "venv", str(venv)], install):
            proc = subprocess.run(cmd, capture_output=True, text=True)
            if proc.returncode != 0:  # e.g. no network: reported like a missing interpreter
                print("\n".join((proc.stdout + proc.stderr).strip().splitlines()[-5:]))
                return None
        stamp.write_text(want)
    return str(python)


def _counts(output: str) -> tuple[int, int]:
    import re

    last = [line for line in output.splitlines() if re.search(r"\d+ (passed|failed)", line)]
    if not last:
        return 0, 0
    line = last[-1]
    passed = re.search(r"(\d+) passed", line)
    failed = re.search(r"(\d+) (failed|error)", line)
    return int(passed.group(1)) if passed else 0, int(failed.group(1)) if failed else 0


if __name__ == "__main__":
    sys.exit(main())
