"""Command line entry point: ``python -m atom "task"``."""

from __future__ import annotations

import argparse
import asyncio
import json
import logging

import atom.models  # noqa: F401  (register every model before the mappers are configured)
from atom.core.atom_meta_agent import AtomMetaAgent
from atom.core.database import Base, engine


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="atom", description="Run a task through Atom.")
    parser.add_argument("task", help="the task to perform")
    parser.add_argument("--complexity", type=int, default=1, help="action complexity (1-4)")
    args = parser.parse_args(argv)

    logging.basicConfig(level=logging.INFO)
    Base.metadata.create_all(engine)
    result = asyncio.run(AtomMetaAgent().execute(args.task, complexity=args.complexity))
    print(json.dumps(result, indent=2, default=str))
    return 0 if result["status"] == "success" else 1


if __name__ == "__main__":
    raise SystemExit(main())
