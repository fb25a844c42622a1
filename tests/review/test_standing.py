"""Whether the model in use passed the gate, from promotion_events (issue 13, item 2)."""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import text

from lung_model.platform.db import get_engine
from lung_model.review.standing import champion_standing, standing, version_standing

REJECTED = "below floor: malignant recall 0.600 < floor 0.950"


def event(version: str, decision: str, day: int, actor: str = "gate", reason: str = "r") -> dict:
    return {
        "candidate_version": version,
        "decision": decision,
        "reason": reason,
        "actor": actor,
        "created_at": datetime(2025, 3, day, 9, 0),
    }


def test_an_override_after_a_rejection_says_why_in_words() -> None:
    events = [
        event("2", "rejected", 1, reason=REJECTED),
        event("2", "override", 2, actor="make-demo", reason="make demo: no champion yet"),
    ]
    found = standing(events, "2")
    assert found.overridden and not found.cleared
    assert found.warning() == (
        "The model in use (version 2) was promoted by operator override on 2025-03-02 "
        f"(make-demo): it did not pass the safety gate ({REJECTED}). Not for clinical use."
    )


def test_a_version_the_gate_promoted_needs_no_banner() -> None:
    assert standing([event("1", "promoted", 1)], "1").warning() is None
    # promoted once, later overridden back in (e.g. after a rollback): it did pass the gate
    again = [event("1", "promoted", 1), event("1", "override", 5, actor="operator:ann")]
    assert standing(again, "1").warning() is None


def test_rollback_to_a_version_that_never_passed_the_gate_still_warns() -> None:
    events = [event("3", "override", 1), event("4", "promoted", 2), event("3", "rollback", 3)]
    warning = standing(events, "3").warning()
    assert warning is not None and "rolled back on 2025-03-03" in warning
    assert "the safety gate never passed it" in warning
    assert standing(events, "4").warning() is None  # other versions' events do not count


def test_the_champion_is_the_newest_alias_move_in_the_database(settings) -> None:
    engine = get_engine(settings)
    name = f"standing-{uuid.uuid4().hex[:8]}"
    assert champion_standing(engine, name) is None
    rows = [("1", "promoted", "gate"), ("2", "rejected", "gate"), ("2", "override", "make-demo")]
    with engine.begin() as connection:
        for version, decision, actor in rows:
            connection.execute(
                text(
                    "INSERT INTO promotion_events (model_name, candidate_version, decision,"
                    " reason, actor) VALUES (:m, :v, :d, :r, :a)"
                ),
                {"m": name, "v": version, "d": decision, "r": REJECTED, "a": actor},
            )
    champion = champion_standing(engine, name)
    assert champion is not None and champion.version == "2" and champion.overridden
    assert champion.gate_reason == REJECTED
    assert not version_standing(engine, name, "1").overridden
