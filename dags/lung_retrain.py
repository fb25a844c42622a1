"""lung_retrain: retrain the classifier and let the gate decide whether it replaces the champion.

dvc_pull -> audit (fails on integrity errors) -> split (group-aware) -> train -> evaluate
-> register_challenger -> gate -> promote_or_reject -> promote | reject -> notify

Runs weekly and whenever the labelled data changes (the `lung_labelled_data` asset, emitted
by `lung_feedback`). One run at a time; the DVC task takes the one-slot `dvc` pool. The
TensorFlow tasks go to the `tensorflow` queue (Celery workers can specialise). Trigger with
`{"config": "tiny"}` for a seconds-long smoke run. The logic is `lung_model`'s training steps;
this file only wires `lung_model.pipelines.retrain`, passing small JSON values (run ids, versions).
"""

from __future__ import annotations

from datetime import timedelta

from airflow.sdk import AssetOrTimeSchedule, CronTriggerTimetable, Param, dag, task
from lung_airflow import (
    CHAMPION,
    DAG_POLICY,
    DVC_POOL,
    LABELLED_DATA,
    TENSORFLOW_QUEUE,
    lung_settings,
    push_mlflow_run_link,
)


@dag(
    schedule=AssetOrTimeSchedule(
        timetable=CronTriggerTimetable("0 3 * * 0", timezone="UTC"), assets=LABELLED_DATA
    ),
    # no start_date: unpausing starts nothing; the week or the data does
    params={
        "config": Param("default", enum=["default", "tiny"], description="training preset"),
        "data_dir": Param("", type="string", description="dataset folder; empty: data/raw"),
    },
    tags=["lung", "training"],
    doc_md=__doc__,
    **DAG_POLICY,
)
def lung_retrain() -> None:
    data_dir = "{{ params.data_dir }}"

    @task(pool=DVC_POOL)
    def dvc_pull(data_dir: str) -> str:
        from lung_model.pipelines.retrain import pull_data

        return pull_data(data_dir or None)

    @task
    def audit(data_version: str, data_dir: str) -> dict:
        from lung_model.pipelines.retrain import audit_data

        return audit_data(data_dir or None, lung_settings())

    @task
    def split(audited: dict, data_dir: str) -> dict:
        from lung_model.pipelines.retrain import split_data

        return split_data(data_dir or None, lung_settings())

    @task(queue=TENSORFLOW_QUEUE, execution_timeout=timedelta(hours=3))
    def train(split_report: dict, config: str, data_dir: str) -> dict:
        from lung_model.pipelines.retrain import train

        trained = train(config, data_dir or None, lung_settings())
        push_mlflow_run_link(trained)
        return trained

    @task
    def evaluate(trained: dict) -> dict:
        from lung_model.pipelines.retrain import evaluate

        evaluated = evaluate(trained, lung_settings())
        push_mlflow_run_link(evaluated)
        return evaluated

    @task
    def register_challenger(evaluated: dict) -> dict:
        from lung_model.pipelines.retrain import register_challenger

        registered = register_challenger(evaluated, lung_settings())
        push_mlflow_run_link(registered)
        return registered

    @task(queue=TENSORFLOW_QUEUE)
    def gate(registered: dict, data_dir: str) -> dict:
        from lung_model.pipelines.retrain import gate

        return gate(registered, data_dir or None, lung_settings())

    @task.branch
    def promote_or_reject(decided: dict) -> str:
        return "promote" if decided["decision"] == "promoted" else "reject"

    @task(outlets=[CHAMPION])
    def promote(decided: dict) -> dict:
        from lung_model.pipelines.retrain import confirm_promotion

        return confirm_promotion(decided, lung_settings())

    @task
    def reject(decided: dict) -> dict:
        from lung_model.pipelines.retrain import record_rejection

        return record_rejection(decided, lung_settings())

    @task(trigger_rule="none_failed_min_one_success")
    def notify(decided: dict) -> str:
        from lung_model.pipelines.retrain import outcome

        return outcome(decided, lung_settings())

    audited = audit(dvc_pull(data_dir), data_dir)
    trained = train(split(audited, data_dir), "{{ params.config }}", data_dir)
    decided = gate(register_challenger(evaluate(trained)), data_dir)
    branch = promote_or_reject(decided)
    branch >> [promote(decided), reject(decided)] >> notify(decided)


lung_retrain()
