"""lung_retrain: retrain the classifier and let the gate decide whether it replaces the champion.

pull_data -> audit_data (fails on integrity errors) -> split_data (group-aware) -> train
-> evaluate -> register_challenger -> gate -> promote_or_reject -> confirm_promotion |
record_rejection -> notify

Runs weekly and whenever the labelled data changes (the `lung_labelled_data` asset, emitted
by `lung_feedback`). One run at a time; the DVC task takes the one-slot `dvc` pool. The
TensorFlow tasks go to the `tensorflow` queue (Celery workers can specialise). Trigger with
`{"config": "tiny"}` for a seconds-long smoke run. The logic is `lung_model`'s training steps;
this file only wires `lung_model.pipelines.retrain` (each task calls the function of its
name), passing its typed payloads through XCom as small JSON values (run ids, versions).
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
        "config": Param(
            "default",
            enum=["default", "tiny", "cnn", "cnn-tiny"],
            description="training preset (lung_model.training.job.PRESETS)",
        ),
        "data_dir": Param("", type="string", description="dataset folder; empty: data/raw"),
    },
    tags=["lung", "training"],
    doc_md=__doc__,
    **DAG_POLICY,
)
def lung_retrain() -> None:
    data_dir = "{{ params.data_dir }}"

    @task(pool=DVC_POOL)
    def pull_data(data_dir: str) -> str:
        from lung_model.pipelines import retrain

        return retrain.pull_data(data_dir or None)

    @task
    def audit_data(data_version: str, data_dir: str) -> dict:
        from lung_model.pipelines import retrain

        return retrain.audit_data(data_dir or None, lung_settings()).to_xcom()

    @task
    def split_data(audited: dict, data_dir: str) -> dict:
        from lung_model.pipelines import retrain

        return retrain.split_data(data_dir or None, lung_settings()).to_xcom()

    @task(queue=TENSORFLOW_QUEUE, execution_timeout=timedelta(hours=3))
    def train(split_counts: dict, config: str, data_dir: str) -> dict:
        from lung_model.pipelines import retrain

        trained = retrain.train(config, data_dir or None, lung_settings()).to_xcom()
        push_mlflow_run_link(trained)
        return trained

    @task
    def evaluate(trained: dict) -> dict:
        from lung_model.pipelines import retrain

        evaluated = retrain.evaluate(retrain.Trained.from_xcom(trained), lung_settings())
        push_mlflow_run_link(evaluated.to_xcom())
        return evaluated.to_xcom()

    @task
    def register_challenger(evaluated: dict) -> dict:
        from lung_model.pipelines import retrain

        registered = retrain.register_challenger(
            retrain.Evaluated.from_xcom(evaluated), lung_settings()
        ).to_xcom()
        push_mlflow_run_link(registered)
        return registered

    @task(queue=TENSORFLOW_QUEUE)
    def gate(registered: dict, data_dir: str) -> dict:
        from lung_model.pipelines import retrain

        registration = retrain.Registered.from_xcom(registered)
        return retrain.gate(registration, data_dir or None, lung_settings()).to_xcom()

    @task.branch
    def promote_or_reject(decided: dict) -> str:
        from lung_model.pipelines import retrain

        return retrain.promote_or_reject(retrain.Decided.from_xcom(decided))

    @task(outlets=[CHAMPION])
    def confirm_promotion(decided: dict) -> dict:
        from lung_model.pipelines import retrain

        decision = retrain.Decided.from_xcom(decided)
        return retrain.confirm_promotion(decision, lung_settings()).to_xcom()

    @task
    def record_rejection(decided: dict) -> dict:
        from lung_model.pipelines import retrain

        decision = retrain.Decided.from_xcom(decided)
        return retrain.record_rejection(decision, lung_settings()).to_xcom()

    @task(trigger_rule="none_failed_min_one_success")
    def notify(decided: dict) -> str:
        from lung_model.pipelines import retrain

        return retrain.notify(retrain.Decided.from_xcom(decided), lung_settings())

    audited = audit_data(pull_data(data_dir), data_dir)
    trained = train(split_data(audited, data_dir), "{{ params.config }}", data_dir)
    decided = gate(register_challenger(evaluate(trained)), data_dir)
    branch = promote_or_reject(decided)
    branch >> [confirm_promotion(decided), record_rejection(decided)] >> notify(decided)


lung_retrain()
