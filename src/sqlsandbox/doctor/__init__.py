"""`sqlsandbox doctor [PATH] [--json]`: the plan that converts an existing suite to sqlsandbox.

It imports the app the way pytest would (inspect_app), scans the tests and conftests without running them
(scan), and prints what to add to the ini file, what to delete, what to rewrite and what clashes (plan)."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from . import inspect_app, project, scan
from .findings import ADD, Finding
from .plan import Plan, ini_lines, render_json, render_text

__all__ = ["main", "make_plan", "render_json", "render_text"]


def make_plan(root: Path) -> Plan:
    proj = project.load(root)
    first = scan.scan(proj)  # its imports say which app modules the tests use
    app = inspect_app.inspect(proj, first.imported)
    scanned = scan.scan(proj, app.mapped_classes)  # again, now knowing the mapped classes a patch may name
    findings = [*scanned.findings, *app.findings, *scan.testclient_findings(scanned, app.has_async)]
    for entry in app.empty_metadatas:  # where the tests rely on an empty metadata, say so there too
        module, _, attr = entry.spec.partition(":")
        for file, line in scan.imports_of(scanned, module, attr):
            findings.append(_relied_on(inspect_app.empty_metadata_finding(entry, file, line, app)))
    lines, kept = ini_lines(proj.ini, app, proj.values)
    return Plan(proj.root.name, proj.ini, proj.relative(proj.ini.path), lines, kept, findings)


def _relied_on(finding: Finding) -> Finding:
    return Finding(
        finding.file,
        finding.line,
        finding.end_line,
        finding.kind,
        ADD,
        "imported here: " + finding.message,
        finding.fix,
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="sqlsandbox doctor",
        description="Print the plan that converts a project's test suite to sqlsandbox: the ini lines to add, "
        "the fixtures it replaces, the anti-patterns to rewrite and the clashes, each with file:line.",
    )
    parser.add_argument("path", nargs="?", default=".", help="the project root (default: the current folder)")
    parser.add_argument("--json", action="store_true", help="the findings and ini lines as JSON, for tools")
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # argparse exits 2 on a usage error, 0 after --help
        return exc.code if isinstance(exc.code, int) else 2
    root = Path(args.path)
    if not root.is_dir():
        print(f"sqlsandbox doctor: {root} is not a folder (give the project root)", file=sys.stderr)
        return 2
    try:
        plan = make_plan(root)
    except project.UnreadableConfig as exc:
        print(f"sqlsandbox doctor: cannot read the project's pytest configuration: {exc}", file=sys.stderr)
        return 2
    sys.stdout.write(render_json(plan) if args.json else render_text(plan))
    return 0
