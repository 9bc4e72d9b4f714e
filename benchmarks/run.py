"""`make bench`: the same generated suite under each isolation strategy, on each database, in one run.

Strategies (benchmarks/harness/strat_*.py are plain pytest fixtures; sqlsandbox is the plugin itself):
    sqlsandbox         the plugin: one kept connection, outer transaction rolled back per test
    bare_recipe        connection.begin() + Session(join_transaction_mode="create_savepoint") per test
    drop_create        metadata.create_all() / drop_all() per test
    truncate           TRUNCATE (DELETE on SQLite) of every table + reseed after each test
    template_clone     a new database cloned from a template per test
    pytest_postgresql  the plugin itself (noproc mode), PostgreSQL only
    pytest_mock_resources  the plugin itself (its template databases), PostgreSQL only
    no_isolation       the floor: the same tests, nothing cleaned up

Each (strategy, database/driver, loop scope) is one pytest subprocess; benchmarks/harness/bench_timing.py
times every test's setup and teardown (plus sqlsandbox's lazy connection open inside the test body).
Results: a table on stdout, benchmarks/results/latest.json, benchmarks/results/overhead.png and
benchmarks/results/profile.txt. See benchmarks/README.md for the method.

    .venv/bin/python benchmarks/run.py            # the full run (5 to 6 minutes on 2 cores)
    .venv/bin/python benchmarks/run.py --quick    # small suites, to check the harness
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
HARNESS = HERE / "harness"
RESULTS = HERE / "results"
sys.path.insert(0, str(HERE))

import generate  # noqa: E402

PG = os.environ.get("SQLSANDBOX_BENCH_POSTGRES", "postgresql://postgres@127.0.0.1:5432")
MARIA = os.environ.get("SQLSANDBOX_BENCH_MARIADB", "mysql://root@127.0.0.1:3306")


@dataclass(frozen=True)
class Target:
    key: str  # pg-psycopg, pg-asyncpg, mariadb, sqlite
    family: str
    server: str  # server URL without database ("" for SQLite)
    sync_driver: str
    async_driver: str
    sqlsandbox_driver: str  # the driver named in sqlsandbox_url (decides its async driver)


TARGETS = [
    Target("pg-psycopg", "postgresql", PG, "psycopg", "psycopg_async", "psycopg"),
    Target("pg-asyncpg", "postgresql", PG, "psycopg", "asyncpg", "asyncpg"),
    Target("mariadb", "mysql", MARIA, "pymysql", "asyncmy", "pymysql"),
    Target("sqlite", "sqlite", "", "pysqlite", "aiosqlite", "pysqlite"),
]


@dataclass(frozen=True)
class Strategy:
    key: str
    plugin: str | None  # harness module, None for sqlsandbox
    loops: tuple[str, ...]
    slow: bool
    families: tuple[str, ...] = ("postgresql", "mysql", "sqlite")
    needs: str | None = None  # the pytest plugin's entry-point name, and its module
    also_needs: tuple[str, ...] = ()  # other modules it imports at run time


STRATEGIES = [
    Strategy("sqlsandbox", None, ("function", "session"), False),
    Strategy("bare_recipe", "strat_bare", ("function", "session"), False),
    Strategy("no_isolation", "strat_floor", ("function", "session"), False),
    Strategy("truncate", "strat_truncate", ("function",), True),
    Strategy("drop_create", "strat_dropcreate", ("function",), True),
    Strategy("template_clone", "strat_template", ("function",), True),
    Strategy(
        "pytest_postgresql",
        "strat_pytest_postgresql",
        ("function",),
        True,
        ("postgresql",),
        "pytest_postgresql",
    ),
    Strategy(
        "pytest_mock_resources",
        "strat_pmr",
        ("function",),
        True,
        ("postgresql",),
        "pytest_mock_resources",
        ("python_on_whales",),  # PMR builds its docker client even when the server is already up
    ),
]
OTHER_PLUGINS = ("sqlsandbox", "pytest_postgresql", "pytest_mock_resources")


@dataclass
class Params:
    n_fast: int = 100  # tests per suite for the fast strategies (sqlsandbox, bare recipe, floor)
    n_slow: dict[str, int] = field(default_factory=lambda: {"postgresql": 10, "mysql": 10, "sqlite": 40})
    startup_reps: int = 2
    xdist_tests: int = 160
    xdist_sleep_ms: int = 25
    profile_tests: int = 1000  # 500 sync + 500 async


QUICK = Params(
    n_fast=20,
    n_slow={"postgresql": 10, "mysql": 10, "sqlite": 10},
    startup_reps=1,
    xdist_tests=20,
    profile_tests=40,
)


# ---- helpers --------------------------------------------------------------------------------------


def reachable(url: str) -> bool:
    parts = urlsplit(url)
    try:
        with socket.create_connection((parts.hostname or "127.0.0.1", parts.port or 0), timeout=2):
            return True
    except OSError:
        return False


def quantile(values: list[float], q: float) -> float:
    """Linear interpolation between closest ranks (numpy's default)."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    pos = (len(ordered) - 1) * q
    lo = int(pos)
    hi = min(lo + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (pos - lo)


def ms(value: float | None, digits: int = 2) -> str:
    if value is None or value != value:
        return "-"
    return f"{value:.{digits}f}"


def ratio(a: float | None, b: float | None) -> float | None:
    if a is None or b is None or a != a or b != b or b <= 0:
        return None
    return a / b


def fmt_ratio(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value:.0f}x" if value >= 20 else f"{value:.2f}x"


class Runner:
    def __init__(self, work: Path, params: Params) -> None:
        self.work = work
        self.params = params
        self.sqlite_dir = work / "sqlite"
        self.sqlite_dir.mkdir(parents=True, exist_ok=True)
        self.counter = 0

    def env(self, target: Target, strategy: str, loop: str, db: str, out: Path) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("SQLSANDBOX_", "BENCH_", "PYTEST_"))}
        env.update(
            PYTHONPATH=os.pathsep.join([str(HARNESS), env.get("PYTHONPATH", "")]).rstrip(os.pathsep),
            BENCH_FAMILY=target.family,
            BENCH_SERVER=target.server or str(self.sqlite_dir),
            BENCH_SYNC_DRIVER=target.sync_driver,
            BENCH_ASYNC_DRIVER=target.async_driver,
            BENCH_LOOP=loop,
            BENCH_DB=db,
            BENCH_OUT=str(out),
            PYTHONDONTWRITEBYTECODE="1",
        )
        if strategy == "sqlsandbox":
            if target.family == "sqlite":
                env["SQLSANDBOX_URL"] = "sqlite:///bench.db"
            else:
                scheme, rest = target.server.split("://", 1)
                env["SQLSANDBOX_URL"] = f"{scheme}+{target.sqlsandbox_driver}://{rest}/bench"
            env["SQLSANDBOX_METADATA"] = "bench_models:Base"
        return env

    def pytest(
        self,
        suite: Path,
        target: Target,
        strategy: Strategy,
        loop: str,
        files: list[Path] | None = None,
        extra: tuple[str, ...] = (),
        profile: Path | None = None,
        profile_phase: str = "overhead",
    ) -> dict[str, Any]:
        """One pytest subprocess; returns the timing plugin's JSON plus wall time and outcome."""
        self.counter += 1
        out = self.work / f"run{self.counter:03d}.json"
        db = f"bench_{strategy.key[:8]}_{self.counter}".lower()
        args = [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-p",
            "bench_timing",
            "-p",
            "no:randomly",
            "-p",
            "no:cacheprovider",
        ]
        for plugin in OTHER_PLUGINS:
            if plugin != strategy.needs and not (plugin == "sqlsandbox" and strategy.key == "sqlsandbox"):
                args += ["-p", f"no:{plugin}"]
        if strategy.plugin:
            args += ["-p", strategy.plugin]
        if loop == "session":
            args += [
                "-o",
                "asyncio_default_fixture_loop_scope=session",
                "-o",
                "asyncio_default_test_loop_scope=session",
            ]
        args += list(extra)
        args += [str(f.relative_to(suite)) for f in files] if files else []
        env = self.env(target, strategy.key, loop, db, out)
        if profile is not None:
            env["BENCH_PROFILE"] = str(profile)
            env["BENCH_PROFILE_PHASE"] = profile_phase
        load = os.getloadavg()[0]
        t0 = time.time()
        env["BENCH_T0"] = repr(t0)
        proc = subprocess.run(args, cwd=suite, env=env, capture_output=True, text=True)
        wall = time.time() - t0
        data: dict[str, Any] = {}
        for path in sorted(self.work.glob(out.name + "*")):
            part = json.loads(path.read_text())
            if not data:
                data = part
            else:
                data["tests"] += part["tests"]
                for key in ("first_setup", "first_call"):
                    if part.get(key) is not None:
                        data[key] = min(x for x in (data.get(key), part[key]) if x is not None)
                if part.get("last_end") is not None:
                    data["last_end"] = max(x for x in (data.get("last_end"), part["last_end"]) if x is not None)
        output = proc.stdout + proc.stderr
        data["wall"] = wall
        data["load_before"] = load
        data["returncode"] = proc.returncode
        data["summary"] = _last_line(output)
        data["sqlsandbox_line"] = next(
            (line for line in output.splitlines() if "test(s) used the database" in line), None
        )
        if proc.returncode != 0:
            data["output_tail"] = "\n".join(output.splitlines()[-25:])
        return data


def _last_line(output: str) -> str:
    lines = [line for line in output.splitlines() if line.strip()]
    return lines[-1].strip("= ") if lines else ""


def summarize(data: dict[str, Any]) -> dict[str, Any]:
    """Per-kind statistics (ms), over every test but the run's first and last (their setup/teardown carry
    the session-scoped fixtures: provisioning, template builds, drops)."""
    tests = [t for t in data.get("tests", []) if "setup" in t and "teardown" in t]
    failed = [t for t in data.get("tests", []) if t.get("outcome") == "failed"]
    body = tests[1:-1] if len(tests) > 4 else tests
    out: dict[str, Any] = {
        "n_tests": len(tests),
        "failed": len(failed),
        "wall_s": data.get("wall"),
        "startup_s": data.get("first_call"),
        "returncode": data.get("returncode"),
        "summary": data.get("summary"),
        "load_before": data.get("load_before"),
    }
    if data.get("lazy_open_timed") is False:
        out["note"] = "Sandbox._open_root not found: sqlsandbox's lazy connection open is not counted"
    if data.get("first_setup") is not None and data.get("last_end") is not None:
        out["test_phase_s"] = data["last_end"] - data["first_setup"]
    if failed:
        out["first_failure"] = failed[0].get("error", "")[-800:]
    if data.get("output_tail"):
        out["output_tail"] = data["output_tail"]
    if data.get("sqlsandbox_line"):
        out["sqlsandbox_says"] = data["sqlsandbox_line"].strip()
    for kind in ("sync", "async"):
        rows = [t for t in body if t["kind"] == kind]
        if not rows:
            continue
        overhead = [(t["setup"] + t["teardown"] + t.get("lazy", 0.0)) * 1000 for t in rows]
        call = [(t.get("call", 0.0) - t.get("lazy", 0.0)) * 1000 for t in rows]
        total = [(t["setup"] + t["teardown"] + t.get("call", 0.0)) * 1000 for t in rows]
        out[kind] = {
            "n": len(rows),
            "overhead_median_ms": statistics.median(overhead),
            "overhead_p90_ms": quantile(overhead, 0.9),
            "setup_median_ms": statistics.median(t["setup"] * 1000 for t in rows),
            "teardown_median_ms": statistics.median(t["teardown"] * 1000 for t in rows),
            "lazy_open_median_ms": statistics.median(t.get("lazy", 0.0) * 1000 for t in rows),
            "body_median_ms": statistics.median(call),
            "test_median_ms": statistics.median(total),
            "test_p90_ms": quantile(total, 0.9),
        }
    return out


# ---- the phases of a run --------------------------------------------------------------------------


def main_matrix(runner: Runner, suite: Path, files: list[Path], targets: list[Target]) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    n_fast = runner.params.n_fast
    for target in targets:
        for strategy in STRATEGIES:
            if target.family not in strategy.families:
                continue
            missing = [m for m in (strategy.needs, *strategy.also_needs) if m and not _importable(m)]
            if missing:
                rows.append(_skipped(target, strategy, f"{', '.join(missing)} not installed"))
                continue
            n = runner.params.n_slow[target.family] if strategy.slow else n_fast
            subset = _files_for(files, n)
            for loop in strategy.loops:
                if strategy.key == "template_clone":
                    _drop_templates(target, runner)  # the suite run starts cold; start-up measures warm too
                label = f"{target.key:11s} {strategy.key:22s} {loop:8s} N={n:<4d}"
                print(f"  {label} ...", end="", flush=True)
                data = runner.pytest(suite, target, strategy, loop, subset)
                row = {"target": target.key, "strategy": strategy.key, "loop": loop, **summarize(data)}
                print(f" {row['wall_s']:6.1f}s  {row['summary']}", flush=True)
                if row["returncode"] not in (0, None) and row.get("output_tail"):
                    print("    " + row["output_tail"].replace("\n", "\n    ")[-1500:])
                rows.append(row)
    return rows


def _files_for(files: list[Path], n: int) -> list[Path]:
    per = generate.TESTS_PER_FILE
    return files[: max(2, (n + per - 1) // per)]


def _importable(module: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(module) is not None


def _skipped(target: Target, strategy: Strategy, why: str) -> dict[str, Any]:
    print(f"  {target.key:11s} {strategy.key:22s} skipped: {why}")
    return {"target": target.key, "strategy": strategy.key, "loop": "function", "skipped": why}


def _drop_templates(target: Target, runner: Runner) -> None:
    """Drop the template strategy's cached template (bench_tpl_*) so the next run builds it: a cold start."""
    if target.family == "sqlite":
        for path in runner.sqlite_dir.glob("bench_tpl_*"):
            path.unlink()
        return
    from sqlalchemy import create_engine, text
    from sqlalchemy.engine import make_url
    from sqlalchemy.pool import NullPool

    url = make_url(target.server)
    url = (
        url.set(drivername="postgresql+psycopg", database="postgres")
        if target.family == "postgresql"
        else url.set(drivername="mysql+pymysql")
    )
    engine = create_engine(url, poolclass=NullPool, isolation_level="AUTOCOMMIT")
    with engine.connect() as conn:
        if target.family == "postgresql":
            names = conn.execute(
                text("SELECT datname FROM pg_database WHERE datname LIKE 'bench\\_%'")
            ).scalars()
            for name in list(names):
                if name.startswith("bench_tpl_"):
                    conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        else:
            names = conn.execute(
                text(
                    "SELECT SCHEMA_NAME FROM information_schema.SCHEMATA "
                    "WHERE SCHEMA_NAME LIKE 'bench\\_tpl\\_%'"
                )
            ).scalars()
            for name in list(names):
                conn.exec_driver_sql(f"DROP DATABASE IF EXISTS `{name}`")
    engine.dispose()


def cleanup_databases(targets: list[Target]) -> list[str]:
    """Drop every bench_* database a run left behind (a failed run can leave its own or a template)."""
    from sqlalchemy import create_engine, text
    from sqlalchemy.engine import make_url
    from sqlalchemy.pool import NullPool

    dropped: list[str] = []
    for server, family in {(t.server, t.family) for t in targets if t.family != "sqlite"}:
        url = make_url(server)
        url = (
            url.set(drivername="postgresql+psycopg", database="postgres")
            if family == "postgresql"
            else url.set(drivername="mysql+pymysql")
        )
        engine = create_engine(url, poolclass=NullPool, isolation_level="AUTOCOMMIT")
        try:
            with engine.connect() as conn:
                if family == "postgresql":
                    sql = "SELECT datname FROM pg_database WHERE datname LIKE 'bench\\_%'"
                    for name in list(conn.execute(text(sql)).scalars()):
                        conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
                        dropped.append(name)
                else:
                    sql = (
                        "SELECT SCHEMA_NAME FROM information_schema.SCHEMATA WHERE SCHEMA_NAME LIKE 'bench\\_%'"
                    )
                    for name in list(conn.execute(text(sql)).scalars()):
                        conn.exec_driver_sql(f"DROP DATABASE IF EXISTS `{name}`")
                        dropped.append(name)
        finally:
            engine.dispose()
    return dropped


def sqlsandbox_has_template_cache() -> bool:
    """Warm start-up only means something once the plugin caches its built schema between runs."""
    try:
        from sqlsandbox import config

        keys = {opt.key for opt in config.OPTIONS}
    except Exception:
        return False
    return bool(keys & {"rebuild", "template", "cache"})


def startup_phase(runner: Runner, suite: Path, files: list[Path], targets: list[Target]) -> dict[str, Any]:
    """Launch to first test body, each strategy on the same two collected files (-k selects one test)."""
    by_key = {s.key: s for s in STRATEGIES}
    subset = _files_for(files, 10)
    warm_supported = sqlsandbox_has_template_cache()
    results: dict[str, Any] = {
        "sqlsandbox_template_cache": warm_supported,
        "note": "start-up = from launching pytest to the first test body starting: interpreter, imports, "
        "collection of the same 2 files, provisioning / schema build, the first test's setup. "
        "configured_to_first_test_s leaves out the interpreter and imports.",
        "targets": {},
    }
    first_test = ("-k", "test_0000_sync")
    for target in targets:
        if target.key == "pg-asyncpg":
            continue  # the same provisioning as pg-psycopg (the first test is sync)
        entry: dict[str, Any] = {}

        def measure(strategy_key: str, reps: int, target: Target = target) -> dict[str, Any]:
            runs = [
                runner.pytest(suite, target, by_key[strategy_key], "function", subset, extra=first_test)
                for _ in range(reps)
            ]
            ok = [r for r in runs if r.get("returncode") == 0 and r.get("first_call") is not None]
            if not ok:
                return {"error": (runs[-1].get("output_tail") or runs[-1].get("summary") or "failed")[-600:]}
            return {
                "startup_s": statistics.median(r["first_call"] for r in ok),
                "configured_to_first_test_s": statistics.median(r["first_call"] - r["configured"] for r in ok),
                "runs": len(ok),
            }

        reps = runner.params.startup_reps
        entry["sqlsandbox_cold"] = measure("sqlsandbox", reps)
        if warm_supported:
            entry["sqlsandbox_warm"] = measure("sqlsandbox", reps)  # the cold runs left the cache behind
        else:
            entry["sqlsandbox_warm"] = "n/a until template cache lands (the plugin builds the schema every run)"
        entry["no_isolation_create_all"] = measure("no_isolation", 1)
        _drop_templates(target, runner)
        entry["template_clone_cold"] = measure("template_clone", 1)
        entry["template_clone_warm"] = measure("template_clone", 1)
        results["targets"][target.key] = entry

        def get(key: str, entry: dict[str, Any] = entry) -> str:
            value = entry[key]
            return ms(value.get("startup_s") if isinstance(value, dict) else None, 2)

        print(
            f"  {target.key:11s} sqlsandbox {get('sqlsandbox_cold')} s (warm: "
            f"{get('sqlsandbox_warm') if warm_supported else 'n/a, no template cache'}); "
            f"no isolation + create_all {get('no_isolation_create_all')} s; "
            f"template_clone cold {get('template_clone_cold')} s, warm {get('template_clone_warm')} s",
            flush=True,
        )
    return results


def xdist_phase(runner: Runner, targets: list[Target]) -> dict[str, Any]:
    """The database-bound variant (every test also waits xdist_sleep_ms in the database), -n 0 vs -n 2."""
    results: dict[str, Any] = {
        "tests": runner.params.xdist_tests,
        "sleep_ms_per_test": runner.params.xdist_sleep_ms,
        "targets": {},
    }
    sqlsandbox = STRATEGIES[0]
    for target in targets:
        if target.family == "sqlite":
            results["targets"][target.key] = (
                "skipped: SQLite has no server-side sleep to make the suite database-bound"
            )
            continue
        if target.key == "pg-asyncpg":
            continue  # one PostgreSQL driver is enough for this one
        suite = runner.work / f"suite-xdist-{target.family}"
        generate.generate(
            suite, runner.params.xdist_tests, sleep_ms=runner.params.xdist_sleep_ms, family=target.family
        )
        entry: dict[str, Any] = {}
        for n in ("0", "2"):
            data = runner.pytest(suite, target, sqlsandbox, "function", extra=("-n", n))
            entry[f"n{n}"] = {
                "wall_s": data["wall"],
                "returncode": data["returncode"],
                "summary": data["summary"],
                "test_phase_s": (data["last_end"] - data["first_setup"])
                if data.get("last_end") is not None and data.get("first_setup") is not None
                else None,
            }
        entry["speedup_wall"] = ratio(entry["n0"]["wall_s"], entry["n2"]["wall_s"])
        entry["speedup_test_phase"] = ratio(entry["n0"]["test_phase_s"], entry["n2"]["test_phase_s"])
        entry.update(_break_even(entry))
        results["targets"][target.key] = entry
        print(
            f"  {target.key:11s} -n 0: {entry['n0']['wall_s']:.1f}s  -n 2: {entry['n2']['wall_s']:.1f}s  "
            f"speed-up {fmt_ratio(entry['speedup_wall'])} "
            f"(tests only: {fmt_ratio(entry['speedup_test_phase'])})",
            flush=True,
        )
    return results


def _break_even(entry: dict[str, Any]) -> dict[str, Any]:
    """The fixed costs (start-up, worker spawn, provisioning) and how long a serial suite must run for -n 2
    to reach 1.7x in wall time, at the measured test-phase speed-up."""
    n0, n2 = entry["n0"], entry["n2"]
    if not n0.get("test_phase_s") or not n2.get("test_phase_s"):
        return {}
    fixed0 = n0["wall_s"] - n0["test_phase_s"]
    fixed2 = n2["wall_s"] - n2["test_phase_s"]
    speed = n0["test_phase_s"] / n2["test_phase_s"]
    out: dict[str, Any] = {"fixed_s_n0": fixed0, "fixed_s_n2": fixed2}
    if speed > 1.7:
        out["serial_test_s_needed_for_1_7x"] = max((1.7 * fixed2 - fixed0) / (1 - 1.7 / speed), 0.0)
    return out


# ---- reporting ------------------------------------------------------------------------------------


def add_ratios(rows: list[dict[str, Any]]) -> None:
    """Per (target, kind): net overhead (minus the floor's), ratios of overhead and wall time to sqlsandbox."""
    index = {(r["target"], r["strategy"], r["loop"]): r for r in rows if "skipped" not in r}
    for row in rows:
        if "skipped" in row:
            continue
        ref = index.get((row["target"], "sqlsandbox", row["loop"]))
        floor = index.get((row["target"], "no_isolation", row["loop"]))
        bare = index.get((row["target"], "bare_recipe", row["loop"]))
        for kind in ("sync", "async"):
            stats = row.get(kind)
            if not stats:
                continue
            if floor and floor.get(kind):
                stats["net_overhead_median_ms"] = (
                    stats["overhead_median_ms"] - floor[kind]["overhead_median_ms"]
                )
            if ref and ref.get(kind):
                stats["x_sqlsandbox_overhead"] = ratio(
                    stats["overhead_median_ms"], ref[kind]["overhead_median_ms"]
                )
                stats["x_sqlsandbox_p90"] = ratio(stats["overhead_p90_ms"], ref[kind]["overhead_p90_ms"])
        if ref:
            n_ref = ref.get("n_tests") or 1
            fixed = (row["wall_s"] or 0) - (row.get("test_phase_s") or 0)
            projected = fixed + (row.get("test_phase_s") or 0) * n_ref / max(row["n_tests"], 1)
            row["wall_projected_s"] = projected
            row["x_sqlsandbox_wall"] = ratio(projected, ref["wall_s"])
        if bare and row["strategy"] == "sqlsandbox":
            for kind in ("sync", "async"):
                if row.get(kind) and bare.get(kind):
                    row[kind]["x_bare_overhead"] = ratio(
                        row[kind]["overhead_median_ms"], bare[kind]["overhead_median_ms"]
                    )
                    row[kind]["x_bare_test"] = ratio(row[kind]["test_median_ms"], bare[kind]["test_median_ms"])


def print_table(rows: list[dict[str, Any]]) -> str:
    head = (
        f"{'database':11s} {'kind':5s} {'strategy':22s} {'loops':8s} {'overhead ms':>11s} {'p90':>8s} "
        f"{'net':>8s} {'x sqlsb':>8s} {'body ms':>8s} {'N':>4s} {'wall s':>7s} {'wall@N':>7s} {'x sqlsb':>8s}"
    )
    lines = [head, "-" * len(head)]
    for target in dict.fromkeys(r["target"] for r in rows):
        for kind in ("sync", "async"):
            for row in rows:
                if row["target"] != target:
                    continue
                if "skipped" in row:
                    if kind == "sync":
                        lines.append(f"{target:11s} {'':5s} {row['strategy']:22s} skipped: {row['skipped']}")
                    continue
                if kind == "sync" and row["loop"] == "session":
                    continue  # sync tests do not use the loop: the function-loop run is the reference
                stats = row.get(kind)
                if not stats:
                    lines.append(
                        f"{target:11s} {kind:5s} {row['strategy']:22s} {row['loop']:8s} "
                        f"no data: {row['summary']}"
                    )
                    continue
                flag = "" if not row["failed"] and row["returncode"] == 0 else f"  ({row['summary']})"
                lines.append(
                    f"{target:11s} {kind:5s} {row['strategy']:22s} {row['loop']:8s} "
                    f"{ms(stats['overhead_median_ms'], 3):>11s} {ms(stats['overhead_p90_ms'], 3):>8s} "
                    f"{ms(stats.get('net_overhead_median_ms'), 3):>8s} "
                    f"{fmt_ratio(stats.get('x_sqlsandbox_overhead')):>8s} "
                    f"{ms(stats['body_median_ms']):>8s} {row['n_tests']:>4d} {ms(row['wall_s'], 1):>7s} "
                    f"{ms(row.get('wall_projected_s'), 1):>7s} "
                    f"{fmt_ratio(row.get('x_sqlsandbox_wall')):>8s}{flag}"
                )
        lines.append("")
    text = "\n".join(lines)
    print(text)
    return text


def evaluate_targets(
    rows: list[dict[str, Any]], startup: dict[str, Any], xdist: dict[str, Any]
) -> list[dict[str, Any]]:
    """The issue's targets, reported (never asserted)."""
    index = {(r["target"], r["strategy"], r["loop"]): r for r in rows if "skipped" not in r}
    checks: list[dict[str, Any]] = []

    def stat(target: str, strategy: str, loop: str, kind: str, key: str) -> float | None:
        row = index.get((target, strategy, loop))
        return (row or {}).get(kind, {}).get(key)

    targets = list(dict.fromkeys(r["target"] for r in rows))
    noise = 0.05  # ms: differences of medians below this are within run-to-run noise here
    for t in targets:
        for kind, loop in (("sync", "function"), ("async", "function"), ("async", "session")):
            sb = stat(t, "sqlsandbox", loop, kind, "overhead_median_ms")
            bare = stat(t, "bare_recipe", loop, kind, "overhead_median_ms")
            sb_net = stat(t, "sqlsandbox", loop, kind, "net_overhead_median_ms")
            bare_net = stat(t, "bare_recipe", loop, kind, "net_overhead_median_ms")
            r = ratio(sb, bare)
            r_net = ratio(sb_net, bare_net) if (sb_net or 0) > 0 else None
            delta = None if sb is None or bare is None else sb - bare
            checks.append(
                {
                    "target": f"sqlsandbox overhead within 1.3x of the bare recipe: {t} {kind} ({loop} loops)",
                    "value": f"{ms(sb, 3)} vs {ms(bare, 3)} ms = {fmt_ratio(r)}; net of the floor "
                    f"{ms(sb_net, 3)} vs {ms(bare_net, 3)} ms = {fmt_ratio(r_net)}; "
                    f"{'+' if (delta or 0) >= 0 else ''}{ms(delta, 3)} ms per test",
                    "met": None if r is None else r <= 1.3,
                    "ratio": r,
                    "ratio_net": r_net,
                    "delta_ms": delta,
                }
            )
    for t in [x for x in targets if x.startswith("pg")]:
        for kind, sb_loop in (("sync", "function"), ("async", "function"), ("async", "session")):
            sb = stat(t, "sqlsandbox", sb_loop, kind, "overhead_median_ms")
            for other, goal in (("truncate", 100), ("template_clone", 100), ("drop_create", 200)):
                r = ratio(stat(t, other, "function", kind, "overhead_median_ms"), sb)
                where = (
                    ""
                    if sb_loop == "function"
                    else " (sqlsandbox on session loops; the other on function loops)"
                )
                checks.append(
                    {
                        "target": f">= {goal}x below {other}: {t} {kind}{where}",
                        "value": fmt_ratio(r),
                        "met": None if r is None else r >= goal,
                        "ratio": r,
                    }
                )
    for t in targets:
        sb = stat(t, "sqlsandbox", "function", "async", "overhead_median_ms")
        net = stat(t, "sqlsandbox", "function", "async", "net_overhead_median_ms")
        checks.append(
            {
                "target": f"async, function-scoped loops, <= 2 ms overhead: {t}",
                "value": f"{ms(sb, 3)} ms with the per-test connection; {ms(net, 3)} ms above the no-isolation "
                "floor (which opens the same connection)",
                "met": None if sb is None else sb <= 2.0,
                "met_net": None if net is None else net <= 2.0,
            }
        )
        sess = stat(t, "sqlsandbox", "session", "async", "overhead_median_ms")
        bare = stat(t, "bare_recipe", "session", "async", "overhead_median_ms")
        r = ratio(sess, bare)
        checks.append(
            {
                "target": f"async, session loop, at the bare-recipe cost: {t}",
                "value": f"{ms(sess, 3)} vs {ms(bare, 3)} ms = {fmt_ratio(r)}",
                "met": None if r is None else (r <= 1.3 or (sess - bare) <= noise),
            }
        )
    for t, entry in startup.get("targets", {}).items():
        warm = entry.get("sqlsandbox_warm")
        value = warm.get("startup_s") if isinstance(warm, dict) else None
        checks.append(
            {
                "target": f"warm start-up < 0.5 s on the 20-table schema: {t}",
                "value": f"{ms(value, 3)} s" if value is not None else str(warm),
                "met": None if value is None else value < 0.5,
            }
        )
    for t, entry in xdist.get("targets", {}).items():
        if not isinstance(entry, dict):
            continue
        checks.append(
            {
                "target": f"-n 2 at least 1.7x faster than -n 0 (database-bound suite): {t}",
                "value": f"{fmt_ratio(entry['speedup_wall'])} wall, "
                f"{fmt_ratio(entry['speedup_test_phase'])} tests only",
                "met": None if entry["speedup_wall"] is None else entry["speedup_wall"] >= 1.7,
            }
        )
    return checks


def chart(rows: list[dict[str, Any]], path: Path) -> str | None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as exc:
        return f"no chart: {exc} (pip install matplotlib)"
    order = [s.key for s in STRATEGIES]
    targets = list(dict.fromkeys(r["target"] for r in rows))
    panels = [
        ("sync", "function", "sync tests"),
        ("async", "function", "async tests, function-scoped loops (default)"),
        ("async", "session", "async tests, session-scoped loops"),
    ]
    fig, axes = plt.subplots(1, len(panels), figsize=(17, 6), sharey=True)
    colors = ["#1f77b4", "#17becf", "#ff7f0e", "#2ca02c"]
    height = 0.8 / max(len(targets), 1)
    for ax, (kind, loop, title) in zip(axes, panels, strict=True):
        for ti, target in enumerate(targets):
            ys, xs, errs = [], [], []
            for si, strategy in enumerate(order):
                row = next(
                    (
                        r
                        for r in rows
                        if r["target"] == target and r["strategy"] == strategy and r.get("loop") == loop
                    ),
                    None,
                )
                stats = (row or {}).get(kind)
                if not stats:
                    continue
                ys.append(si + ti * height - 0.4 + height / 2)
                xs.append(stats["overhead_median_ms"])
                errs.append(max(stats["overhead_p90_ms"] - stats["overhead_median_ms"], 0))
            ax.barh(
                ys,
                xs,
                height=height,
                xerr=[[0] * len(errs), errs],
                color=colors[ti % 4],
                label=target if ax is axes[0] else None,
                error_kw={"elinewidth": 0.8, "capsize": 1.5},
            )
        ax.set_xscale("log")
        ax.set_title(title, fontsize=10)
        ax.set_xlabel("ms per test (median; whisker to p90), log scale")
        ax.grid(axis="x", which="both", alpha=0.3)
    axes[0].set_yticks(range(len(order)))
    axes[0].set_yticklabels(order)
    axes[0].invert_yaxis()
    fig.legend(loc="lower center", ncol=len(targets), fontsize=9, frameon=False)
    fig.suptitle(
        "Per-test isolation overhead by strategy: setup + teardown (+ sqlsandbox's lazy connect), "
        "test body excluded"
    )
    fig.tight_layout(rect=(0, 0.05, 1, 1))
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return None


def versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    out = {"python": platform.python_version()}
    for pkg in (
        "sqlsandbox",
        "SQLAlchemy",
        "pytest",
        "pytest-asyncio",
        "pytest-xdist",
        "psycopg",
        "asyncpg",
        "PyMySQL",
        "asyncmy",
        "aiosqlite",
        "pytest-postgresql",
        "pytest-mock-resources",
    ):
        try:
            out[pkg] = version(pkg)
        except PackageNotFoundError:
            out[pkg] = "not installed"
    return out


def server_versions(targets: list[Target]) -> dict[str, str]:
    from sqlalchemy import create_engine, text
    from sqlalchemy.engine import make_url
    from sqlalchemy.pool import NullPool

    out: dict[str, str] = {}
    for t in targets:
        if t.family == "sqlite":
            import sqlite3

            out["sqlite"] = sqlite3.sqlite_version
            continue
        if t.family in out:
            continue
        url = make_url(t.server)
        url = (
            url.set(drivername="postgresql+psycopg", database="postgres")
            if t.family == "postgresql"
            else url.set(drivername="mysql+pymysql")
        )
        engine = create_engine(url, poolclass=NullPool)
        with engine.connect() as conn:
            out[t.family] = str(conn.execute(text("SELECT version()")).scalar())
            if t.family == "postgresql":
                out["postgresql_fsync"] = str(conn.execute(text("SHOW fsync")).scalar())
                out["postgresql_synchronous_commit"] = str(
                    conn.execute(text("SHOW synchronous_commit")).scalar()
                )
        engine.dispose()
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--quick", action="store_true", help="small suites: checks the harness in about a minute"
    )
    parser.add_argument(
        "--only", nargs="*", help="database/driver keys to run (pg-psycopg pg-asyncpg mariadb sqlite)"
    )
    parser.add_argument("--skip", nargs="*", default=[], choices=["matrix", "startup", "xdist", "profile"])
    parser.add_argument("--keep", action="store_true", help="keep the generated suites and raw timings")
    parser.add_argument(
        "--from-json", action="store_true", help="only re-render table, latest.md and chart from latest.json"
    )
    args = parser.parse_args()
    if args.from_json:
        results = json.loads((RESULTS / "latest.json").read_text())
        report(results)
        (RESULTS / "latest.json").write_text(json.dumps(results, indent=2, default=str))
        return 0
    params = QUICK if args.quick else Params()

    started = time.perf_counter()
    RESULTS.mkdir(exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="sqlsandbox-bench-"))
    notes: list[str] = []
    targets: list[Target] = []
    for target in TARGETS:
        if args.only and target.key not in args.only:
            continue
        if target.server and not reachable(target.server):
            notes.append(f"{target.key}: server not reachable at {target.server}; left out")
            continue
        targets.append(target)
    for note in notes:
        print("NOTE:", note)

    suite = work / "suite"
    files = generate.generate(suite, params.n_fast)
    print(
        f"suite: {params.n_fast} tests ({params.n_fast // 2} sync, {params.n_fast // 2} async), 20 tables, "
        f"{generate.SEED_ROWS} seed rows each; slow strategies run the first {params.n_slow} tests; in {work}"
    )
    results: dict[str, Any] = {
        "generated_at": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "machine": {
            "cpus": os.cpu_count(),
            "platform": platform.platform(),
            "load_average_at_start": os.getloadavg(),
        },
        "versions": versions(),
        "servers": server_versions(targets),
        "params": {
            "n_fast": params.n_fast,
            "n_slow": params.n_slow,
            "startup_reps": params.startup_reps,
            "xdist_tests": params.xdist_tests,
            "xdist_sleep_ms": params.xdist_sleep_ms,
            "profile_tests": params.profile_tests,
            "quick": args.quick,
        },
        "method": (
            "overhead = setup + teardown of each test (pytest phases, outermost hook wrapper) plus, for "
            "sqlsandbox, the lazy connection open inside the test body; body = the rest of the call phase; "
            "statistics over all tests but each run's first and last; net = overhead minus the no-isolation "
            "floor's (same database, kind, loop scope); ratios are to sqlsandbox at the same loop scope; "
            "wall@N projects a smaller slow-strategy suite to the fast suite's N."
        ),
        "notes": notes,
    }
    runner = Runner(work, params)
    try:
        rows: list[dict[str, Any]] = []
        if "matrix" not in args.skip:
            print("\n== per-test overhead: every strategy x database/driver")
            rows = main_matrix(runner, suite, files, targets)
            add_ratios(rows)
        results["runs"] = rows
        startup: dict[str, Any] = {}
        if "startup" not in args.skip:
            print("\n== start-up (launch to first test body)")
            startup = startup_phase(runner, suite, files, targets)
        results["startup"] = startup
        xdist: dict[str, Any] = {}
        if "xdist" not in args.skip:
            print(
                f"\n== -n 2 vs -n 0, sqlsandbox, database-bound suite "
                f"({params.xdist_sleep_ms} ms in the database per test)"
            )
            xdist = xdist_phase(runner, targets)
        results["xdist"] = xdist
        if "profile" not in args.skip and any(t.key == "pg-psycopg" for t in targets):
            import profile_hotpath

            print("\n== profile of sqlsandbox's per-test path (PostgreSQL)")
            results["profile"] = profile_hotpath.run(runner, next(t for t in targets if t.key.startswith("pg")))
    finally:
        if targets:
            dropped = cleanup_databases(targets)
            results["cleanup_dropped"] = dropped
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)

    results["elapsed_s"] = time.perf_counter() - started
    results["machine"]["load_average_at_end"] = os.getloadavg()
    report(results)
    (RESULTS / "latest.json").write_text(json.dumps(results, indent=2, default=str))
    print(
        f"\nwrote {RESULTS / 'latest.json'}, latest.md, overhead.png and profile.txt "
        f"in {results['elapsed_s']:.0f}s"
    )
    failed = [r for r in rows if "skipped" not in r and r.get("returncode") not in (0, None)]
    for row in failed:
        print(f"FAILED: {row['target']} {row['strategy']} ({row['loop']} loops): {row['summary']}")
    return 1 if failed else 0


def versus_bare_lines(rows: list[dict[str, Any]]) -> list[str]:
    """sqlsandbox minus the bare recipe, per phase: where the plugin's cost is (medians, ms)."""
    index = {(r["target"], r["strategy"], r["loop"]): r for r in rows if "skipped" not in r}
    lines = [
        "| database | kind | loops | setup+teardown | body | whole test | whole test x bare |",
        "|---|---|---|---|---|---|---|",
    ]
    for target in dict.fromkeys(r["target"] for r in rows):
        for kind, loop in (("sync", "function"), ("async", "function"), ("async", "session")):
            sb = (index.get((target, "sqlsandbox", loop)) or {}).get(kind)
            bare = (index.get((target, "bare_recipe", loop)) or {}).get(kind)
            if not sb or not bare:
                continue

            def d(key: str, sb: dict[str, Any] = sb, bare: dict[str, Any] = bare) -> str:
                return f"{sb[key]:.2f} vs {bare[key]:.2f} ({sb[key] - bare[key]:+.2f})"

            lines.append(
                f"| {target} | {kind} | {loop} | {d('overhead_median_ms')} | {d('body_median_ms')} | "
                f"{d('test_median_ms')} | {fmt_ratio(ratio(sb['test_median_ms'], bare['test_median_ms']))} |"
            )
    return lines


def startup_lines(startup: dict[str, Any]) -> list[str]:
    cols = [
        ("sqlsandbox_cold", "sqlsandbox (cold)"),
        ("sqlsandbox_warm", "sqlsandbox (warm)"),
        ("no_isolation_create_all", "no isolation + create_all"),
        ("template_clone_cold", "template_clone cold"),
        ("template_clone_warm", "template_clone warm"),
    ]
    lines = ["| database | " + " | ".join(label for _, label in cols) + " |", "|---" * (len(cols) + 1) + "|"]
    for target, entry in startup.get("targets", {}).items():
        cells = []
        for key, _ in cols:
            value = entry.get(key)
            if isinstance(value, dict) and "startup_s" in value:
                cells.append(
                    f"{value['startup_s']:.2f} s ({value['configured_to_first_test_s']:.2f} s after configure)"
                )
            elif isinstance(value, dict):
                cells.append("failed")
            else:
                cells.append("n/a" if value else "-")
        lines.append(f"| {target} | " + " | ".join(cells) + " |")
    return lines


def report(results: dict[str, Any]) -> None:
    """Print the table and targets; write results/latest.md and results/overhead.png."""
    rows = results.get("runs", [])
    print("\n== results (ms per test; overhead = setup + teardown [+ sqlsandbox's lazy connect]; see README)")
    table = print_table(rows) if rows else ""
    results["table"] = table
    startup = results.get("startup", {})
    xdist = results.get("xdist", {})
    checks = evaluate_targets(rows, startup, xdist)
    results["targets"] = checks
    versus = versus_bare_lines(rows)
    print(
        "== sqlsandbox vs the bare recipe, median ms per test (difference); "
        "the body runs sqlsandbox's per-statement guards"
    )
    for line in versus:
        print("  " + line)
    if startup.get("targets"):
        print("\n== start-up: launch to first test body (pytest_configure to first test body)")
        for line in startup_lines(startup):
            print("  " + line)
    print("\n== targets (reported, not asserted)")
    marks = {True: "met ", False: "MISS", None: " -  "}
    for check in checks:
        print(f"  [{marks[check['met']]}] {check['target']}: {check['value']}")
    problem = chart(rows, RESULTS / "overhead.png") if rows else "no runs"
    if problem:
        results["chart"] = problem
        print("NOTE:", problem)
    versions_line = ", ".join(f"{k} {v}" for k, v in results.get("versions", {}).items())
    md = [
        "# sqlsandbox benchmark: latest results",
        "",
        f"Generated {results.get('generated_at')} by `make bench` in {results.get('elapsed_s', 0):.0f} s; "
        f"{results.get('machine', {}).get('cpus')} CPUs, load average at start "
        f"{', '.join(f'{x:.2f}' for x in results.get('machine', {}).get('load_average_at_start', []))}.",
        "",
        f"Versions: {versions_line}.",
        "",
        f"Servers: {'; '.join(f'{k}: {v}' for k, v in results.get('servers', {}).items())}.",
        "",
        "Method: " + str(results.get("method", "")),
        "",
        "![per-test isolation overhead](overhead.png)",
        "",
        "## Per-test overhead and wall time",
        "",
        "```",
        table.rstrip(),
        "```",
        "",
        "## sqlsandbox vs the bare recipe, by phase",
        "",
        "Median ms per test, sqlsandbox vs bare recipe (difference). The body is not counted as isolation",
        "overhead, but under sqlsandbox it runs the plugin's engine events on every statement and a savepoint",
        "per unit of work.",
        "",
        *versus,
        "",
        "## Start-up",
        "",
        *startup_lines(startup),
        "",
        str(startup.get("note", "")),
        "",
        "## -n 2",
        "",
        "```",
        json.dumps(xdist, indent=2, default=str),
        "```",
        "",
        "## Targets (reported, never asserted)",
        "",
        *[f"- **{marks[c['met']].strip() or '-'}** {c['target']}: {c['value']}" for c in checks],
        "",
    ]
    if results.get("notes"):
        md += ["## Notes", "", *[f"- {n}" for n in results["notes"]], ""]
    (RESULTS / "latest.md").write_text("\n".join(md))


if __name__ == "__main__":
    sys.exit(main())
