"""The inbox protocol: which study folders are ready, claiming one, archiving, quarantine.

Under `LUNG_HOME`: a study is a folder in `inbox/`; it is ready when it holds the ready
marker (`LUNG_READY_MARKER`) and, when `LUNG_READY_QUIET_SECONDS` is set, nothing in it has
changed for that long. A scorer claims it with one atomic rename into
`processing/<claim token>/<study>` (only one rename of a folder can succeed, so two scorers
never take the same one) and holds a PostgreSQL advisory lock on the claim while it works,
on the session that commits the claim's batches (`ClaimLock`). The server drops that lock
when the scorer dies, so a folder in `processing/` whose lock is free was stranded by a
killed scorer and the next run takes it up again; a server restart drops it too, and the
scorer takes it again before its next batch (or stops, when another scorer was faster).
Done studies move to `archive/<study>`; files that cannot be scored to
`quarantine/<study>/<path>`.
See https://man7.org/linux/man-pages/man2/rename.2.html and
https://www.postgresql.org/docs/current/explicit-locking.html#ADVISORY-LOCKS
"""

from __future__ import annotations

import hashlib
import logging
import os
import secrets
import stat
import time
from collections.abc import Iterator
from contextlib import closing, contextmanager, suppress
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import psycopg2
from sqlalchemy import Engine
from sqlalchemy.pool import PoolProxiedConnection

from lung_model.settings import Settings

CLAIM_SEPARATOR = "~"
log = logging.getLogger(__name__)


def _newest_change(folder: Path) -> float:
    newest = folder.lstat().st_mtime
    for parent, dirs, files in os.walk(folder):
        for name in dirs + files:
            try:
                newest = max(newest, os.lstat(os.path.join(parent, name)).st_mtime)
            except FileNotFoundError:
                continue  # removed while we looked: it changed just now
    return newest


def ready_problem(
    entry: Path, marker: str, quiet_seconds: float = 0.0, now: float | None = None
) -> str | None:
    """Why an inbox entry is not ready to score, None when it is: a study folder whose ready
    marker is a regular file (a folder or a symbolic link of that name is not: links are never
    followed) and, with a quiet period, where nothing changed for that long. A study folder
    that is itself a link counts as ready: it is claimed only to be quarantined with a reason.
    The one rule of readiness: the scorer claims by it and the DAG's sensor waits on it."""
    if entry.is_symlink():
        return None
    try:
        if not entry.is_dir():
            return "a file, not a study folder"
        try:
            mode = (entry / marker).lstat().st_mode
        except FileNotFoundError:
            return f"no {marker} marker"
        if stat.S_ISLNK(mode):
            return f"{marker} is a symbolic link: not followed"
        if stat.S_ISDIR(mode):
            return f"{marker} is a folder, not a file"
        if not stat.S_ISREG(mode):
            return f"{marker} is not a regular file"
        now = time.time() if now is None else now
        if quiet_seconds > 0 and now - _newest_change(entry) < quiet_seconds:
            return f"changed less than {quiet_seconds:g} s ago"
    except FileNotFoundError:
        return "claimed or removed while we looked"
    return None


def is_ready(folder: Path, settings: Settings, now: float | None = None) -> bool:
    return ready_problem(folder, settings.ready_marker, settings.ready_quiet_seconds, now) is None


def any_ready(inbox: Path, marker: str, quiet_seconds: float = 0.0) -> bool:
    """Whether some entry of `inbox` is ready to score (what the DAG's sensor waits for)."""
    entries = inbox.iterdir() if inbox.is_dir() else iter(())
    return any(ready_problem(entry, marker, quiet_seconds) is None for entry in entries)


def find_ready_studies(settings: Settings, now: float | None = None) -> list[Path]:
    """Folders to score, oldest claim first: those in `processing/` (stranded by a killed
    scorer, or being scored right now: the lock tells) then the ready ones in `inbox/`."""
    settings.ensure_dirs()
    stranded = []
    for claim_dir in sorted(settings.processing.iterdir()):
        entries = sorted(claim_dir.iterdir()) if claim_dir.is_dir() else []
        stranded.extend(entries)
        if not entries:
            _drop_empty_claim(claim_dir, now)
    ready = sorted(p for p in settings.inbox.iterdir() if is_ready(p, settings, now))
    return stranded + ready


def _drop_empty_claim(claim_dir: Path, now: float | None, grace: float = 60.0) -> None:
    """Remove a claim folder a killed scorer left empty (not one being claimed right now)."""
    try:
        if (time.time() if now is None else now) - claim_dir.lstat().st_mtime > grace:
            claim_dir.rmdir()
    except OSError:
        pass  # not empty after all, or gone: someone else's business


@dataclass(frozen=True)
class Waiting:
    name: str
    age_seconds: float  # since anything in it last changed
    why: str


def waiting_folders(settings: Settings, now: float | None = None) -> list[Waiting]:
    """What sits in the inbox and will not be scored yet, with why (`ready_problem`): folders
    without the ready marker or whose marker is not a file, ones still within the quiet
    period, and stray files; oldest first."""
    now = time.time() if now is None else now
    found = []
    for entry in sorted(settings.inbox.iterdir()) if settings.inbox.is_dir() else []:
        why = ready_problem(entry, settings.ready_marker, settings.ready_quiet_seconds, now)
        if why is None:
            continue
        try:
            age = now - (_newest_change(entry) if entry.is_dir() else entry.lstat().st_mtime)
        except FileNotFoundError:
            continue  # claimed or removed while we looked
        found.append(Waiting(entry.name, max(age, 0.0), why))
    return sorted(found, key=lambda waiting: -waiting.age_seconds)


def claim_token() -> str:
    return datetime.now(UTC).strftime("%Y%m%dT%H%M%S") + "-" + secrets.token_hex(3)


def study_name(claimed: Path) -> str:
    """The study as dropped in the inbox (a claim keeps its name)."""
    return claimed.name


def claim_id(claimed: Path) -> str:
    """`<token>/<study>`: unique per claim, the key of its lock and database batch."""
    return f"{claimed.parent.name}/{claimed.name}"


def claim(folder: Path, settings: Settings) -> Path | None:
    """Move an inbox folder to `processing/<token>/<study>`; None when another scorer took it
    first. A folder already in `processing/` is returned as is (its lock holder scores it)."""
    if folder.parent.parent.resolve() == settings.processing.resolve():
        return folder if os.path.lexists(folder) else None
    claim_dir = settings.processing / claim_token()
    claim_dir.mkdir(parents=True)
    target = claim_dir / folder.name
    try:
        os.rename(folder, target)
    except FileNotFoundError:
        claim_dir.rmdir()
        return None
    return target


def _free_path(wanted: Path, token: str) -> Path:
    if not os.path.lexists(wanted):
        return wanted
    return wanted.with_name(f"{wanted.name}{CLAIM_SEPARATOR}{token}")


def archive_destination(claimed: Path, settings: Settings) -> Path:
    """Where a claimed study will be archived: `archive/<study>`, or `<study>~<token>`."""
    return _free_path(settings.archive / claimed.name, claimed.parent.name)


def release(claimed: Path) -> None:
    """Remove the claim's folder once its study has moved on."""
    with suppress(OSError):
        claimed.parent.rmdir()


def archive(claimed: Path, settings: Settings, planned: Path | None = None) -> Path:
    """Move a scored study folder to the archive (to `planned` while that is still free)."""
    settings.archive.mkdir(parents=True, exist_ok=True)
    target = planned if planned and not os.path.lexists(planned) else None
    target = target or archive_destination(claimed, settings)
    os.rename(claimed, target)
    release(claimed)
    return target


def quarantine(entry: Path, relpath: str, claimed: Path, settings: Settings) -> Path:
    """Move one file (or link, never followed) to `quarantine/<study>/<relpath>`."""
    base = settings.quarantine / claimed.name
    target = _free_path(base / relpath if relpath else base, claimed.parent.name)
    target.parent.mkdir(parents=True, exist_ok=True)
    os.rename(entry, target)
    return target


def lock_key(name: str) -> int:
    """A signed 64-bit advisory lock key for a claim."""
    return int.from_bytes(
        hashlib.sha256(f"lung-score:{name}".encode()).digest()[:8], "big", signed=True
    )


class ClaimLock:
    """The advisory lock of one claim, held by one server session that also commits the
    claim's batches (`session`), so a batch can only commit while its scorer holds the claim.

    A server restart ends the session and the lock with it; a second scorer may then take
    the claim up as stranded. `session` finds that out before the next batch: it takes the
    lock again on a new session (a new session, so the lock never stacks), or returns None
    when another scorer holds it now. The lock dies with the process that holds it."""

    def __init__(self, engine: Engine, name: str) -> None:
        self.engine, self.name, self.key = engine, name, lock_key(name)
        self.connection: PoolProxiedConnection | None = None  # the session holding the lock

    def __bool__(self) -> bool:
        return self.connection is not None

    def take(self) -> bool:
        """Take the lock on a new session; False when another session holds it."""
        raw = self.engine.raw_connection()
        try:
            with closing(raw.cursor()) as cursor:
                cursor.execute("SELECT pg_try_advisory_lock(%s)", (self.key,))
                held = bool((cursor.fetchone() or [False])[0])
            raw.commit()  # a session-level lock outlives the transaction that took it
        except BaseException:
            raw.invalidate()
            raise
        if held:
            self.connection = raw
        else:
            raw.close()
        return held

    def _alive(self) -> bool:
        return self.connection is not None and _on_live_session(self.connection, "SELECT 1")

    def _forget(self) -> None:
        raw, self.connection = self.connection, None
        if raw is not None and raw.dbapi_connection is not None:
            raw.invalidate()  # never back to the pool: it may still hold the lock

    def session(self) -> PoolProxiedConnection | None:
        """The live session holding the lock (taken again if the server lost it), or None
        when another scorer holds the claim now."""
        if self._alive():
            return self.connection
        self._forget()
        log.warning("the session holding the lock of claim %s was lost: taking it again", self.name)
        return self.connection if self.take() else None

    def release(self) -> None:
        raw, self.connection = self.connection, None
        if raw is None:
            return
        if _on_live_session(raw, "SELECT pg_advisory_unlock(%s)", self.key):
            raw.close()
            return
        # The server lost this session (a restart) and the lock with it: nothing is left to
        # release. What was written under it is committed.
        log.warning("the session holding the lock of claim %s was lost", self.name)
        if raw.dbapi_connection is not None:
            raw.invalidate()


def _on_live_session(raw: PoolProxiedConnection, sql: str, *params: object) -> bool:
    """Run one statement and commit; False when the server has lost this session."""
    if raw.dbapi_connection is None or raw.dbapi_connection.closed:
        return False
    try:
        with closing(raw.cursor()) as cursor:
            cursor.execute(sql, params)
        raw.commit()
    except (psycopg2.OperationalError, psycopg2.InterfaceError):
        return False
    return True


@contextmanager
def study_lock(engine: Engine, name: str) -> Iterator[ClaimLock]:
    """Hold the advisory lock of a claim for the block; the lock is false when someone else
    holds it."""
    lock = ClaimLock(engine, name)
    lock.take()
    try:
        yield lock
    finally:
        lock.release()
