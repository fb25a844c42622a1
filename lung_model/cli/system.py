"""System commands: start and stop the local services, Airflow's environment, compose
secrets, dashboard accounts."""

from __future__ import annotations

import argparse
import json
import sys

from lung_model.cli.exit_codes import ExitCode
from lung_model.platform import airflow, db, stack
from lung_model.platform.compose_env import COMPOSE_ENV_FILE, write_compose_env
from lung_model.platform.tracking import experiments_url
from lung_model.review.accounts import add_account, ensure_first_account, load_accounts
from lung_model.settings import Settings, get_settings


def print_access(settings: Settings) -> None:
    keys = airflow.airflow_secrets(settings)
    print("\nThe system is up (stop it with `make stop`):")
    print(
        f"  Airflow UI    {settings.airflow_url}   login {airflow.ADMIN_USER} / "
        f"{keys['admin_password']}"
    )
    print(f"  MLflow UI     {experiments_url(settings.mlflow_ui_url)}   (model-training view)")
    if stack.DASHBOARD_APP.exists():
        first = ensure_first_account(settings)
        login = f"{first.username} / {first.password or '(password changed since setup)'}"
        print(f"  Dashboard     {settings.dashboard_url}   login {login}")
    print(
        f"  Inbox         {settings.inbox}   (drop <study>/ folders, then a {settings.ready_marker} file)"
    )
    print(
        f"  DICOM in      {settings.dicom_ae_title}@{settings.dicom_bind_host}:{settings.dicom_port}"
        f"   (calling AE titles allowed: {settings.dicom_allowed_aets})"
    )
    print(
        f"  Logs          {settings.home / 'log'}   secrets in {settings.secrets_dir} (git-ignored)"
    )


def cli_up(args: argparse.Namespace) -> ExitCode:
    settings = get_settings()
    stack.up(settings, report=print)
    print_access(settings)
    return ExitCode.OK


def cli_stop(args: argparse.Namespace) -> ExitCode:
    settings = get_settings()
    for name in stack.down(settings):
        print(f"stopped {name}")
    print("embedded PostgreSQL stopped" if db.stop_embedded(settings) else "no embedded PostgreSQL")
    return ExitCode.OK


def cli_airflow_env(args: argparse.Namespace) -> ExitCode:
    """Print `export` lines: `eval "$(python -m lung_model airflow-env)"; airflow dags list`."""
    for key, value in airflow.environment(get_settings()).items():
        print(f"export {key}={json.dumps(value)}")
    return ExitCode.OK


def cli_compose_env(args: argparse.Namespace) -> ExitCode:
    values = write_compose_env()
    print(f"{COMPOSE_ENV_FILE} holds the compose secrets (git-ignored, mode 0600)")
    print(f"Airflow login after `docker compose up -d`: admin / {values['AIRFLOW_ADMIN_PASSWORD']}")
    return ExitCode.OK


def cli_users(args: argparse.Namespace) -> ExitCode:
    """`python -m lung_model users [add NAME | list]`: manage local dashboard accounts."""
    settings = get_settings()
    if args.action == "add":
        if not args.name:
            print("error: users add needs a NAME", file=sys.stderr)
            return ExitCode.USAGE
        password = add_account(settings, args.name)
        print(f"dashboard account {args.name}: password {password} (shown once)")
        return ExitCode.OK
    for name, account in sorted(load_accounts(settings).items()):
        print(f"{name}  created {account['created_at']}")
    return ExitCode.OK
