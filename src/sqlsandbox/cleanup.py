"""`pytest --sqlsandbox-clean`: remove what runs killed in other hosts or containers left behind.

Every run removes by itself what killed runs on this host left, since their pid is gone (Mark.is_stale).
What a run in another host or container left cannot be judged so: its pid means nothing here, and that run
may still be going. On demand, this drops those of the project's databases that are older than a limit
(24 hours unless told) and that nobody is connected to. A kept schema template stays (later runs clone it,
and each run keeps at most 8 per name) unless --sqlsandbox-clean-templates asks for those unused for some
days, or all; a test database a run kept as the user asked (sqlsandbox_keep_db) stays unless
--sqlsandbox-clean-kept names it. A database without our mark is never listed, let alone touched.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy.exc import DBAPIError

from . import dialects, embedded
from .config import CLEAN_DEFAULT_HOURS, CLEAN_KEPT, CLEAN_TEMPLATES, Settings
from .dialects import Provisioner, safe_url
from .errors import ConfigError, SandboxError
from .marks import Mark


@dataclass(frozen=True)
class Verdict:
    name: str
    drop: bool
    why: str


def parse_hours(raw: str) -> float:
    try:
        hours = float(raw)
    except ValueError:
        hours = math.nan
    if math.isnan(hours) or hours < 0:
        raise ConfigError(
            f"--sqlsandbox-clean={raw!r}: the age limit is not a number of hours.",
            fix=f"write --sqlsandbox-clean for {CLEAN_DEFAULT_HOURS} hours, or e.g. --sqlsandbox-clean=6 "
            "(with '=': the value is optional).",
        )
    return hours


def parse_days(raw: str) -> float:
    """--sqlsandbox-clean-templates' limit in seconds: 'all' is 0 (every template is old enough)."""
    if raw.strip().lower() == "all":
        return 0.0
    try:
        days = float(raw)
    except ValueError:
        days = math.nan
    if math.isnan(days) or days < 0:
        raise ConfigError(
            f"{CLEAN_TEMPLATES}={raw!r}: the limit is neither a number of days nor 'all'.",
            why="it drops the schema templates no run has cloned for that many days.",
            fix=f"write e.g. {CLEAN_TEMPLATES}=30, or {CLEAN_TEMPLATES}=all to drop every template.",
        )
    return days * 86400


def parse_kept(raw: str | None) -> bool | frozenset[str]:
    """--sqlsandbox-clean-kept's names (comma-separated); True: every kept database; False: none."""
    if raw is None:
        return False
    names = frozenset(part for part in raw.replace(",", " ").split() if part)
    return True if not names or names == {"all"} else names


def span(seconds: float) -> str:
    if seconds < 2 * 3600:
        return f"{seconds / 60:.0f} min"
    if seconds < 48 * 3600:
        return f"{seconds / 3600:.0f} h"
    return f"{seconds / 86400:.0f} days"


def judge(
    name: str,
    mark: Mark,
    older_than: float,
    now: float,
    *,
    templates_unused: float | None = None,
    drop_kept: bool | frozenset[str] = False,
) -> Verdict:
    """Whether a database of ours may go, and why, from its mark alone (what is connected is asked later).

    templates_unused: drop the built templates no run cloned for that many seconds (None: keep them all);
    drop_kept: drop the test databases kept as the user asked (True: all, or those named)."""
    age = max(0.0, now - mark.at)  # marks round to the second
    if mark.is_kept_template:
        used = f"last used {span(age)} ago"
        if templates_unused is None:
            return Verdict(name, False, f"a schema template: later runs clone it ({used})")
        if age < templates_unused:
            limit = f"{CLEAN_TEMPLATES}={templates_unused / 86400:g}"
            return Verdict(name, False, f"a schema template {used}: later runs clone it ({limit})")
        return Verdict(name, True, f"a schema template {used}")
    if mark.is_kept:
        kept = f"kept as the user asked (sqlsandbox_keep_db), made on {mark.host} {span(age)} ago"
        if drop_kept is True or (drop_kept and _named(name, drop_kept)):
            return Verdict(name, True, kept)
        return Verdict(name, False, f"{kept}: {CLEAN_KEPT}={name} drops it")
    if mark.made_here:
        if mark.is_stale:
            return Verdict(name, True, f"made here by pid {mark.pid}, which is gone")
        return Verdict(name, False, f"made here by pid {mark.pid}, which is still running")
    made = f"made on {mark.host} {span(age)} ago"
    if age < older_than:
        return Verdict(name, False, f"{made}: its run may still be going (limit {span(older_than)})")
    return Verdict(name, True, made)


def _named(name: str, names: frozenset[str]) -> bool:
    """Whether a database is among names, by its name or (a SQLite folder) the folder's own name."""
    return name in names or Path(name).name in names


def clean(
    provisioner: Provisioner,
    older_than: float,
    now: float | None = None,
    *,
    templates_unused: float | None = None,
    drop_kept: bool | frozenset[str] = False,
) -> Iterator[Verdict]:
    """Judge each of the project's databases and drop those that may go, unless someone uses them; one
    database's failure is its verdict, not the end of the clean-up."""
    now = time.time() if now is None else now
    try:
        found = provisioner.project_databases()
    except DBAPIError as exc:
        raise SandboxError(
            f"sqlsandbox could not list the databases on {safe_url(provisioner.server_url)}: "
            f"{_first_line(exc.orig)}",
            why="--sqlsandbox-clean reads the database list and each database's mark of ours.",
            fix="run it as a user that may list databases and read them (the user the test runs use).",
        ) from None
    for name, mark in found:
        verdict = judge(name, mark, older_than, now, templates_unused=templates_unused, drop_kept=drop_kept)
        if verdict.drop:
            try:
                busy = provisioner.drop_if_unused(name, mark)
            except Exception as exc:  # a driver error, wrapped or not: this database is kept, say why
                busy = f"dropping it failed: {_first_line(getattr(exc, 'orig', None) or exc)}"
            if busy:
                verdict = Verdict(name, False, f"{verdict.why}, but {busy}")
        yield verdict


def _first_line(exc: BaseException | None) -> str:
    return str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__


def lines(
    settings: Settings,
    raw_hours: str,
    cache_dir: Path | None,
    *,
    raw_templates: str | None = None,
    raw_kept: str | None = None,
) -> Iterator[str]:
    """What `pytest --sqlsandbox-clean` prints, a database at a time as it goes."""
    older_than = parse_hours(raw_hours) * 3600
    templates_unused = parse_days(raw_templates) if raw_templates is not None else None
    drop_kept = parse_kept(raw_kept)
    url = dialects.parse_url(settings.url)
    base = dialects.base_name(url)
    if embedded.is_embedded(url):
        yield (
            f"sqlsandbox: nothing to clean for {safe_url(url)}: the embedded server is this "
            "machine's own, and each run removes what killed runs left in it (a server left running "
            "included)."
        )
        return
    provisioner = dialects.provisioner_for(url, cache_dir)
    where = safe_url(url) if settings.url else "embedded SQLite"
    dropped = kept = 0
    seen: set[str] = set()
    for verdict in clean(provisioner, older_than, templates_unused=templates_unused, drop_kept=drop_kept):
        seen |= {verdict.name, Path(verdict.name).name}
        if dropped + kept == 0:
            yield f"sqlsandbox: databases of {base}'s runs on {where}:"
        dropped, kept = dropped + verdict.drop, kept + (not verdict.drop)
        yield f"  {'dropped' if verdict.drop else 'kept   '}  {verdict.name}  {verdict.why}"
    if dropped + kept == 0:
        yield f"sqlsandbox: no database of {base}'s runs on {where}."
    else:
        yield f"{dropped} dropped, {kept} kept."
    if isinstance(drop_kept, frozenset) and drop_kept - seen:  # a typo must not pass for done
        yield f"{CLEAN_KEPT}: no database of {base}'s runs is named {', '.join(sorted(drop_kept - seen))}."
