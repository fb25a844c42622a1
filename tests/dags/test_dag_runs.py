"""The DAGs run for real: `airflow dags test` (Airflow's `dag.test()`) against a metadata
database and the results database on the real PostgreSQL, with a tiny training config; then
the scale-out path: CeleryExecutor, Redis broker, PostgreSQL result backend, an api-server and
an `airflow celery worker` process executing a `lung_batch_score` run."""

from __future__ import annotations

import csv
import json
import os
import shutil
import subprocess
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import redis
from pg_admin import SERVER_URL, admin
from sqlalchemy import create_engine, text

from lung_model import settings as settings_module
from lung_model.data import dvc
from lung_model.platform import airflow, db, services
from lung_model.platform.services import free_port
from lung_model.settings import PROJECT_ROOT, Settings

pytestmark = pytest.mark.slow
RAW = PROJECT_ROOT / "data" / "raw"
# Three groups of two neighbouring slices per class: enough for a group split.
TINY = {
    "Normal cases/Normal case": (1, 2, 50, 51, 122, 123),
    "Bengin cases/Bengin case": (1, 2, 4, 5, 9, 10),
    "Malignant cases/Malignant case": (2, 3, 44, 45, 200, 201),
}
LABELS = {"Normal": "normal", "Bengin": "benign", "Malignant": "malignant"}


@dataclass
class Deployment:
    settings: Settings
    env: dict[str, str]
    metadata_url: str
    tiny_data: Path


def tiny_dataset(target: Path) -> Path:
    rows = []
    for prefix, numbers in TINY.items():
        for n in numbers:
            relative = f"{prefix} ({n}).jpg"
            (target / relative).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(RAW / relative, target / relative)
            label = LABELS[prefix.split()[0]]
            rows.append({"path": relative, "label": label, "sha256": dvc.sha256_of(RAW / relative)})
    with (target / "MANIFEST.csv").open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=["path", "label", "sha256"])
        writer.writeheader()
        writer.writerows(rows)
    return target


@pytest.fixture(scope="module")
def deployment(tmp_path_factory: pytest.TempPathFactory, pg_url: str) -> Iterator[Deployment]:
    """Airflow configured like `make demo`, in a temporary LUNG_HOME, with its own metadata DB."""
    home = tmp_path_factory.mktemp("lung-home")
    saved = dict(os.environ)
    # every study decoded in worker processes (the tiny feature model offers them), so the
    # forkserver is tried inside Airflow's own task processes: dag.test, Celery, LocalExecutor
    os.environ.update(
        {"LUNG_HOME": str(home), "DATABASE_URL": pg_url, "LUNG_SCORE_PROCESSES_MIN_FILES": "1"}
    )
    os.environ.pop("MLFLOW_TRACKING_URI", None)
    os.environ.pop("AIRFLOW__DATABASE__SQL_ALCHEMY_CONN", None)
    settings_module.get_settings.cache_clear()
    settings = settings_module.get_settings()
    settings.ensure_dirs()
    name = f"lung_airflow_{uuid.uuid4().hex[:8]}"
    admin(f"CREATE DATABASE {name}")
    metadata = airflow.with_database(db.sqlalchemy_url(SERVER_URL), name)
    try:
        env = airflow.environment(settings, metadata=metadata)
        airflow.migrate_metadata(env)
        yield Deployment(settings, env, metadata, tiny_dataset(home / "tiny-data"))
    finally:
        os.environ.clear()
        os.environ.update(saved)
        settings_module.get_settings.cache_clear()
        admin(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


def task_states(metadata_url: str, dag_id: str) -> dict[str, str]:
    """Task states of the DAG's latest run (mapped tasks as `task[i]`)."""
    engine = create_engine(metadata_url)
    with engine.connect() as connection:
        rows = connection.execute(
            text("""SELECT task_id, map_index, state FROM task_instance
                    WHERE run_id = (SELECT run_id FROM dag_run WHERE dag_id = :d
                                    ORDER BY id DESC LIMIT 1) AND dag_id = :d"""),
            {"d": dag_id},
        ).all()
    engine.dispose()
    return {(t if m < 0 else f"{t}[{m}]"): str(s) for t, m, s in rows}


def drop_study(settings: Settings, name: str, files: list[Path], junk: bool = False) -> None:
    folder = settings.inbox / name
    folder.mkdir(parents=True)
    for file in files:
        shutil.copyfile(file, folder / file.name)
    if junk:
        (folder / "notes.jpg").write_bytes(b"not an image")
    (folder / settings.ready_marker).touch()


def scored(settings: Settings, names: list[str]) -> dict[str, tuple[str, int, int, str | None]]:
    with db.get_engine(settings).connect() as connection:
        rows = connection.execute(
            text("""SELECT b.study, b.status, b.n_scored, b.n_quarantined, s.predicted_class
                    FROM scan_batches b LEFT JOIN study_results s ON s.batch_id = b.id
                    WHERE b.study = ANY(:n)"""),
            {"n": names},
        ).all()
    return {r[0]: (r[1], r[2], r[3], r[4]) for r in rows}


def run_dags(deployment: Deployment, steps: list[dict]) -> list[dict[str, str]]:
    """The steps (DAG runs and `promote_if_no_champion`) by `dag_runner.py`, in one
    interpreter; one {"dag_id", "run_id", "state"} per DAG run."""
    done = subprocess.run(
        [sys.executable, str(Path(__file__).with_name("dag_runner.py")), json.dumps(steps)],
        env={**os.environ, **deployment.env},
        capture_output=True,
        text=True,
        cwd=PROJECT_ROOT,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]


@pytest.fixture(scope="module")
def dag_runs(deployment: Deployment) -> dict[str, dict[str, str]]:
    """`lung_retrain` (tiny config), the tiny model as champion (an operator override when
    the gate rejected it), two studies dropped, then `lung_batch_score`: in one interpreter."""
    settings = deployment.settings
    slices = sorted((deployment.tiny_data / "Malignant cases").glob("*.jpg"))
    drop_study(settings, "dagtest-a", slices[:3])
    drop_study(settings, "dagtest-b", slices[3:5], junk=True)
    steps = [
        {
            "dag_id": "lung_retrain",
            "conf": {"config": "tiny", "data_dir": str(deployment.tiny_data)},
        },
        {"promote_if_no_champion": True},
        {"dag_id": "lung_batch_score"},
        {"dag_id": "lung_monitoring"},
        {"dag_id": "lung_feedback"},
        {"dag_id": "lung_backup"},
        {"dag_id": "lung_results_out"},
    ]
    runs = run_dags(deployment, steps)
    return {
        run["dag_id"]: {
            "state": run["state"],
            **task_states(deployment.metadata_url, run["dag_id"]),
        }
        for run in runs
    }


@pytest.fixture(scope="module")
def retrained(dag_runs: dict[str, dict[str, str]]) -> dict[str, str]:
    return dag_runs["lung_retrain"]


def test_retrain_runs_every_step_and_takes_one_branch(
    deployment: Deployment, celery_stack: CeleryStack, retrained: dict[str, str]
) -> None:
    steps = [
        "pull_data",
        "audit_data",
        "split_data",
        "train",
        "evaluate",
        "register_challenger",
        "gate",
    ]
    assert {t: retrained[t] for t in steps} == dict.fromkeys(steps, "success")
    assert retrained["promote_or_reject"] == "success" and retrained["notify"] == "success"
    assert retrained["state"] == "success"
    assert sorted([retrained["confirm_promotion"], retrained["record_rejection"]]) == [
        "skipped",
        "success",
    ]
    with db.get_engine(deployment.settings).connect() as connection:
        events = connection.execute(
            text(
                "SELECT decision, actor FROM promotion_events WHERE candidate_version = '1' AND actor = 'gate'"
            )
        ).all()
    assert len(events) == 1 and events[0][1] == "gate"
    if events[0][0] == "rejected":  # the tiny model: `make demo`'s override made it champion
        with db.get_engine(deployment.settings).connect() as connection:
            actor = connection.execute(
                text("SELECT actor FROM promotion_events WHERE decision = 'override'")
            ).scalar_one()
        assert actor == "make-demo"
    decided = "confirm_promotion" if events[0][0] == "promoted" else "record_rejection"
    assert retrained[decided] == "success"
    engine = create_engine(deployment.metadata_url)
    with engine.connect() as connection:  # what the plugin's "MLflow run" button opens
        links = connection.execute(
            text(
                "SELECT task_id, value FROM xcom WHERE dag_id = 'lung_retrain' "
                "AND key = 'mlflow_run_url'"
            )
        ).all()
    engine.dispose()
    assert {task for task, _ in links} == {"train", "evaluate", "register_challenger"}
    assert all("http://127.0.0.1:5000/#/experiments/" in str(value) for _, value in links)
    assert all(str(value).endswith("?workflowType=machine_learning") for _, value in links)


@pytest.fixture(scope="module")
def champion(deployment: Deployment, dag_runs: dict[str, dict[str, str]]) -> str:
    from lung_model.platform.registry import current_champion

    version = current_champion(deployment.settings)
    assert version is not None
    return version


def test_batch_score_scores_and_quarantines_into_postgres(
    deployment: Deployment, champion: str, dag_runs: dict[str, dict[str, str]]
) -> None:
    settings = deployment.settings
    states = dag_runs["lung_batch_score"]
    assert states == {
        "state": "success",
        "wait_for_ready_study": "success",
        "score_ready_studies[0]": "success",
        "score_ready_studies[1]": "success",
        "summarise": "success",
    }
    results = scored(settings, ["dagtest-a", "dagtest-b"])
    assert results["dagtest-a"][:3] == ("done", 3, 0) and results["dagtest-a"][3] is not None
    assert results["dagtest-b"][:3] == ("done", 2, 1)
    assert sorted(p.name for p in settings.archive.iterdir()) == ["dagtest-a", "dagtest-b"]
    assert not any(settings.inbox.iterdir()) and not any(settings.processing.iterdir())
    engine = create_engine(deployment.metadata_url)
    with engine.connect() as connection:
        labels = connection.execute(
            text("""SELECT rendered_map_index FROM task_instance
                    WHERE dag_id = 'lung_batch_score' AND task_id = 'score_ready_studies'""")
        ).scalars()
        # each scoring task is named after the studies it scored and their outcomes (under
        # dag.test the tasks run one after the other: the first scores both)
        outcomes = sorted(o for label in labels for o in label.split(", "))
        assert [o for o in outcomes if o != "nothing to score"] == [
            "dagtest-a: done",
            "dagtest-b: done",
        ]
        events = connection.execute(
            text(
                "SELECT count(*) FROM asset_event e JOIN asset a ON a.id = e.asset_id "
                "WHERE a.name = 'lung_predictions'"
            )
        ).scalar()
        assert events == 1
    engine.dispose()


@dataclass
class CeleryStack:
    settings: Settings
    env: dict[str, str]
    api: services.Service
    worker: services.Service
    worker_name: str


@pytest.fixture(scope="module")
def celery_stack(deployment: Deployment) -> Iterator[CeleryStack]:
    """An api-server (the workers' execution API) and a Celery worker, started early: they
    boot while the other DAG tests run."""
    settings = deployment.settings.model_copy(
        update={"airflow_url": f"http://127.0.0.1:{free_port()}"}
    )
    run_id = uuid.uuid4().hex[:6]
    env = airflow.environment(
        settings,
        executor="CeleryExecutor",
        metadata=deployment.metadata_url,
        broker_url="redis://127.0.0.1:6379/11",
    )
    # Every Redis key (queues, bindings, pub/sub channels) of this run carries its own prefix,
    # so concurrent test runs on one Redis never see each other's messages and nothing shared
    # is flushed. See https://docs.celeryq.dev/projects/kombu/en/stable/reference/kombu.transport.redis.html
    prefix = f"lung-test-{run_id}:"
    env["AIRFLOW__CELERY_BROKER_TRANSPORT_OPTIONS__GLOBAL_KEYPREFIX"] = prefix
    airflow_cli = str(Path(sys.executable).with_name("airflow"))
    worker_name = f"lung-test-{run_id}"
    stack = CeleryStack(
        settings,
        env,
        services.Service(
            "test-api-server",
            [airflow_cli, "api-server", "--host", "127.0.0.1", "--port", env["AIRFLOW__API__PORT"]],
            env,
            f"{settings.airflow_url}/api/v2/monitor/health",
        ),
        services.Service(
            "test-celery-worker",
            [
                airflow_cli,
                "celery",
                "worker",
                "--queues",
                "default,tensorflow",
                "--concurrency",
                "1",
                "--celery-hostname",
                worker_name,
                "--without-mingle",
                "--without-gossip",
                "--skip-serve-logs",
            ],
            env,
        ),  # fmt: skip
        worker_name,
    )
    try:
        for service in (stack.api, stack.worker):
            services.start(settings, service)
        yield stack
    finally:
        for service in (stack.worker, stack.api):
            services.stop(settings, service.name, grace_seconds=10)
        broker = redis.Redis.from_url(env["AIRFLOW__CELERY__BROKER_URL"])
        for key in broker.scan_iter(match=f"{prefix}*"):  # this run's keys only
            broker.delete(key)


def test_celery_worker_runs_batch_score(
    deployment: Deployment, champion: str, celery_stack: CeleryStack
) -> None:
    settings, env = celery_stack.settings, celery_stack.env
    services.wait_until_up(settings, celery_stack.api, timeout=180)
    slices = sorted((deployment.tiny_data / "Normal cases").glob("*.jpg"))
    drop_study(settings, "celery-a", slices[:2])
    airflow.airflow("dags", "test", "lung_batch_score", "--use-executor", env=env, timeout=400)
    states = task_states(deployment.metadata_url, "lung_batch_score")
    assert set(states.values()) == {"success"} and "score_ready_studies[0]" in states
    assert scored(settings, ["celery-a"])["celery-a"][:2] == ("done", 2)
    log = services.log_file(settings, "test-celery-worker").read_text(errors="replace")
    assert celery_stack.worker_name in log and "succeeded" in log
    engine = create_engine(deployment.metadata_url)
    with engine.connect() as connection:
        queues = dict(
            connection.execute(
                text("""SELECT task_id, queue FROM task_instance WHERE dag_id =
                        'lung_batch_score' AND run_id = (SELECT run_id FROM dag_run
                        WHERE dag_id = 'lung_batch_score' ORDER BY id DESC LIMIT 1)""")
            ).all()
        )
        results = connection.execute(
            text("SELECT count(*) FROM celery_taskmeta WHERE status = 'SUCCESS'")
        ).scalar()
    engine.dispose()
    assert queues["score_ready_studies"] == "tensorflow" and queues["summarise"] == "default"
    assert results and results >= 1  # task results went through the PostgreSQL backend


def test_monitoring_and_feedback_runs(
    deployment: Deployment, dag_runs: dict[str, dict[str, str]]
) -> None:
    assert dag_runs["lung_monitoring"] == {"state": "success", "run_checks": "success"}
    with db.get_engine(deployment.settings).connect() as connection:
        window = connection.execute(
            text("SELECT window_end - window_start FROM monitoring_checks")
        ).scalar_one()
    assert window.days == 1  # the run's data interval: the past day
    # No review yet: nothing to export, so no new data version and no retrain trigger.
    assert dag_runs["lung_feedback"] == {"state": "success", "export_reviews": "skipped"}


def test_results_out_runs_and_sends_nothing_for_studies_that_came_as_jpeg(
    deployment: Deployment, dag_runs: dict[str, dict[str, str]]
) -> None:
    assert dag_runs["lung_results_out"] == {"state": "success", "send_results": "success"}
    with db.get_engine(deployment.settings).connect() as connection:
        planned = connection.execute(text("SELECT count(*) FROM result_deliveries")).scalar_one()
    assert planned == 0  # no Study Instance UID to report into


def test_backup_run_writes_one_dated_backup(
    deployment: Deployment, dag_runs: dict[str, dict[str, str]]
) -> None:
    from lung_model.lifecycle.backup import backups, verify

    assert dag_runs["lung_backup"] == {"state": "success", "back_up": "success"}
    [made] = backups(deployment.settings.backup_folder)
    included = {p["name"] for p in verify(made)["parts"] if p["included"]}
    assert {"database", "mlflow_store", "mlflow_artifacts", "studies", "secrets"} <= included


REVIEWER, PASSWORD = "dr.e2e", "marks reach the model"
LESION_AT = (0.68, 0.53)  # of the width and height: the mass on "Malignant case (2)"


def _review_in_the_browser(settings: Settings, batch: int, slices: list[tuple[int, str]]) -> None:
    """What a reviewer does on the real dashboard in chromium: one click on the lesion of the
    first slice, "No lesion visible" on the second, then the study's label, malignant."""
    from live_dashboard import (
        ARTIFACTS,
        SLICE_FRAME,
        choose_slice,
        chromium_page,
        click_lesion,
        serve_dashboard,
        settled,
        sign_in,
    )
    from playwright.sync_api import expect

    (lesion, lesion_name), (clear, clear_name) = slices
    with serve_dashboard(settings.home) as url, chromium_page() as page:
        sign_in(page, url, REVIEWER, PASSWORD)
        page.goto(f"{url}/study?batch={batch}")
        expect(page.get_by_role("heading", name="Study dagtest-a")).to_be_visible()
        choose_slice(page, lesion_name, lesion)
        click_lesion(page, *LESION_AT)
        expect(page.get_by_text("Mark recorded: lesion at")).to_be_visible()
        settled(page)
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        page.locator(SLICE_FRAME).screenshot(path=str(ARTIFACTS / "dag-issue22-marked-slice.png"))

        choose_slice(page, clear_name, clear)
        page.locator(f".st-key-no_lesion_{clear}").get_by_role("button").click()
        expect(page.get_by_text("Mark recorded: no lesion visible.")).to_be_visible()

        form = page.get_by_test_id("stForm").first
        form.get_by_role("radiogroup", name="Label").get_by_text("malignant").click()
        form.get_by_role("button", name="Submit review").click()
        expect(page.get_by_text("recorded: malignant.")).to_be_visible()


def test_marks_made_in_the_browser_reach_a_retrain_through_lung_feedback(
    dag_runs: dict[str, dict[str, str]],
    deployment: Deployment,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Issue 22 item 6, in the real stack: a reviewer marks two slices of a scored study and
    reviews it in the dashboard (chromium) -> `lung_feedback` exports them into a DVC
    repository as a new data version -> `lung_retrain` trains on that version in Airflow -> its
    MLflow run counts the marked slices and studies, and the model version it registered has
    that data version; `lung_feedback` run again exports nothing and counts nothing twice."""
    from PIL import Image

    from lung_model.platform.tracking import configure_mlflow
    from lung_model.review import accounts
    from lung_model.review.marks import current_marks, marks_for_training

    settings = deployment.settings
    repo = tmp_path / "repo"
    shutil.copytree(deployment.tiny_data, repo / "data" / "raw")

    def run_dvc(*args: str) -> None:
        subprocess.run([sys.executable, "-m", "dvc", *args], cwd=repo, check=True,
                       capture_output=True)  # fmt: skip

    run_dvc("init", "--no-scm", "-q")
    run_dvc("remote", "add", "-d", "local", str(tmp_path / "remote"))
    run_dvc("add", "-q", "data/raw")
    before = dvc.data_version(repo / "data" / "raw.dvc")

    engine = db.get_engine(settings)
    with engine.connect() as connection:
        batch = connection.execute(
            text("SELECT id FROM scan_batches WHERE study = 'dagtest-a'")
        ).scalar_one()
        slices = connection.execute(
            text("SELECT id, path FROM images WHERE batch_id = :b ORDER BY path"), {"b": batch}
        ).all()
    assert not current_marks(engine, batch)
    monkeypatch.setattr(accounts, "ROUNDS", 4)  # real bcrypt, at its lowest cost for speed
    accounts.add_account(settings, REVIEWER, PASSWORD)
    _review_in_the_browser(settings, batch, [tuple(row) for row in slices[:2]])

    (lesion, lesion_name), (clear, clear_name) = slices[:2]
    marks = current_marks(engine, batch)  # what the clicks stored
    assert {i: (m["kind"], m["reviewer"]) for i, m in marks.items()} == {
        lesion: ("lesion", REVIEWER),
        clear: ("no_lesion", REVIEWER),
    }
    with Image.open(settings.archive / "dagtest-a" / lesion_name) as image:
        width, height = image.size
    x, y = marks[lesion]["x"], marks[lesion]["y"]
    assert abs(x - LESION_AT[0] * width) <= 3 and abs(y - LESION_AT[1] * height) <= 3

    steps = [
        {"dag_id": "lung_feedback", "conf": {"repo": str(repo)}},
        {"dag_id": "lung_retrain",
         "conf": {"config": "tiny", "data_dir": str(repo / "data" / "raw")}},
        {"dag_id": "lung_feedback", "conf": {"repo": str(repo)}},  # again: nothing new
    ]  # fmt: skip
    runs = run_dags(deployment, steps)
    assert [run["state"] for run in runs] == ["success"] * 3
    assert task_states(deployment.metadata_url, "lung_feedback")["export_reviews"] == "skipped"

    version = dvc.data_version(repo / "data" / "raw.dvc")
    assert version != before
    annotations = list(csv.DictReader((repo / "data" / "raw" / "ANNOTATIONS.csv").open()))
    by_file = {row["path"].rsplit("/", 1)[1]: row for row in annotations}
    assert sorted(by_file) == sorted([lesion_name, clear_name])  # once each, after two runs
    assert by_file[lesion_name]["kind"] == "lesion" and by_file[clear_name]["kind"] == "no_lesion"
    assert (float(by_file[lesion_name]["x"]), float(by_file[lesion_name]["y"])) == (x, y)
    with engine.connect() as connection:
        exported = connection.execute(
            text("SELECT n_marks, data_version FROM feedback_mark_exports WHERE batch_id = :b"),
            {"b": batch},
        ).all()
    assert [tuple(row) for row in exported] == [(2, version)]
    counted = marks_for_training(engine)  # what the Model page says
    assert (counted["exported_slices"], counted["exported_studies"]) == (2, 1)

    client = configure_mlflow(settings)
    experiment = client.get_experiment_by_name(settings.experiment).experiment_id
    [run] = client.search_runs([experiment], "tags.job = 'train'", order_by=["start_time DESC"],
                               max_results=1)  # fmt: skip
    assert run.data.tags["data_version"] == version  # the second export made no new version
    assert run.data.params["marks_no_lesion"] == "exclude"
    assert {k: v for k, v in run.data.metrics.items() if k.startswith("marked_")} == {
        "marked_slices": 2,
        "marked_studies": 1,
        "marked_lesion_slices": 1,
        "marked_no_lesion_slices": 1,
    }
    [registered] = client.search_model_versions(
        f"name = '{settings.model_name}' and run_id = '{run.info.run_id}'"
    )
    assert registered.tags["data_version"] == version
