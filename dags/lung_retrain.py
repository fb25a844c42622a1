"""lung_retrain: retrain the classifier and let the gate decide whether it replaces the champion.

dvc_pull -> audit (fails on integrity errors) -> split (group-aware) -> train -> evaluate
-> register_challenger -> gate -> promote | reject (the branch shows the decision) -> notify

Runs weekly and whenever the labelled data changes (the `lung_labelled_data` asset, emitted
by `lung_feedback`). One run at a time; the DVC task takes the one-slot `dvc` pool. The
TensorFlow tasks go to the `tensorflow` queue (Celery workers can specialise). Trigger with
`{"config": "tiny"}` for a seconds-long smoke run. The logic is `lung_model`'s training steps;
this file only wires them, passing small JSON values (paths, run ids, versions).
"""

from __future__ import annotations

from airflow.sdk import AssetOrTimeSchedule, CronTriggerTimetable, Param, dag, task
from lung_airflow import (
    CHAMPION,
    DEFAULT_ARGS,
    DVC_POOL,
    LABELLED_DATA,
    TENSORFLOW_QUEUE,
    alert_on_failure,
    lung_settings,
    push_mlflow_run_link,
)


@dag(
    schedule=AssetOrTimeSchedule(
        timetable=CronTriggerTimetable("0 3 * * 0", timezone="UTC"), assets=LABELLED_DATA
    ),
    catchup=False,  # no start_date: unpausing starts nothing; the week or the data does
    max_active_runs=1,
    default_args={**DEFAULT_ARGS, "on_failure_callback": alert_on_failure},
    params={
        "config": Param("default", enum=["default", "tiny"], description="training preset"),
    },
    tags=["lung", "training"],
    doc_md=__doc__,
)
def lung_retrain() -> None:
    @task(pool=DVC_POOL)
    def dvc_pull() -> str:
        from lung_model.dvc_data import pull

        return pull()

    @task
    def audit(data_version: str, run_id: str | None = None) -> str:
        from lung_model.pipeline import audit_step

        return audit_step(run_id or data_version, lung_settings())

    @task
    def split(audit_path: str) -> str:
        from lung_model.pipeline import split_step

        return split_step(audit_path, lung_settings())

    @task(queue=TENSORFLOW_QUEUE)
    def train(split_path: str, params: dict | None = None) -> dict:
        from lung_model.pipeline import train_step

        trained = train_step(split_path, (params or {}).get("config", "default"), lung_settings())
        push_mlflow_run_link(trained)
        return trained

    @task(queue=TENSORFLOW_QUEUE)
    def evaluate(trained: dict) -> dict:
        from lung_model.pipeline import evaluate_step

        return evaluate_step(trained, lung_settings())

    @task
    def register_challenger(evaluated: dict) -> dict:
        from lung_model.pipeline import register_step

        registered = register_step(evaluated, lung_settings())
        push_mlflow_run_link(registered)
        return registered

    @task.branch
    def gate(registered: dict) -> str:
        from lung_model.pipeline import gate_step

        decision = gate_step(registered, lung_settings())
        return "promote" if decision["promote"] else "reject"

    @task(outlets=[CHAMPION])
    def promote(registered: dict) -> dict:
        from lung_model.pipeline import promote_step

        return promote_step(registered, lung_settings())

    @task
    def reject(registered: dict) -> dict:
        from lung_model.pipeline import reject_step

        return reject_step(registered, lung_settings())

    @task(trigger_rule="none_failed_min_one_success")
    def notify(registered: dict) -> str:
        from lung_model.pipeline import outcome_message

        return outcome_message(registered, lung_settings())

    registered = register_challenger(evaluate(train(split(audit(dvc_pull())))))
    gate(registered) >> [promote(registered), reject(registered)] >> notify(registered)


lung_retrain()
