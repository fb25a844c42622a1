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
import shutil
import time
from collections.abc import Callable, Iterable
from pathlib import Path

from sqlalchemy import text

from lung_model.cli.exit_codes import ExitCode
from lung_model.cli.system import print_access
from lung_model.platform import airflow, db, stack
from lung_model.platform.airflow_runs import last_output, run_states, trigger
from lung_model.platform.registry import current_champion
from lung_model.settings import Settings, get_settings


def say(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


def watch(
    settings: Settings,
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
        current, state, tasks = run_states(env, dag_id, run_id)
        for task, task_state in tasks.items():
            if seen.get(task) != task_state:
                say(f"  {dag_id} {current} {task}: {task_state}")
            if task_state == "running" and "[" not in task:
                line = last_output(settings, dag_id, current, task)
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


def cli_demo(args: argparse.Namespace) -> ExitCode:
    settings = get_settings()
    env = stack.up(settings, report=say)
    current = current_champion(settings)
    if current and not args.retrain:
        say(f"champion version {current} exists: not retraining (--retrain to force)")
    else:
        say(f"triggering lung_retrain (config {args.config}); training takes a while")
        run_id = trigger(env, "lung_retrain", {"config": args.config})
        state = watch(settings, env, "lung_retrain", run_id, timeout=args.timeout)
        say(f"lung_retrain finished: {state}; champion now {current_champion(settings)}")
    if current_champion(settings) is None:
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

    watch(settings, env, "lung_batch_score", None, timeout=args.timeout, done=scored)
    rows = study_results(settings, names, before)
    state = "success" if all(r[1] == "done" for r in rows) else "failed"
    say(f"scored: {state}")
    print("  study  status  scored  quarantined  class  max_p_malignant  needs_review  model")
    for row in rows:
        print("  " + "  ".join(str(value) for value in row))
    print_access(settings)
    return ExitCode.OK if state == "success" else ExitCode.ERROR
