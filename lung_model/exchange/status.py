"""What went to the hospital and what waits: the `result_deliveries` ledger as the Study and
Operations pages show it (read only; the dashboard's role may select it)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Engine, text

_STUDY = text("""
SELECT report, report_status AS status_of_report, channel, destination, status, attempts,
       sent_at, next_attempt_at AS next_attempt, last_error, object_uid
FROM result_deliveries WHERE batch_id = :batch_id ORDER BY created_at, id
""")
_COUNTS = text("""
SELECT count(*) FILTER (WHERE status = 'sent') AS sent,
       count(*) FILTER (WHERE status = 'waiting') AS waiting,
       count(*) FILTER (WHERE status = 'waiting' AND attempts > 0) AS failing,
       max(sent_at) AS last_sent
FROM result_deliveries
""")
_WAITING = text("""
SELECT d.batch_id AS batch, b.study, d.report, d.channel, d.destination, d.attempts,
       d.next_attempt_at AS next_attempt, d.last_error, d.created_at AS since
FROM result_deliveries d JOIN scan_batches b ON b.id = d.batch_id
WHERE d.status = 'waiting' ORDER BY d.created_at, d.id LIMIT :limit
""")


def study_deliveries(engine: Engine, batch_id: int) -> list[dict[str, Any]]:
    """Every delivery of a study's reports, oldest first."""
    with engine.connect() as connection:
        return [dict(r) for r in connection.execute(_STUDY, {"batch_id": batch_id}).mappings()]


def delivery_counts(engine: Engine) -> dict[str, Any]:
    """Sent, waiting, waiting after a failed attempt, and the last time one was sent."""
    with engine.connect() as connection:
        return dict(connection.execute(_COUNTS).mappings().one())


def waiting_deliveries(engine: Engine, limit: int = 100) -> list[dict[str, Any]]:
    """Deliveries not sent yet, oldest first, with their last error."""
    with engine.connect() as connection:
        return [dict(r) for r in connection.execute(_WAITING, {"limit": limit}).mappings()]
