"""What the doctor found: one Finding per thing to change, in the plan section it belongs to."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

# The plan's sections, in the order they are printed.
DELETE = "delete"  # sqlsandbox does this: the lines can go
REWRITE = "rewrite"  # an anti-pattern: the fix is a better test
CLASH = "clash"  # sqlsandbox cannot configure around it: a human decides
KEEP = "keep"  # works under sqlsandbox as it is: said so that nobody rewrites it
NOT_IMPORTED = "not-imported"  # an app module that failed to import: the plan is partial until fixed
ADD = "add"  # a warning beside the ini lines (an empty metadata)
SECTIONS = (ADD, NOT_IMPORTED, DELETE, REWRITE, CLASH, KEEP)


@dataclass(frozen=True)
class Finding:
    file: str  # relative to the project root, '/'-separated: stable across machines
    line: int
    end_line: int  # for deletions the whole range to delete (a fixture's decorators included)
    kind: str
    section: str
    message: str
    fix: str
    replacement: str | None = None  # text to put in place of the deleted range (a one-line alias fixture)

    def sort_key(self) -> tuple[str, int, int, str]:
        return (self.file, self.line, self.end_line, self.kind)

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        if data["replacement"] is None:
            del data["replacement"]
        return data
