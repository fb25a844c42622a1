"""DAG runs seen from outside: which scheduled tick a demo run may stand for."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from lung_model.platform import airflow_runs


@pytest.mark.parametrize(
    ("offset", "claimed"),
    [(timedelta(hours=-10), True), (timedelta(days=6), False), (None, False)],
)
def test_only_a_tick_the_scheduler_would_run_now_is_claimed(
    monkeypatch: pytest.MonkeyPatch, offset: timedelta | None, claimed: bool
) -> None:
    tick = None if offset is None else (datetime.now(UTC) + offset).isoformat()
    monkeypatch.setattr(airflow_runs, "scheduled_tick", lambda env, dag_id: tick)

    assert airflow_runs.due_tick({}, "lung_retrain") == (tick if claimed else None)
