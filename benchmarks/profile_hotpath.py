"""cProfile of sqlsandbox's per-test path: what the benchmark counts as overhead, on PostgreSQL.

A generated suite of 500 sync and 500 async tests runs under the plugin with the profiler switched on only
during each test's setup and teardown and the sandbox's lazy connection open (bench_timing.py, BENCH_PROFILE):
once with pytest-asyncio's default function-scoped loops and once with session-scoped loops. The top entries
by cumulative and by own time go to benchmarks/results/profile.txt.
"""

from __future__ import annotations

import io
import pstats
import site
import sys
from pathlib import Path
from typing import Any

import generate

HERE = Path(__file__).resolve().parent
TOP = 15


def _files(suite: Path, n: int) -> list[Path]:
    files = sorted((suite / "tests").glob("test_*.py"))
    return files[: max(2, n // generate.TESTS_PER_FILE)]


def _clean(text: str) -> str:
    for prefix in sorted(
        {*site.getsitepackages(), str(HERE.parent / "src"), sys.prefix, sys.base_prefix}, key=len, reverse=True
    ):
        text = text.replace(prefix.rstrip("/") + "/", "")
    return text


def _top(path: Path, sort: str, n: int, only: str | None = None) -> str:
    buf = io.StringIO()
    stats = pstats.Stats(str(path), stream=buf)
    if only:
        stats.sort_stats(sort).print_stats(only, n)
    else:
        stats.sort_stats(sort).print_stats(n)
    lines = buf.getvalue().splitlines()
    start = next((i for i, line in enumerate(lines) if "ncalls" in line), 0)
    header = [line for line in lines[:start] if "function calls" in line or "List reduced" in line]
    return _clean("\n".join(header + lines[start:]).rstrip())


FIXTURES = {
    "sandbox",
    "db_session",
    "async_db_session",
    "db_connection",
    "async_db_connection",
    "_sqlsandbox_autouse",
}


def _share(path: Path) -> tuple[float, float]:
    """(seconds in sqlsandbox's fixtures and its lazy open, inclusive of what they call; all profiled seconds).

    Counted from the entry points only (the plugin's fixtures, Sandbox._open_root), so time re-entering
    sqlsandbox through SQLAlchemy's greenlet bridge or contextlib is not counted twice.
    """
    stats = pstats.Stats(str(path))
    raw: dict[Any, Any] = stats.stats  # type: ignore[attr-defined]
    inside = 0.0
    for (filename, _line, func), (_cc, _nc, _tt, ct, callers) in raw.items():
        if "sqlsandbox" not in filename:
            continue
        if filename.endswith("plugin.py") and func in FIXTURES:
            inside += ct
        elif func == "_open_root":  # the lazy open; only the calls not made from sqlsandbox's own fixtures
            inside += ct - sum(c[3] for caller, c in callers.items() if "sqlsandbox" in caller[0])
    return inside, stats.total_tt  # type: ignore[attr-defined]


def _own_time(path: Path) -> float:
    """Seconds in sqlsandbox's own Python code (tottime: its callees, SQLAlchemy and drivers, excluded)."""
    raw: dict[Any, Any] = pstats.Stats(str(path)).stats  # type: ignore[attr-defined]
    return sum(
        tt for (filename, _l, _f), (_cc, _nc, tt, _ct, _callers) in raw.items() if "sqlsandbox" in filename
    )


def _short(key: tuple[str, int, str]) -> str:
    filename, line, func = key
    return _clean(f"{filename}:{line}({func})")


def _bodies(runner: Any, suite: Path, files: list[Path], target: Any, summary: dict[str, Any]) -> str:
    """The test bodies under the plugin vs under the bare recipe: which calls sqlsandbox adds per test.

    Under cProfile the per-call overhead of the profiler distorts times, so the comparison is by the number of
    function calls (the plugin's in-body cost is many small calls: engine events, call-site lookups, the unit
    stack), with own times alongside.
    """
    import run as bench

    profiles: dict[str, Path] = {}
    tests: dict[str, dict[str, int]] = {}
    for strategy in (bench.STRATEGIES[0], next(s for s in bench.STRATEGIES if s.key == "bare_recipe")):
        prefix = runner.work / f"profile-bodies-{strategy.key}"
        data = runner.pytest(suite, target, strategy, "function", files, profile=prefix, profile_phase="call")
        profiles[strategy.key] = prefix
        kinds = [t.get("kind") for t in data.get("tests", [])]
        tests[strategy.key] = {k: kinds.count(k) for k in ("sync", "async")}
    parts = []
    for kind in ("sync", "async"):
        sb_path = Path(f"{profiles['sqlsandbox']}.{kind}.prof")
        bare_path = Path(f"{profiles['bare_recipe']}.{kind}.prof")
        if not sb_path.exists() or not bare_path.exists():
            continue
        n = max(tests["sqlsandbox"][kind], 1)
        sb_stats = pstats.Stats(str(sb_path))
        bare_stats = pstats.Stats(str(bare_path))
        sb_raw: dict[Any, Any] = sb_stats.stats  # type: ignore[attr-defined]
        bare_raw: dict[Any, Any] = bare_stats.stats  # type: ignore[attr-defined]
        extra_calls = (sb_stats.total_calls - bare_stats.total_calls) / n  # type: ignore[attr-defined]
        own = _own_time(sb_path)
        rows = []
        for key in set(sb_raw) | set(bare_raw):
            sb_nc, sb_tt = (sb_raw[key][1], sb_raw[key][2]) if key in sb_raw else (0, 0.0)
            bare_nc, bare_tt = (bare_raw[key][1], bare_raw[key][2]) if key in bare_raw else (0, 0.0)
            rows.append(((sb_nc - bare_nc) / n, (sb_tt - bare_tt) * 1000 / n, _short(key)))
        rows.sort(reverse=True)
        table = "\n".join(f"{calls:10.1f} {own_ms:10.4f}   {name}" for calls, own_ms, name in rows[:20])
        summary[f"{kind}/bodies"] = {
            "tests": n,
            "extra_calls_per_test_vs_bare": extra_calls,
            "own_ms_in_sqlsandbox_per_test_profiled": own * 1000 / n,
            "top_extra_calls": [f"{c:.1f}/test {name}" for c, _o, name in rows[:8]],
        }
        parts.append(
            f"{'=' * 100}\n{kind} test BODIES, sqlsandbox vs the bare recipe (function-scoped loops, {n} tests "
            f"each): sqlsandbox makes {extra_calls:.0f} more Python function calls per test; "
            f"own time in its code {own * 1000 / n:.3f} ms per test (profiled)\n\n"
            f"-- functions by extra calls per test under sqlsandbox (negative: fewer)\n"
            f"{'calls/test':>10s} {'own ms':>10s}   function\n{table}\n\n"
            f"-- top {TOP} by own time, sqlsandbox's own functions, in the bodies\n"
            f"{_top(sb_path, 'tottime', TOP, only='sqlsandbox/')}\n"
        )
        print(
            f"  {kind} test bodies: sqlsandbox makes {extra_calls:.0f} more calls per test than the bare recipe"
        )
    return "\n".join(parts)


def run(runner: Any, target: Any) -> dict[str, Any]:
    import run as bench

    suite = runner.work / "suite-profile"
    generate.generate(suite, runner.params.profile_tests, family=target.family)
    sections: list[str] = []
    summary: dict[str, Any] = {}
    for loop in ("function", "session"):
        prefix = runner.work / f"profile-{loop}"
        data = runner.pytest(suite, target, bench.STRATEGIES[0], loop, profile=prefix, profile_phase="overhead")
        stats = bench.summarize(data)
        kinds = ["sync", "async"] if loop == "function" else ["async"]
        for kind in kinds:
            path = Path(f"{prefix}.{kind}.prof")
            if not path.exists():
                summary[f"{kind}/{loop}"] = f"no profile ({data.get('summary')})"
                continue
            title = f"{kind} tests ({loop}-scoped loops)" if kind == "async" else "sync tests"
            per = stats.get(kind, {})
            n = [t.get("kind") for t in data.get("tests", [])].count(kind)
            inside, total = _share(path)
            sections.append(
                f"{'=' * 100}\n{title}: {n} tests on {target.key}; overhead median "
                f"{per.get('overhead_median_ms', float('nan')):.3f} ms in this run, profiler on "
                f"(setup {per.get('setup_median_ms', float('nan')):.3f}, teardown "
                f"{per.get('teardown_median_ms', float('nan')):.3f}, lazy open "
                f"{per.get('lazy_open_median_ms', float('nan')):.3f})\n"
                f"time in sqlsandbox's fixtures and lazy open (with the SQLAlchemy/driver work they do): "
                f"{inside * 1000:.1f} ms of {total * 1000:.1f} ms profiled "
                f"({100 * inside / max(total, 1e-9):.0f}%); "
                f"the rest is pytest, pluggy, pytest-asyncio and the timing plugin\n"
                f"(cProfile does not follow greenlet switches exactly: read the split as approximate)\n\n"
                f"-- top {TOP} by cumulative time, sqlsandbox's own functions\n"
                f"{_top(path, 'cumulative', TOP, only='sqlsandbox/')}\n\n"
                f"-- top {TOP} by cumulative time, everything\n{_top(path, 'cumulative', TOP)}\n\n"
                f"-- top {TOP} by own time, everything\n{_top(path, 'tottime', TOP)}\n"
            )
            summary[f"{kind}/{loop}"] = {
                "tests": n,
                "ms_in_sqlsandbox_per_test": inside * 1000 / max(n, 1),
                "ms_profiled_per_test": total * 1000 / max(n, 1),
                "top_cumulative_sqlsandbox": _top(path, "cumulative", 10, only="sqlsandbox/"),
            }
            print(f"  {title}: profiled {n} tests")
    sections.append(
        _bodies(runner, suite, _files(suite, runner.params.profile_tests * 2 // 5), target, summary)
    )
    header = (
        "sqlsandbox per-test hot path: cProfile over setup + teardown + the sandbox's lazy connection open\n"
        "(the test bodies are profiled separately, at the end).\n"
        "Timings are inflated by the profiler: read the order.\n"
        f"suite: {runner.params.profile_tests} generated tests (half sync, half async), "
        f"20-table schema, on {target.key}.\n"
    )
    out = HERE / "results" / "profile.txt"
    out.write_text(header + "\n" + "\n".join(sections))
    summary["file"] = str(out.relative_to(HERE.parent))
    return summary
