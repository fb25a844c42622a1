"""Whether a model version is fit to serve clinicians: did it ever pass the safety gate?

A version stands cleared once the gate promoted it. One that became champion by operator
override (the demo's `make-demo` actor included), or by a rollback to such a version,
never passed the gate: every clinical page says so while it serves. The answer is read
from `promotion_events` alone, where every move of the champion alias is recorded
(`lung_model.lifecycle.promotion`: gate, override, rollback), so pages need no registry
call; the champion is the candidate of the newest event that moved the alias.
See https://mlflow.org/docs/latest/ml/model-registry/
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Engine, text

ARRIVALS = ("promoted", "override", "rollback")  # the decisions that move the champion alias
_EVENTS = text("""
SELECT candidate_version, decision, reason, actor, created_at
FROM promotion_events WHERE model_name = :model_name AND candidate_version = :version
ORDER BY created_at DESC, id DESC
""")
_CHAMPION = text("""
SELECT candidate_version FROM promotion_events
WHERE model_name = :model_name AND decision IN ('promoted', 'override', 'rollback')
ORDER BY created_at DESC, id DESC LIMIT 1
""")


@dataclass(frozen=True)
class Standing:
    """How one model version came to serve, and whether the gate ever passed it."""

    version: str
    cleared: bool  # the gate promoted it at least once
    arrival: str | None  # promoted, override or rollback: its newest alias move
    since: datetime | None
    actor: str | None
    reason: str | None  # the reason recorded with that move
    gate_reason: str | None  # why the gate rejected it, if the gate ever judged it

    @property
    def overridden(self) -> bool:
        return not self.cleared and self.arrival is not None

    def warning(self, subject: str = "The model in use") -> str | None:
        """The banner for clinical pages, in plain words; None when the gate passed it."""
        if not self.overridden:
            return None
        how = "promoted by operator override" if self.arrival == "override" else "rolled back"
        when = f" on {self.since:%Y-%m-%d}" if self.since else ""
        who = f" ({self.actor})" if self.actor else ""
        failed = (
            f"it did not pass the safety gate ({self.gate_reason})"
            if self.gate_reason
            else "the safety gate never passed it"
        )
        return (
            f"{subject} (version {self.version}) was {how}{when}{who}: {failed}. "
            "Not for clinical use."
        )


def standing(events: list[dict[str, Any]], version: str) -> Standing:
    """The standing of `version` from its promotion events (any order)."""
    mine = sorted(
        (e for e in events if str(e["candidate_version"]) == version),
        key=lambda e: e["created_at"],
        reverse=True,
    )
    arrival = next((e for e in mine if e["decision"] in ARRIVALS), None)
    rejected = next((e for e in mine if e["decision"] == "rejected"), None)
    return Standing(
        version=version,
        cleared=any(e["decision"] == "promoted" for e in mine),
        arrival=arrival["decision"] if arrival else None,
        since=arrival["created_at"] if arrival else None,
        actor=arrival["actor"] if arrival else None,
        reason=arrival["reason"] if arrival else None,
        gate_reason=rejected["reason"] if rejected else None,
    )


def version_standing(engine: Engine, model_name: str, version: str) -> Standing:
    with engine.connect() as connection:
        rows = connection.execute(_EVENTS, {"model_name": model_name, "version": str(version)})
        return standing([dict(row) for row in rows.mappings()], str(version))


def champion_standing(engine: Engine, model_name: str) -> Standing | None:
    """The current champion's standing; None before any model became champion."""
    with engine.connect() as connection:
        version = connection.execute(_CHAMPION, {"model_name": model_name}).scalar()
    return None if version is None else version_standing(engine, model_name, str(version))
