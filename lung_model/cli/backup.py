"""`python -m lung_model backup [DIR] [--keep N]` and `restore DIR [--force]`.

The work is `lung_model.lifecycle.backup` / `.restore`; this prints what they return. After a
restore it also logs in as the dashboard's restricted role (which sets the role's password
from the restored secrets on this server) to show the dashboard will connect.
Exit codes: OK; REFUSED when the target is not empty or there is no usable backup (nothing
changed); DATABASE_UNAVAILABLE; ERROR for anything else (one line; --verbose: traceback).
"""

from __future__ import annotations

import argparse
import sys

from lung_model.cli.exit_codes import ExitCode
from lung_model.settings import Settings, get_settings


def _size(count: float) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if count < 1024 or unit == "GB":
            return f"{count:.0f} {unit}" if unit == "B" else f"{count:.1f} {unit}"
        count /= 1024
    return f"{count:.1f} GB"


def _fail(message: str, code: ExitCode) -> ExitCode:
    print(f"error: {message}", file=sys.stderr)
    return code


def _database_down(error: BaseException) -> bool:
    import psycopg2
    from sqlalchemy.exc import OperationalError

    return isinstance(error, psycopg2.OperationalError | OperationalError)


def cli_backup(args: argparse.Namespace) -> ExitCode:
    from lung_model.lifecycle.backup import backup

    settings = get_settings()
    parent = args.dir or settings.backup_folder
    try:
        result = backup(settings, parent, keep=args.keep)
    except Exception as error:
        if _database_down(error):
            line = str(error).strip().splitlines()[0]
            return _fail(f"database unavailable: {line}", ExitCode.DATABASE_UNAVAILABLE)
        raise
    manifest = result.manifest
    for part in manifest["parts"]:
        if part["included"]:
            print(f"  {part['name']:<17} {_size(part['bytes']):>9}  {part['seconds']:6.2f} s")
        else:
            print(f"  {part['name']:<17} {'-':>9}  {part['note']}: {part['source']}")
    print(
        f"backup {result.folder}: {_size(manifest['bytes'])} in {manifest['seconds']:.1f} s "
        f"(secrets inside: keep it private)"
    )
    for folder in result.pruned:
        print(f"pruned {folder}")
    for warning in result.warnings:
        print(f"warning: {warning}", file=sys.stderr)
    return ExitCode.OK


def dashboard_login(settings: Settings) -> str:
    """Log in as the dashboard's role and read the worklist: what the dashboard will do."""
    from sqlalchemy import text

    from lung_model.review.database import ROLE, dashboard_engine

    with dashboard_engine(settings).connect() as connection:
        studies = connection.execute(text("SELECT count(*) FROM worklist_entries")).scalar_one()
    return f"dashboard role {ROLE} logs in and reads {studies} worklist studies"


def cli_restore(args: argparse.Namespace) -> ExitCode:
    from lung_model.lifecycle.backup import BackupError
    from lung_model.lifecycle.restore import RestoreRefused, restore

    settings = get_settings()
    try:
        result = restore(settings, args.dir, force=args.force)
    except (RestoreRefused, BackupError) as error:
        return _fail(str(error), ExitCode.REFUSED)
    except Exception as error:
        if _database_down(error):
            line = str(error).strip().splitlines()[0]
            return _fail(f"database unavailable: {line}", ExitCode.DATABASE_UNAVAILABLE)
        raise
    for line in result.restored:
        print(f"  restored {line}")
    for line in result.skipped:
        print(f"  skipped  {line}")
    if not settings.dashboard_database_url:
        print(f"  {dashboard_login(settings)}")
    print(f"restored {result.folder} in {result.seconds:.1f} s")
    for warning in result.warnings:
        print(f"warning: {warning}", file=sys.stderr)
    return ExitCode.OK
