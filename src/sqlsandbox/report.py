"""The end-of-run report: what the tests did with the database, and what the run left behind."""

from __future__ import annotations

import statistics
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .run import Run
    from .sandbox import Sandbox


@dataclass
class Report:
    tests_with_db: int = 0
    statements: int = 0
    problems: int = 0
    # per test that used the database: (name, statements, sandbox set-up + tear-down seconds)
    per_test: list[tuple[str, int, float]] = field(default_factory=list)
    # tests that ended their outer transaction past SQLAlchemy: (name, tables put back)
    escapes: list[tuple[str, list[str]]] = field(default_factory=list)
    # work of finished tests refused in a later test's sandbox: ("test (at where)", during which test)
    late_work: list[tuple[str, str]] = field(default_factory=list)

    def record(self, box: Sandbox, overhead: float) -> None:
        """Count a closed sandbox (one that never touched the database counts only its problems)."""
        used = box.flavor is not None
        self.tests_with_db += used
        self.statements += box.statements
        self.problems += len(box.problems)
        if used:
            self.per_test.append((box.nodeid, box.statements, overhead))
        if box.escaped is not None:
            self.escapes.append((box.nodeid, box.restored))
        self.late_work += [(late, box.nodeid) for late in box.late_work]

    def lines(self, run: Run, verbose: bool) -> list[tuple[str, bool]]:
        """The report's lines, each with whether it is bad news (shown in red)."""
        overheads = [o for _, _, o in self.per_test]
        median = f"{statistics.median(overheads) * 1000:.2f} ms" if overheads else "n/a"
        blocked = run.blocker.blocked
        out = [
            (
                f"{self.tests_with_db} test(s) used the database ({run.where}); "
                f"{self.statements} statement(s); {self.problems} sandbox problem(s) and "
                f"{len(blocked)} blocked connection(s) caught; "
                f"sandbox overhead per test {median} (median).",
                False,
            )
        ]
        if verbose:
            top = sorted(self.per_test, key=lambda t: t[1], reverse=True)[:10]
            if top:
                out.append(("Most statements:", False))
                out += [(f"  {count:6d}  {name}  (sandbox {o * 1000:.2f} ms)", False) for name, count, o in top]
            if overheads:
                p90 = sorted(overheads)[int(0.9 * (len(overheads) - 1))] * 1000
                out.append(
                    (
                        f"Sandbox overhead: median {median}, p90 {p90:.2f} ms, "
                        f"max {max(overheads) * 1000:.2f} ms",
                        False,
                    )
                )
            out += [(f"Blocked: {line}", False) for line in blocked[:10]]
        if run.schema_note:
            out.append((f"Test database {run.database_name}: {run.schema_note}.", False))
        if run.kept is not None:
            out.append((f"Kept test database {run.kept.name} (sqlsandbox_keep_db): {_kept_note(run)}", False))
        if run.removed_stale:
            stale = run.removed_stale
            out.append((f"Cleaned up after killed runs ({len(stale)}): {', '.join(stale)}", False))
        if run.interrupted:
            ended = f"ended its {run.killed} open connection(s), then " if run.killed else ""
            out.append((f"Interrupted: sqlsandbox {ended}dropped {run.database_name}.", False))
        if run.finish_error:
            out.append((f"The end-of-run check failed: {run.finish_error}", True))
        for name, tables in self.escapes:
            put_back = f"tables put back: {', '.join(tables)}" if tables else "it had written nothing"
            out.append((f"COMMITTED PAST THE SANDBOX: {name} ({put_back})", True))
        for late, during in self.late_work:
            out.append((f"LATE WORK: a task or thread of {late} outlived it; refused during {during}", True))
        for table, (before, now) in sorted(run.leftovers.items()):
            out.append(
                (f"LEAK: table {table} has {now} row(s) after the run, {before} after the schema build", True)
            )
        if run.leftovers and not self.escapes:
            out.append(
                (
                    "  No test was caught ending its transaction: look for a connection made past "
                    "the sandbox (an engine of the test's own on the test database's URL, a raw driver "
                    "connection).",
                    True,
                )
            )
        if run.metadatas and not run.leftovers and not run.interrupted:  # not checked after Ctrl-C
            out.append(("Every table is as the schema build left it.", False))
        return out


def _kept_note(run: Run) -> str:
    """How to reach and drop the kept database: later runs and --sqlsandbox-clean leave it be."""
    assert run.kept is not None
    if run.embedded is not None:  # the server stops with the run; its data folder is kept for the next
        return (
            f"in the embedded server's data folder {run.embedded.folder / 'data'}, stopped now (start it with "
            "pg_ctl -D on that folder to inspect it); no run drops it, deleting that folder does."
        )
    return (
        "no later run drops it. Drop it with: "
        f"pytest --sqlsandbox-clean-kept={run.kept.name}  (or: {run.kept.drop_command})"
    )
