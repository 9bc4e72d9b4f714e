"""Start-up: what a run pays before its first test, with the schema built (cold) and cloned from the kept
template (warm), side by side in one run.

One project: the benchmark's 20-table schema, built either by create_all or by 20 alembic migrations (one
table each), and a single test. For each database it runs pytest with --sqlsandbox-rebuild (cold: the schema
is built, as every run did before templates) and without (warm: cloned), REPEAT times each, and reports the
median wall time of the whole pytest process, the schema step the plugin reports, and the ratio cold/warm.
A run with the plugin disabled gives pytest's own floor. Last, the embedded PostgreSQL server alone: its first
start in a new data folder (initdb, then start), a start on a folder an earlier run left, and its stop.

    .venv/bin/python benchmarks/startup.py      # writes benchmarks/results/startup.md
"""

from __future__ import annotations

import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"
sys.path.insert(0, str(HERE))

import generate  # noqa: E402

REPEAT = 5
PG = os.environ.get("SQLSANDBOX_BENCH_POSTGRES", "postgresql://postgres@127.0.0.1:5432")
MARIA = os.environ.get("SQLSANDBOX_BENCH_MARIADB", "mysql://root@127.0.0.1:3306")
DATABASES = [
    ("SQLite", None),
    ("PostgreSQL (psycopg)", f"{PG.replace('postgresql://', 'postgresql+psycopg://')}/startup"),
    ("MariaDB (pymysql)", f"{MARIA.replace('mysql://', 'mysql+pymysql://')}/startup"),
    ("embedded PostgreSQL", "postgresql+embedded:///startup"),
]

ENV_PY = """
from alembic import context
connection = context.config.attributes["connection"]
context.configure(connection=connection, target_metadata=None)
with context.begin_transaction():
    context.run_migrations()
"""

MIGRATION = """
from alembic import op
import bench_models

revision = "{rev}"
down_revision = {down}

def upgrade():
    bench_models.Base.metadata.tables["{table}"].create(op.get_bind())
"""


def write_project(dest: Path, migrations: bool) -> None:
    (dest / "bench_models.py").write_text(generate.models_source())
    (dest / "test_one.py").write_text("def test_one(db_session):\n    pass\n")
    ini = "[pytest]\npythonpath = .\nasyncio_default_fixture_loop_scope = function\n"
    ini += "sqlsandbox_metadata = bench_models:Base\n"
    if migrations:
        versions = dest / "migrations" / "versions"
        versions.mkdir(parents=True)
        (dest / "migrations" / "env.py").write_text(ENV_PY)
        down = "None"
        for i, (table, _) in enumerate(generate.TABLES):
            rev = f"r{i:02d}"
            (versions / f"{rev}_{table}.py").write_text(MIGRATION.format(rev=rev, down=down, table=table))
            down = repr(rev)
        (dest / "alembic.ini").write_text("[alembic]\nscript_location = migrations\n")
        ini += "sqlsandbox_alembic = alembic.ini\n"
    (dest / "pytest.ini").write_text(ini)


def run(dest: Path, url: str | None, *args: str) -> tuple[float, float | None]:
    env = {k: v for k, v in os.environ.items() if k != "SQLSANDBOX_URL"}
    if url:
        env["SQLSANDBOX_URL"] = url
    started = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:randomly", *args],
        cwd=dest,
        env=env,
        capture_output=True,
        text=True,
    )
    wall = time.perf_counter() - started
    if proc.returncode != 0:
        raise SystemExit(f"pytest failed in {dest} ({url}):\n{proc.stdout[-2000:]}{proc.stderr[-2000:]}")
    found = re.search(r"schema (?:built|cloned from template \S+) in ([\d.]+) s", proc.stdout)
    return wall, float(found.group(1)) if found else None


def main() -> int:
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        floor_dir = Path(tmp, "floor")
        floor_dir.mkdir()
        (floor_dir / "test_one.py").write_text("def test_one():\n    pass\n")
        floor = statistics.median(run(floor_dir, None, "-p", "no:sqlsandbox")[0] for _ in range(REPEAT))
        for migrations in (False, True):
            for label, url in DATABASES:
                dest = Path(tmp, f"{'alembic' if migrations else 'create_all'}-{len(rows)}")
                dest.mkdir()
                write_project(dest, migrations)
                cold = [run(dest, url, "--sqlsandbox-rebuild") for _ in range(REPEAT)]
                warm = [run(dest, url) for _ in range(REPEAT)]
                row = (
                    "alembic (20 migrations)" if migrations else "create_all",
                    label,
                    statistics.median(w for w, _ in cold),
                    statistics.median(w for w, _ in warm),
                    statistics.median(s for _, s in cold if s is not None),
                    statistics.median(s for _, s in warm if s is not None),
                )
                rows.append(row)
                print(f"{row[0]:24} {label:22} cold {row[2]:.2f} s  warm {row[3]:.2f} s", flush=True)
    lines = [
        "# Start-up: schema built vs cloned from the kept template",
        "",
        f"Median of {REPEAT} runs of a one-test project (20 tables) per cell; pytest alone (plugin disabled): "
        f"{floor:.2f} s. 'schema step' is the plugin's own timing of building (cold) or finding and cloning "
        "(warm) the test database's schema.",
        "",
        "| schema source | database | cold run | warm run | cold/warm | schema step cold | schema step warm |",
        "|---|---|---|---|---|---|---|",
    ]
    for source, label, cold_wall, warm_wall, cold_step, warm_step in rows:
        lines.append(
            f"| {source} | {label} | {cold_wall:.2f} s | {warm_wall:.2f} s | {cold_wall / warm_wall:.2f}x "
            f"| {cold_step:.2f} s | {warm_step:.2f} s |"
        )
    lines += ["", *embedded_server_lines()]
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "startup.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


def embedded_server_lines() -> list[str]:
    """Times EmbeddedPostgres.start and stop, each in a private temp folder so no other run's slot counts."""
    from sqlalchemy.engine import make_url

    from sqlsandbox import embedded

    first, again, stop = [], [], []
    for _ in range(REPEAT):
        base = Path(tempfile.mkdtemp(prefix="sqsb-bench-", dir="/tmp"))  # short: the socket lives in it
        base.chmod(0o711)  # under root the server runs as postgres, which must pass through
        saved, tempfile.tempdir = tempfile.tempdir, str(base)
        try:
            for times in (first, again):
                started = time.perf_counter()
                server = embedded.EmbeddedPostgres.start(make_url("postgresql+embedded:///startup"))
                times.append(time.perf_counter() - started)
                started = time.perf_counter()
                server.stop()
                stop.append(time.perf_counter() - started)
        finally:
            tempfile.tempdir = saved
            subprocess.run(["rm", "-rf", str(base)], check=False)
    first_s, again_s, stop_s = (statistics.median(times) for times in (first, again, stop))
    print(f"embedded server: first start {first_s:.2f} s, again {again_s:.2f} s", flush=True)
    return [
        f"## The embedded PostgreSQL server ({server.describe()})",
        "",
        f"Median of {REPEAT}, each in a new private temp folder. First start in a new data folder (initdb, "
        f"then start): {first_s:.2f} s. Start on the folder an earlier run left (every later run): "
        f"{again_s:.2f} s. Stop: {stop_s:.2f} s.",
    ]


if __name__ == "__main__":
    sys.exit(main())
