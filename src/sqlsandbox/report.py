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

    def record(self, box: Sandbox, overhead: float) -> None:
        """Count a closed sandbox (one that never touched the database counts only its problems)."""
        used = box.flavor is not None
        self.tests_with_db += used
        self.statements += box.statements
        self.problems += len(box.problems)
        if used:
            self.per_test.append((box.nodeid, box.statements, overhead))

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
        if run.removed_stale:
            stale = run.removed_stale
            out.append((f"Cleaned up after killed runs ({len(stale)}): {', '.join(stale)}", False))
        if run.interrupted:
            ended = f"ended its {run.killed} open connection(s), then " if run.killed else ""
            out.append((f"Interrupted: sqlsandbox {ended}dropped {run.database_name}.", False))
        if run.finish_error:
            out.append((f"The end-of-run check failed: {run.finish_error}", True))
        for table, (before, now) in sorted(run.leftovers.items()):
            out.append(
                (f"LEAK: table {table} has {now} row(s) after the run, {before} after the schema build", True)
            )
        if run.metadatas and not run.leftovers and not run.interrupted:  # not checked after Ctrl-C
            out.append(("Every table is as the schema build left it.", False))
        return out
