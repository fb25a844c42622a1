"""Promotion decisions on the real MLflow registry (SQLite store) and the real PostgreSQL:
the gate against the floors, an operator's override, rollback; each one recorded as
`gate.*` tags on the version and a `promotion_events` row."""

from __future__ import annotations

import json
import uuid

import pytest
from sqlalchemy import text
from tiny_models import LENIENT, TrainedRun

from lung_model.lifecycle.promotion import promote, rollback, run_gate
from lung_model.platform import db
from lung_model.platform.registry import current_champion, register
from lung_model.platform.tracking import configure_mlflow
from lung_model.settings import Settings

pytestmark = pytest.mark.slow


@pytest.fixture
def lenient(trained_run: TrainedRun, pg_url: str) -> Settings:
    """Floors a one-epoch network clears, under a model name of this test's own."""
    return trained_run.settings(pg_url, f"lung-test-promotion-{uuid.uuid4().hex[:8]}", **LENIENT)


def events(settings: Settings) -> list[dict]:
    with db.get_engine(settings).connect() as connection:
        rows = connection.execute(
            text("SELECT * FROM promotion_events WHERE model_name = :n ORDER BY id"),
            {"n": settings.model_name},
        )
        return [dict(row._mapping) for row in rows]


def test_the_gate_promotes_a_first_model_that_clears_the_floors(
    trained_run: TrainedRun, lenient: Settings
) -> None:
    version = register(trained_run.run_id, lenient)

    decision = run_gate(version, lenient, trained_run.data_dir)

    assert (decision.decision, decision.candidate_version) == ("promoted", version)
    assert decision.champion_version is None and decision.champion_metrics is None
    assert current_champion(lenient) == version
    tags = configure_mlflow(lenient).get_model_version(lenient.model_name, version).tags
    assert tags["gate.decision"] == "promoted" and tags["gate.actor"] == "gate"
    assert json.loads(tags["gate.candidate_metrics"]) == decision.candidate_metrics
    [row] = events(lenient)
    assert (row["decision"], row["candidate_version"], row["actor"]) == (
        "promoted",
        version,
        "gate",
    )
    assert row["candidate_metrics"] == decision.candidate_metrics


def test_the_gate_rejects_a_model_below_a_floor_and_records_why(
    trained_run: TrainedRun, lenient: Settings
) -> None:
    strict = lenient.model_copy(update={"gate_min_macro_f1": 1.01})
    version = register(trained_run.run_id, strict)

    decision = run_gate(version, strict, trained_run.data_dir)

    assert decision.decision == "rejected" and "floor" in decision.reason
    assert current_champion(strict) is None  # nothing became champion
    tags = configure_mlflow(strict).get_model_version(strict.model_name, version).tags
    assert tags["gate.decision"] == "rejected" and tags["gate.reason"] == decision.reason
    assert json.loads(tags["gate.champion_metrics"]) is None
    [row] = events(strict)
    assert (row["decision"], row["reason"], row["champion_version"]) == (
        "rejected",
        decision.reason,
        None,
    )
    assert row["candidate_metrics"]["macro_f1"] is not None


def test_an_equal_model_is_promoted_over_the_champion_and_remembers_it(
    trained_run: TrainedRun, lenient: Settings
) -> None:
    first = register(trained_run.run_id, lenient)
    run_gate(first, lenient, trained_run.data_dir)
    same = register(trained_run.run_id, lenient)  # the same network: every metric equal

    decision = run_gate(same, lenient, trained_run.data_dir)

    assert (decision.decision, decision.champion_version) == ("promoted", first)
    assert decision.champion_metrics == decision.candidate_metrics  # one split, one serving path
    assert "no worse than the champion" in decision.reason
    tags = configure_mlflow(lenient).get_model_version(lenient.model_name, same).tags
    assert tags["previous_champion"] == first and current_champion(lenient) == same


def test_promote_latest_by_override_then_roll_back_to_the_previous_champion(
    trained_run: TrainedRun, lenient: Settings
) -> None:
    first = register(trained_run.run_id, lenient)
    promote(first, "first", lenient, actor="operator:test")
    second = register(trained_run.run_id, lenient)

    override = promote("latest", "ticket 42", lenient, actor="operator:test")

    assert (override.decision, override.candidate_version) == ("override", second)
    assert override.champion_version == first and current_champion(lenient) == second

    back = rollback("bad night", lenient, actor="operator:test")

    assert (back.decision, back.candidate_version, back.champion_version) == (
        "rollback",
        first,
        second,
    )
    assert current_champion(lenient) == first
    rows = [(r["decision"], r["candidate_version"], r["reason"]) for r in events(lenient)]
    assert rows == [
        ("override", first, "first"),
        ("override", second, "ticket 42"),
        ("rollback", first, "bad night"),
    ]
    with pytest.raises(LookupError, match="no previous champion"):
        rollback("again", lenient)  # the first champion replaced nobody
    assert current_champion(lenient) == first


def test_rollback_without_a_champion_raises_lookup_error(
    trained_run: TrainedRun, lenient: Settings
) -> None:
    with pytest.raises(LookupError, match="no champion"):
        rollback("nothing to go back to", lenient)  # no such model at all

    register(trained_run.run_id, lenient)  # registered, never promoted
    with pytest.raises(LookupError, match="no champion"):
        rollback("nothing to go back to", lenient)
    assert events(lenient) == []
