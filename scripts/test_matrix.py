"""`make test`: lint, types, then the suite on each database, each in its own pytest run.

SQLite always runs. PostgreSQL and MariaDB run when reachable at the URLs below (override with
SQLSANDBOX_TEST_POSTGRES / SQLSANDBOX_TEST_MARIADB); with CI set, an unreachable one fails the run.

Then the edges of what pyproject admits, each in a venv of its own under .venv-compat/: Python 3.10 with the
lowest versions of SQLAlchemy, pytest and pytest-asyncio, and Python 3.13 with the newest. They run where those
interpreters are found (on PATH or under pyenv); with CI set, a missing one fails the run.

The phases run SQLSANDBOX_TEST_JOBS at a time (default half the cores), longest first by the times the last run
kept in .venv/.test-times.json; some run alone (see runs_alone). Each one's output goes to .venv/test-logs/ and
a line tells when it ends, with the time elapsed and what is left; a table of them all comes at the end.
"""

from __future__ import annotations

import contextlib
import glob
import hashlib
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
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


# (label, python version, pins, database runs): the oldest and the newest of what pyproject admits; each edge on
# SQLite and one server through an async driver (the most version-sensitive part): PostgreSQL on the oldest,
# MariaDB on the newest, so that make test stays inside CI's 90 minutes
COMPAT = [
    (
        "python 3.10, lowest versions",
        "3.10",
        ["SQLAlchemy==2.0.30", "pytest==8.2.*", "pytest-asyncio==1.0.*"],
        [
            ("sqlite", None),
            ("postgresql+asyncpg", driver(PG, "asyncpg")),
        ],
    ),
    (
        "python 3.13, newest versions",
        "3.13",
        [],
        [
            ("sqlite", None),
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
        for recipe in RECIPES:  # in a venv of their own: the frameworks slow every other pytest start
            recipe_dir = ROOT / "examples" / "recipes" / recipe
            steps.append(
                (f"recipe {recipe} on {label}", [str(RECIPES_PY), "-m", "pytest", "-q"], recipe_dir, url)
            )
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

    # phases that wait for another (a venv is built, when out of date, before its suites run)
    after: dict[str, str] = {}
    if not recipes_venv_current():
        steps.insert(0, (RECIPES_VENV_LABEL, [PY, __file__, "--recipes-venv"], ROOT, None))
        after.update({label: RECIPES_VENV_LABEL for label, *_ in steps if label.startswith("recipe ")})
    for label, version, pins, databases in COMPAT:
        found = compat_python(version, pins)
        if found is None:
            if ci:
                print(f"FAIL: no python{version} interpreter for '{label}', and CI requires it.", flush=True)
                return 1
            print(
                f"NOTE: no python{version} for '{label}' (not found): its runs are left out (CI requires them)."
            )
            continue
        python, base = found
        venv_label = f"venv for {label}"
        if base is not None:  # out of date: (re)installed as a phase of its own, before its suites
            steps.append((venv_label, [PY, __file__, "--compat-venv", base, version, *pins], ROOT, None))
        reached = {url.split("+")[0] for _, url in runs if url}
        for db_label, db_url in databases:
            if db_url is None or db_url.split("+")[0] in reached:
                suite = [python, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests"]
                steps.append((f"plugin suite on {label}, {db_label}", suite, ROOT, db_url))
                if base is not None:
                    after[steps[-1][0]] = venv_label

    # locally a compat venv that cannot be installed (no network) leaves its runs out; in CI it fails the run
    optional = set() if ci else set(after.values())
    return run_phases(steps, after, optional)


# ---- running the phases: a small pool, output kept apart, times kept for the next run's estimates ----------

TIMES = ROOT / ".venv" / ".test-times.json"  # label -> seconds it took in the last run
LOGS = ROOT / ".venv" / "test-logs"  # each phase's whole output, from the last run
HEARTBEAT = 60.0  # seconds without a finished phase before what still runs is listed


def jobs() -> int:
    """How many phases run at once: SQLSANDBOX_TEST_JOBS, else half the cores."""
    raw = os.environ.get("SQLSANDBOX_TEST_JOBS", "")
    try:
        # half the cores: each phase's pytest keeps one busy, and the database servers need the rest (on
        # this 2-core machine two at a time measured no faster than one, and timing-bound tests suffered)
        return max(1, int(raw)) if raw.strip() else max(1, (os.cpu_count() or 1) // 2)
    except ValueError:
        print(f"NOTE: SQLSANDBOX_TEST_JOBS={raw!r} is not a number: 1 phase at a time.")
        return 1


def runs_alone(cmd: list[str], cwd: Path) -> bool:
    """Phases that nothing runs beside: xdist ones (-n 2) already use both cores, and ops_core's stress test
    (200 concurrent requests queued on the one sandbox connection) fails its 10 s sqlsandbox_lock_timeout
    when a neighbour takes half the CPU."""
    return "-n" in cmd or cwd.name == "ops_core"


@dataclass
class Phase:
    label: str
    cmd: list[str]
    cwd: Path
    url: str | None
    alone: bool
    after: str | None  # the phase that must pass first
    last: float | None  # seconds it took in the last run
    kin: float | None = None  # with no time yet: the mean of its kind's (the label before " on ")
    optional: bool = False  # its failure leaves out the phases after it, and fails nothing (a compat venv)
    status: str = "waiting"  # waiting, running, ok, FAILED, not run, left out
    seconds: float = 0.0
    started: float = 0.0
    output: str = ""
    proc: subprocess.Popen[bytes] | None = None
    log: Path = field(default_factory=Path)

    @property
    def guess(self) -> float:
        return self.last if self.last is not None else self.kin or 60.0  # a new kind: a minute

    def tail(self, lines: int) -> list[str]:
        return [line for line in self.output.splitlines() if line.strip()][-lines:]


def clock(seconds: float) -> str:
    seconds = max(0, round(seconds))
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds // 3600}h{seconds // 60 % 60:02d}m"


def _slug(label: str) -> str:
    return re.sub(r"[^0-9A-Za-z.+-]+", "_", label).strip("_")


def _load_times() -> dict[str, float]:
    try:
        data = json.loads(TIMES.read_text())
    except (OSError, ValueError):
        return {}
    return {str(k): float(v) for k, v in data.items()} if isinstance(data, dict) else {}


def _save_time(label: str, seconds: float) -> None:
    times = _load_times()
    times[label] = round(seconds, 1)
    with contextlib.suppress(OSError):
        TIMES.write_text(json.dumps(times, indent=1, sort_keys=True) + "\n")


def _left(phases: list[Phase], workers: int, now: float) -> str:
    """What is left: phases, and a time by the last run's durations (a phase with none: see Phase.guess)."""
    pending = [p for p in phases if p.status in ("waiting", "running")]
    if not pending:
        return "none left"
    words = f"{len(pending)} phase{'s' if len(pending) != 1 else ''} left"
    if all(p.last is None for p in phases):
        return words  # a first run: nothing to estimate from
    rest = [(p, max(p.guess - (now - p.started if p.status == "running" else 0), 5.0)) for p in pending]
    shared = sum(t for p, t in rest if not p.alone)
    alone = sum(t for p, t in rest if p.alone)
    return f"{words}, ~{clock(shared / workers + alone)} to go by the last run's times"


def _order(phases: list[Phase]) -> list[Phase]:
    """Longest first (a phase others wait for counts with its longest follower); phases that run alone last."""
    follows: dict[str, float] = {}
    for p in phases:
        if p.after:
            follows[p.after] = max(follows.get(p.after, 0.0), p.guess)
    return sorted(phases, key=lambda p: (p.alone, -(p.guess + follows.get(p.label, 0.0))))


def run_phases(
    steps: list[tuple[str, list[str], Path, str | None]], after: dict[str, str], optional: set[str]
) -> int:
    """Run the steps, `jobs()` at a time, longest first; a step in after waits for the one named there to
    pass; an optional step's failure leaves out those that wait for it, and fails nothing."""
    # Started in the background by a shell without job control (`make test &`, nohup), this process and
    # every phase would inherit SIGINT ignored, and tests/test_interrupt.py's inner runs could not be
    # interrupted: the phases get the default back (a handler here is reset to it in each child).
    if signal.getsignal(signal.SIGINT) == signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)
    workers = jobs()
    times = _load_times()
    phases = [
        Phase(label, cmd, cwd, url, runs_alone(cmd, cwd), after.get(label), times.get(label))
        for label, cmd, cwd, url in steps
    ]
    for p in phases:
        p.optional = p.label in optional
        kind = [
            q.last
            for q in phases
            if q.last is not None and q.label.split(" on ")[0] == p.label.split(" on ")[0]
        ]
        p.kin = sum(kind) / len(kind) if kind else None
    phases = _order(phases)
    total = len(phases)
    LOGS.mkdir(parents=True, exist_ok=True)
    for old in LOGS.glob("*.log"):
        old.unlink()
    known = [p for p in phases if p.last is not None]
    estimate = _left(phases, workers, time.time()).split(", ", 1)[-1] if known else ""
    print(
        f"\nmake test: {total} phases, {workers} at a time (SQLSANDBOX_TEST_JOBS), longest first; "
        "phases marked 'alone' run alone, last"
        + (f"; {estimate}" if estimate else "; no times from an earlier run yet")
    )
    for n, p in enumerate(phases, 1):
        took = f"{p.last:.0f}s last time" if p.last is not None else "no time yet"
        notes = [took] + (["alone"] if p.alone else []) + ([f"after: {p.after}"] if p.after else [])
        print(f"  {n:2}. {p.label}  ({', '.join(notes)})")
    print(f"Each phase's whole output: {LOGS.relative_to(ROOT)}/<phase>.log\n", flush=True)

    begun = time.time()
    done = 0
    last_news = begun

    def start(p: Phase) -> None:
        env = dict(os.environ)
        env.pop("SQLSANDBOX_URL", None)
        if p.url:
            env["SQLSANDBOX_URL"] = p.url
        p.log = LOGS / f"{_slug(p.label)}.log"
        with p.log.open("wb") as out:  # the child keeps its own handle: nothing of it reaches the terminal
            p.proc = subprocess.Popen(p.cmd, cwd=p.cwd, env=env, stdout=out, stderr=subprocess.STDOUT)
        p.status, p.started = "running", time.time()

    def finish(p: Phase, code: int) -> None:
        nonlocal done, last_news
        now = time.time()
        p.seconds = now - p.started
        p.output = p.log.read_text(errors="replace")
        p.status = "ok" if code == 0 else "FAILED"
        if code != 0 and p.optional:
            p.status = "left out"
        _save_time(p.label, p.seconds)
        done += 1
        last_news = now
        print(
            f"[{done}/{total}] {p.label} ... {p.status} ({p.seconds:.1f}s) — elapsed {clock(now - begun)}, "
            f"{_left(phases, workers, now)}"
        )
        for line in p.tail(12) if code else [line for line in p.tail(3) if re.search(RESULT, line)][-1:]:
            print(f"      {line}")
        if code:
            print(f"      whole output: {p.log.relative_to(ROOT)}")
        sys.stdout.flush()

    try:
        while any(p.status in ("waiting", "running") for p in phases):
            running = [p for p in phases if p.status == "running"]
            for p in running:
                code = p.proc.poll() if p.proc else 0
                if code is not None:
                    finish(p, code)
            for p in phases:  # a phase whose prerequisite did not pass is not run
                if p.status == "waiting" and p.after:
                    first = next(q for q in phases if q.label == p.after)
                    if first.status in ("FAILED", "not run", "left out"):
                        p.status = "left out" if first.status == "left out" else "not run"
                        done += 1
                        print(f"[{done}/{total}] {p.label} ... {p.status}: {p.after} did not pass")
            running = [p for p in phases if p.status == "running"]
            for p in phases:
                if p.status != "waiting":
                    continue
                if p.after and next(q for q in phases if q.label == p.after).status != "ok":
                    continue
                if any(q.alone for q in running) or len(running) >= workers or (p.alone and running):
                    break
                start(p)
                running.append(p)
            now = time.time()
            if now - last_news >= HEARTBEAT:
                last_news = now
                what = ", ".join(
                    f"{p.label} ({clock(now - p.started)}" + (f" of ~{clock(p.last)})" if p.last else ")")
                    for p in running
                )
                print(f"      ... elapsed {clock(now - begun)}; running: {what}", flush=True)
            time.sleep(0.2)
    except KeyboardInterrupt:
        for p in phases:
            if p.status == "running" and p.proc:
                p.proc.terminate()
                with contextlib.suppress(subprocess.TimeoutExpired):
                    p.proc.wait(10)
                p.proc.kill()
                p.status = "FAILED"
                p.output = "interrupted"
        print("\ninterrupted")
    return _summary(phases, time.time() - begun, workers)


RESULT = r"\d+ (passed|failed|error)|soak on"


def _summary(phases: list[Phase], wall: float, workers: int) -> int:
    width = max(len(p.label) for p in phases)
    print(f"\n=== make test summary: {len(phases)} phases, {workers} at a time")
    print(f"  {'phase':{width}}  {'status':8} {'seconds':>8}  tests")
    passed_total = failed_total = 0
    for p in sorted(phases, key=lambda p: p.status == "ok"):
        passed, failed = _counts(p.output)
        passed_total, failed_total = passed_total + passed, failed_total + failed
        tests = f"{passed} passed" + (f", {failed} failed" if failed else "") if passed or failed else ""
        seconds = f"{p.seconds:8.1f}" if p.seconds else f"{'-':>8}"
        print(f"  {p.label:{width}}  {p.status:8} {seconds}  {tests}")
    bad = [p for p in phases if p.status not in ("ok", "left out")]
    left_out = [p for p in phases if p.status == "left out"]
    busy = sum(p.seconds for p in phases)
    ok = sum(p.status == "ok" for p in phases)
    print(
        f"{passed_total} passed, {failed_total} failed; {ok} of {len(phases)} phases ok; "
        f"wall time {clock(wall)} (the phases' own times add up to {clock(busy)})"
    )
    for p in bad:
        if p.status == "FAILED":
            print(f"\n--- FAILED: {p.label} (whole output: {p.log.relative_to(ROOT)})")
            print("\n".join(p.tail(30)))
        else:
            print(f"\n--- NOT RUN: {p.label} (after: {p.after})")
    for p in left_out:
        print(f"NOTE: left out: {p.label}" + (f" (after: {p.after})" if p.after else " (see its log)"))
    for p in bad:
        print(f"FAILED: {p.label}" if p.status == "FAILED" else f"NOT RUN: {p.label}")
    return 1 if bad else 0


def find_python(version: str) -> str | None:
    candidates = [shutil.which(f"python{version}") or ""]
    candidates += sorted(glob.glob(os.path.expanduser(f"~/.pyenv/versions/{version}*/bin/python{version}")))
    for candidate in candidates:  # a pyenv shim is on PATH even where its version is not selected
        probe = subprocess.run([candidate, "--version"], capture_output=True) if candidate else None
        if probe is not None and probe.returncode == 0:
            return candidate
    return None


def compat_venv(version: str, pins: list[str]) -> tuple[Path, Path, str]:
    """The venv of one edge of the support range: its folder, its python, and the stamp it is current
    with ((re)installed when pyproject or the pins change)."""
    venv = ROOT / ".venv-compat" / f"py{version.replace('.', '')}"
    # the newest edge is installed afresh each week, so that it stays the newest
    fresh = "" if pins else time.strftime("%G-W%V")
    want = hashlib.sha256((ROOT / "pyproject.toml").read_bytes() + f"{pins} {fresh}".encode()).hexdigest()
    return venv, venv / "bin" / "python", want


def compat_python(version: str, pins: list[str]) -> tuple[str, str | None] | None:
    """The venv's python for one edge of the support range, and the interpreter to (re)install it from
    when it is out of date (None: it is current); None when no such interpreter is found."""
    base = find_python(version)
    if base is None:
        return None
    venv, python, want = compat_venv(version, pins)
    stamp = venv / ".installed"
    current = python.exists() and stamp.exists() and stamp.read_text() == want
    return str(python), None if current else base


def install_compat_venv(base: str, version: str, pins: list[str]) -> int:
    """`test_matrix.py --compat-venv BASE VERSION PINS...`: the phase that (re)installs a compat venv."""
    venv, python, want = compat_venv(version, pins)
    print(f"venv {venv} from {base}", flush=True)
    shutil.rmtree(venv, ignore_errors=True)
    install = [str(python), "-m", "pip", "install", "-q", "-e", f"{ROOT}[dev]", *pins]
    for cmd in ([base, "-m", "venv", str(venv)], install):
        proc = subprocess.run(cmd)
        if proc.returncode != 0:  # e.g. no network
            return proc.returncode
    (venv / ".installed").write_text(want)
    return 0


# The framework recipes (examples/recipes) run in a venv of their own with the `recipes` extra: litestar brings
# Faker and polyfactory, which pytest-randomly imports at every pytest start (about 1 s each, and the plugin
# suite starts hundreds of inner pytest runs).
RECIPES_VENV = ROOT / ".venv-recipes"
RECIPES_PY = RECIPES_VENV / "bin" / "python"
RECIPES_VENV_LABEL = "venv for the recipes"


def _recipes_stamp() -> str:
    return hashlib.sha256((ROOT / "pyproject.toml").read_bytes() + b"recipes").hexdigest()


def recipes_venv_current() -> bool:
    stamp = RECIPES_VENV / ".installed"
    return RECIPES_PY.exists() and stamp.exists() and stamp.read_text() == _recipes_stamp()


def install_recipes_venv() -> int:
    """`test_matrix.py --recipes-venv`: the phase that (re)installs the recipes' venv."""
    shutil.rmtree(RECIPES_VENV, ignore_errors=True)
    install = [str(RECIPES_PY), "-m", "pip", "install", "-q", "-e", f"{ROOT}[dev,recipes]"]
    for cmd in ([PY, "-m", "venv", str(RECIPES_VENV)], install):
        proc = subprocess.run(cmd)
        if proc.returncode != 0:  # e.g. no network
            return proc.returncode
    (RECIPES_VENV / ".installed").write_text(_recipes_stamp())
    return 0


def _counts(output: str) -> tuple[int, int]:
    last = [line for line in output.splitlines() if re.search(r"\d+ (passed|failed)", line)]
    if not last:
        return 0, 0
    line = last[-1]
    passed = re.search(r"(\d+) passed", line)
    failed = re.search(r"(\d+) (failed|error)", line)
    return int(passed.group(1)) if passed else 0, int(failed.group(1)) if failed else 0


if __name__ == "__main__":
    if sys.argv[1:2] == ["--recipes-venv"]:
        sys.exit(install_recipes_venv())
    if sys.argv[1:2] == ["--compat-venv"]:
        sys.exit(install_compat_venv(sys.argv[2], sys.argv[3], sys.argv[4:]))
    sys.exit(main())
