"""The `sqlsandbox` command: one subcommand so far, `doctor`."""

from __future__ import annotations

import sys
from collections.abc import Sequence

USAGE = "usage: sqlsandbox doctor [PATH] [--json]"


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] in {"-h", "--help"}:
        print(USAGE, file=sys.stdout if args else sys.stderr)
        return 0 if args else 2
    if args[0] == "doctor":
        from .doctor import main as doctor  # imported on use: `import sqlsandbox` stays light

        return doctor(args[1:])
    print(f"sqlsandbox: unknown command {args[0]!r}\n{USAGE}", file=sys.stderr)
    return 2
