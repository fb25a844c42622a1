"""`make demo` / `make stop`: the whole system on this machine, with embedded defaults.

Starts Airflow (api-server, scheduler, dag-processor, triggerer; LocalExecutor; metadata in
PostgreSQL), the MLflow UI and the review dashboard on 127.0.0.1; runs `lung_retrain` once
unless a champion exists; copies a few real study folders out of `data/raw` (as DVC restored
it) into the inbox and waits while `lung_batch_score` scores them; prints URLs and logins.
Progress is printed as it goes (task states are read from Airflow's metadata database).
See https://airflow.apache.org/docs/apache-airflow/stable/howto/usage-cli.html
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from urllib.parse import urlsplit

from sqlalchemy import create_engine, text

from lung_model.platform import airflow, db, services
from lung_model.settings import PROJECT_ROOT, Settings, get_settings

BIN = Path(sys.executable).parent
DAG_IDS = ("lung_retrain", "lung_batch_score", "lung_feedback", "lung_monitoring")
DASHBOARD_APP = PROJECT_ROOT / "dashboards" / "app.py"


def say(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


def local_services(settings: Settings, env: dict[str, str]) -> list[services.Service]:
    """Everything `make demo` runs, in start order."""
    host = settings.bind_host
    airflow = str(BIN / "airflow")
    mlflow, dashboard = urlsplit(settings.mlflow_ui_url), urlsplit(settings.dashboard_url)
    found = [
        services.Service(
            "airflow-api-server",
            [airflow, "api-server", "--host", host, "--port", env["AIRFLOW__API__PORT"]],
            env,
            f"{settings.airflow_url.rstrip('/')}/api/v2/monitor/health",
        ),
        # Their log servers would listen on every interface (Airflow has no host setting for
        # them); on one machine the api-server reads the task logs from AIRFLOW_HOME itself.
        services.Service("airflow-scheduler", [airflow, "scheduler", "--skip-serve-logs"], env),
        services.Service("airflow-dag-processor", [airflow, "dag-processor"], env),
        services.Service("airflow-triggerer", [airflow, "triggerer", "--skip-serve-logs"], env),
        services.Service(
            "mlflow-ui",
            [str(BIN / "mlflow"), "server", "--backend-store-uri", settings.tracking_uri()]
            + ["--host", host, "--port", str(mlflow.port or 5000), "--workers", "1"],
            {"MLFLOW_TRACKING_URI": settings.tracking_uri()},
            f"{settings.mlflow_ui_url.rstrip('/')}/health",
        ),
    ]
    if DASHBOARD_APP.exists():
        found.append(
            services.Service(
                "dashboard",
                [str(BIN / "streamlit"), "run", str(DASHBOARD_APP), "--server.headless", "true"]
                + ["--server.address", host, "--server.port", str(dashboard.port or 8501)]
                + ["--browser.gatherUsageStats", "false"],
                {"LUNG_HOME": str(settings.home)},
                f"{settings.dashboard_url.rstrip('/')}/_stcore/health",
            )
        )
    return found


def up(settings: Settings) -> dict[str, str]:
    """Bootstrap Airflow's metadata, start every service, wait for them; return the env."""
    say("Airflow metadata database (PostgreSQL) and pools")
    env = airflow.environment(settings)
    airflow.migrate_metadata(env)
    running = local_services(settings, env)
    for service in running:
        pid = services.start(settings, service)
        say(f"{service.name}: pid {pid}, log {services.log_file(settings, service.name)}")
    for service in running:
        services.wait_until_up(settings, service, timeout=180)
    say("all services answer; parsing the DAGs into the metadata database")
    airflow.airflow("dags", "reserialize", env=env)
    return env


def down(settings: Settings) -> list[str]:
    """Stop every service `up` started (in reverse order); return the names stopped."""
    stopped = []
    names = [s.name for s in local_services(settings, {"AIRFLOW__API__PORT": "0"})]
    for name in reversed(names):
        if services.stop(settings, name):
            stopped.append(name)
    return stopped


def _states(
    env: dict[str, str], dag_id: str, run_id: str | None
) -> tuple[str, str, dict[str, str]]:
    """(run id, run state, task states) of the run, or of the DAG's latest run."""
    engine = create_engine(db.sqlalchemy_url(env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"]))
    try:
        with engine.connect() as connection:
            run = connection.execute(
                text("""SELECT run_id, state FROM dag_run WHERE dag_id = :d
                        AND (CAST(:r AS text) IS NULL OR run_id = :r) ORDER BY id DESC LIMIT 1"""),
                {"d": dag_id, "r": run_id},
            ).first()
            if run is None:
                return "", "none", {}
            rows = connection.execute(
                text("""SELECT task_id, map_index, coalesce(state, 'none') FROM task_instance
                        WHERE dag_id = :d AND run_id = :r ORDER BY task_id, map_index"""),
                {"d": dag_id, "r": run[0]},
            ).all()
    finally:
        engine.dispose()
    tasks = {(t if m < 0 else f"{t}[{m}]"): s for t, m, s in rows}
    return str(run[0]), str(run[1]), tasks


def last_output(settings: Settings, dag_id: str, run_id: str, task: str) -> str | None:
    """The newest line the running task printed (e.g. Keras' epoch line), from its log."""
    folder = airflow.airflow_home(settings) / "logs" / f"dag_id={dag_id}" / f"run_id={run_id}"
    logs = sorted((folder / f"task_id={task}").glob("**/attempt=*.log"))
    if not logs:
        return None
    for line in reversed(logs[-1].read_text(errors="replace").splitlines()[-20:]):
        try:
            event = json.loads(line)
        except ValueError:
            continue
        if event.get("logger") == "task.stdout" and event.get("event"):
            return str(event["event"])[:160]
    return None


def watch(
    env: dict[str, str],
    dag_id: str,
    run_id: str | None,
    timeout: float,
    done: Callable[[], bool] | None = None,
) -> str:
    """Print task state changes of the run (or the latest run) until it finishes, or until
    `done()` holds; return the last run state seen."""
    seen: dict[str, str] = {}
    printed: dict[str, str] = {}
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        current, state, tasks = _states(env, dag_id, run_id)
        for task, task_state in tasks.items():
            if seen.get(task) != task_state:
                say(f"  {dag_id} {current} {task}: {task_state}")
            if task_state == "running" and "[" not in task:
                line = last_output(get_settings(), dag_id, current, task)
                if line and line != printed.get(task):
                    say(f"    {task} | {line}")
                    printed[task] = line
        seen = tasks
        if done is not None and done():
            return state
        if done is None and state in ("success", "failed"):
            return state
        time.sleep(5)
    raise TimeoutError(f"{dag_id} did not finish in {timeout:.0f}s")


def trigger(env: dict[str, str], dag_id: str, conf: dict[str, object] | None = None) -> str:
    """Unpause the DAG and trigger a run; return its run id."""
    run_id = f"demo__{time.strftime('%Y%m%dT%H%M%S')}"
    airflow.airflow("dags", "unpause", dag_id, env=env)
    airflow.airflow(
        "dags", "trigger", dag_id, "--conf", json.dumps(conf or {}), "-r", run_id, env=env
    )
    return run_id


def champion_version(settings: Settings) -> str | None:
    from lung_model.platform.tracking import configure_mlflow

    client = configure_mlflow(settings)
    try:
        return str(client.get_model_version_by_alias(settings.model_name, "champion").version)
    except Exception:  # no registered model or no alias yet
        return None


def override_gate(settings: Settings) -> None:
    """No champion after the retrain (the gate rejected the model): for the demo only, promote
    the newest version by operator override, recorded with its reason, and say so loudly."""
    from lung_model.lifecycle.promotion import promote

    reason = "make demo: no champion yet and the gate rejected the newest model"
    decision = promote("latest", reason, settings, actor="make-demo")
    say(
        f"WARNING: the gate rejected the model, so there was no champion. For the demo only, "
        f"version {decision.candidate_version} was promoted by operator override (recorded in "
        f"promotion_events). It did not pass the safety floors: not for clinical use."
    )


def demo_studies(data_dir: Path, per_class: int = 1, slices: int = 8) -> dict[str, list[Path]]:
    """A few study folders of consecutive slices per class, from the labelled data."""
    from lung_model.data.dataset import scan

    labelled, _ = scan(data_dir)
    studies: dict[str, list[Path]] = {}
    for label in ("normal", "benign", "malignant"):
        numbered = [s for s in labelled if s.label == label and s.number is not None]
        for index in range(per_class):
            chunk = numbered[index * slices * 3 : index * slices * 3 + slices]
            if chunk:
                studies[f"demo-{label}-{index + 1}"] = [data_dir / s.path for s in chunk]
    return studies


def drop_into_inbox(settings: Settings, studies: dict[str, list[Path]]) -> list[str]:
    """Copy the files, then write the ready marker last (the inbox protocol)."""
    settings.ensure_dirs()
    for name, files in studies.items():
        folder = settings.inbox / name
        folder.mkdir(parents=True, exist_ok=True)
        for file in files:
            shutil.copyfile(file, folder / file.name)
        (folder / settings.ready_marker).touch()
    return list(studies)


def last_batch_id(settings: Settings) -> int:
    with db.get_engine(settings).connect() as connection:
        return int(
            connection.execute(text("SELECT coalesce(max(id), 0) FROM scan_batches")).scalar_one()
        )


def study_results(
    settings: Settings, names: Iterable[str], after: int = 0
) -> list[tuple[object, ...]]:
    """The batches (newer than `after`) of these studies with their verdicts."""
    with db.get_engine(settings).connect() as connection:
        return list(
            connection.execute(
                text("""SELECT b.study, b.status, b.n_scored, b.n_quarantined,
                               s.predicted_class, round(s.max_p_malignant::numeric, 3),
                               s.needs_review, b.model_version
                        FROM scan_batches b LEFT JOIN study_results s ON s.batch_id = b.id
                        WHERE b.study = ANY(:names) AND b.id > :after ORDER BY b.id"""),
                {"names": list(names), "after": after},
            )
        )


def print_access(settings: Settings) -> None:
    keys = airflow.airflow_secrets(settings)
    print("\nThe system is up (stop it with `make stop`):")
    print(
        f"  Airflow UI    {settings.airflow_url}   login {airflow.ADMIN_USER} / "
        f"{keys['admin_password']}"
    )
    print(f"  MLflow UI     {settings.mlflow_ui_url}")
    if DASHBOARD_APP.exists():
        login = "see the dashboard's README section"
        try:
            from lung_model.review.accounts import ensure_first_account

            first = ensure_first_account(settings)
            login = f"{first.username} / {first.password or '(password changed since setup)'}"
        except ImportError:
            pass
        print(f"  Dashboard     {settings.dashboard_url}   login {login}")
    print(
        f"  Inbox         {settings.inbox}   (drop <study>/ folders, then a {settings.ready_marker} file)"
    )
    print(
        f"  Logs          {settings.home / 'log'}   secrets in {settings.secrets_dir} (git-ignored)"
    )


def cli_demo(args: argparse.Namespace) -> int:
    settings = get_settings()
    env = up(settings)
    champion = champion_version(settings)
    if champion and not args.retrain:
        say(f"champion version {champion} exists: not retraining (--retrain to force)")
    else:
        say(f"triggering lung_retrain (config {args.config}); training takes a while")
        run_id = trigger(env, "lung_retrain", {"config": args.config})
        state = watch(env, "lung_retrain", run_id, timeout=args.timeout)
        say(f"lung_retrain finished: {state}; champion now {champion_version(settings)}")
    if champion_version(settings) is None:
        override_gate(settings)
    before = last_batch_id(settings)
    names = drop_into_inbox(settings, demo_studies(settings.raw_data, per_class=args.studies))
    say(f"dropped {len(names)} study folders into {settings.inbox}: {', '.join(names)}")
    for dag_id in ("lung_feedback", "lung_monitoring", "lung_batch_score"):
        airflow.airflow("dags", "unpause", dag_id, env=env)
    say("lung_batch_score is unpaused: its sensor notices the ready folders")

    def scored() -> bool:
        rows = study_results(settings, names, before)
        return len({r[0] for r in rows if r[1] in ("done", "failed")}) == len(names)

    watch(env, "lung_batch_score", None, timeout=args.timeout, done=scored)
    rows = study_results(settings, names, before)
    state = "success" if all(r[1] == "done" for r in rows) else "failed"
    say(f"scored: {state}")
    print("  study  status  scored  quarantined  class  max_p_malignant  needs_review  model")
    for row in rows:
        print("  " + "  ".join(str(value) for value in row))
    print_access(settings)
    return 0 if state == "success" else 1


def cli_up(args: argparse.Namespace) -> int:
    up(get_settings())
    print_access(get_settings())
    return 0


def cli_stop(args: argparse.Namespace) -> int:
    settings = get_settings()
    for name in down(settings):
        print(f"stopped {name}")
    print("embedded PostgreSQL stopped" if db.stop_embedded(settings) else "no embedded PostgreSQL")
    return 0


def cli_airflow_env(args: argparse.Namespace) -> int:
    """Print `export` lines: `eval "$(python -m lung_model airflow-env)"; airflow dags list`."""
    for key, value in airflow.environment(get_settings()).items():
        print(f"export {key}={json.dumps(value)}")
    return 0
