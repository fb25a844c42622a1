"""The setup commands: database, data, and a summary of where everything is."""

from __future__ import annotations

import argparse
from urllib.parse import urlsplit

from sqlalchemy import text

from lung_model.data import dvc
from lung_model.platform import db
from lung_model.settings import get_settings


def redact(url: str) -> str:
    """A URL safe to print: the password replaced."""
    parts = urlsplit(url)
    if parts.password:
        return url.replace(f":{parts.password}@", ":***@", 1)
    return url


def cli_migrate(args: argparse.Namespace) -> int:
    url = db.database_url()
    applied = db.migrate(url)
    print(f"database {redact(url)}: applied {applied or 'nothing (up to date)'}")
    return 0


def cli_data(args: argparse.Namespace) -> int:
    version = dvc.import_dataset(source=args.source)
    print(f"data/raw is data version {version}; DVC remote {get_settings().dvc_remote_url}")
    return 0


def cli_stop_db(args: argparse.Namespace) -> int:
    stopped = db.stop_embedded(get_settings())
    print("embedded PostgreSQL stopped" if stopped else "no embedded PostgreSQL was running")
    return 0


def cli_info(args: argparse.Namespace) -> int:
    settings = get_settings()
    url = db.database_url(settings)
    with db.engine_for(url).connect() as connection:
        counts = {
            table: connection.execute(text(f"SELECT count(*) FROM {table}")).scalar()  # noqa: S608
            for table in ("scan_batches", "predictions", "reviews", "promotion_events")
        }
    lines = {
        "database": redact(url),
        "mlflow": settings.tracking_uri(),
        "LUNG_HOME": str(settings.home),
        "inbox": str(settings.inbox),
        "data version": dvc.data_version(),
        "DVC remote": settings.dvc_remote_url,
        "rows": ", ".join(f"{table} {n}" for table, n in counts.items()),
    }
    for key, value in lines.items():
        print(f"{key:>13}  {value}")
    return 0
