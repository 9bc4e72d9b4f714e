"""The plan, rendered: plain text for a terminal (stable: sections in a fixed order, findings by file then
line) and JSON for tools (the findings and the exact ini lines)."""

from __future__ import annotations

import json
import textwrap
from dataclasses import dataclass, field

from .findings import ADD, CLASH, DELETE, KEEP, NOT_IMPORTED, REWRITE, Finding
from .inspect_app import AppInspection
from .project import IniFile

HEADINGS = {
    DELETE: "Delete (sqlsandbox does this)",
    REWRITE: "Rewrite (anti-patterns)",
    CLASH: "Clashes (sqlsandbox cannot configure around these)",
    KEEP: "Keep (works under sqlsandbox as it is)",
    NOT_IMPORTED: "Not imported (the plan misses what these define)",
}
ORDER = (NOT_IMPORTED, DELETE, REWRITE, CLASH, KEEP)
WIDTH = 100


@dataclass
class Plan:
    project: str  # the project folder's name
    ini: IniFile
    ini_name: str  # the ini file relative to the project
    ini_lines: list[str]
    already_set: list[str]  # sqlsandbox keys the ini sets already: left as they are
    findings: list[Finding] = field(default_factory=list)

    def sorted_findings(self) -> list[Finding]:
        return sorted(self.findings, key=Finding.sort_key)

    def count(self, section: str) -> int:
        return sum(f.section == section for f in self.findings)


def ini_lines(ini: IniFile, app: AppInspection, existing: dict[str, object]) -> tuple[list[str], list[str]]:
    """The lines to add, in the file's own syntax, and the keys left alone because the ini sets them."""
    wanted: list[tuple[str, str | list[str]]] = []
    if app.server_url:
        wanted.append(("sqlsandbox_url", app.server_url))
    if app.metadatas:
        wanted.append(("sqlsandbox_metadata", [m.spec for m in app.metadatas]))
    if app.binds:
        wanted.append(("sqlsandbox_bind", [b.spec for b in app.binds]))
    if len(app.asgi_apps) == 1:  # the app behind the asgi_client fixture; with several, the test picks
        wanted.append(("sqlsandbox_asgi_app", app.asgi_apps[0].spec))
    lines: list[str] = []
    kept: list[str] = []
    for key, value in wanted:
        if key in existing:
            kept.append(key)
        elif ini.style == "pyproject":
            lines.append(f"{key} = {json.dumps(value)}")
        elif isinstance(value, list):
            lines.append(f"{key} =")
            lines.extend(f"    {entry}" for entry in value)
        else:
            lines.append(f"{key} = {value}")
    return lines, kept


def render_text(plan: Plan) -> str:
    out = [f"sqlsandbox doctor: conversion plan for {plan.project}/", ""]
    where = f"{plan.ini_name}, under {plan.ini.section}" + ("" if plan.ini.exists else " (a new section)")
    if plan.ini_lines:
        out.append(f"Add to {where}:")
        out.extend(f"    {line}" for line in plan.ini_lines)
    else:
        found = "nothing new" if plan.already_set else "nothing (no engine, session factory or metadata found)"
        out.append(f"Add to {where}: {found}")
    for key in plan.already_set:
        out.append(f"    ({key} is set already: left as it is)")
    findings = plan.sorted_findings()
    for finding in (f for f in findings if f.section == ADD):
        out.extend(_finding(finding, "!"))
    for section in ORDER:
        chosen = [f for f in findings if f.section == section]
        if chosen:
            out += ["", f"{HEADINGS[section]}:"]
            for finding in chosen:
                out.extend(_finding(finding, "-"))
    out += ["", summary(plan)]
    return "\n".join(out) + "\n"


def _finding(finding: Finding, bullet: str) -> list[str]:
    where = f"{finding.file}:{finding.line}"
    if finding.end_line > finding.line:
        where += f"-{finding.end_line}"
    lines = textwrap.wrap(
        f"{where}  {finding.message}",
        WIDTH,
        initial_indent=f"  {bullet} ",
        subsequent_indent="      ",
        break_on_hyphens=False,
    )
    arrow = "better: " if finding.section == REWRITE else "fix: " if finding.section in (CLASH, ADD) else ""
    arrow = "instead: " if finding.section == DELETE else arrow
    lines += textwrap.wrap(
        f"{arrow}{finding.fix}",
        WIDTH,
        initial_indent="      -> ",
        subsequent_indent="         ",
        break_on_hyphens=False,
    )
    if finding.replacement:
        lines.append("      put in its place:")
        lines.extend(f"        {line}" for line in finding.replacement.splitlines())
    return lines


def summary(plan: Plan) -> str:
    parts = [
        f"{len(plan.ini_lines)} ini line{'s' * (len(plan.ini_lines) != 1)} to add",
        f"{plan.count(DELETE)} to delete",
        f"{plan.count(REWRITE)} to rewrite",
        f"{plan.count(CLASH)} clash{'es' * (plan.count(CLASH) != 1)}",
    ]
    if plan.count(ADD):
        parts.append(f"{plan.count(ADD)} warning{'s' * (plan.count(ADD) != 1)}")
    if plan.count(NOT_IMPORTED):
        parts.append(f"{plan.count(NOT_IMPORTED)} module(s) not imported")
    return "Summary: " + ", ".join(parts) + "."


def render_json(plan: Plan) -> str:
    data = {
        "ini": {
            "file": plan.ini_name,
            "section": plan.ini.section,
            "section_exists": plan.ini.exists,
            "lines": plan.ini_lines,
            "already_set": plan.already_set,
        },
        "findings": [f.to_json() for f in plan.sorted_findings()],
        "summary": summary(plan),
    }
    return json.dumps(data, indent=2) + "\n"
