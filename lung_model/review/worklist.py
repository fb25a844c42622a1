"""The worklist: each study's latest result, riskiest first, filtered and paged in SQL.

A study (one scan batch) may have been scored by several model versions; the worklist shows
its newest result and its newest study-level review (reviews are append-only, so a later one
supersedes an earlier one here without erasing it). Every filter is a bound parameter.
Indexes from `sql/0003.dashboard-role.sql` keep this under a second at 100,000 predictions
(`bench/bench_worklist.py`).
See https://docs.sqlalchemy.org/en/20/core/connections.html#using-textual-sql
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any, Literal

from sqlalchemy import Engine, text

Status = Literal["all", "unreviewed", "reviewed", "disagreement", "uncertain"]
STATUSES: tuple[Status, ...] = ("all", "unreviewed", "reviewed", "disagreement", "uncertain")

_ROWS = """
WITH latest AS (
    SELECT sr.*
    FROM study_results sr
    WHERE NOT EXISTS (
        SELECT 1 FROM study_results newer
        WHERE newer.batch_id = sr.batch_id
          AND (newer.created_at, newer.id) > (sr.created_at, sr.id))
)
SELECT b.id AS batch_id, b.study, b.started_at,
       r.model_name, r.model_version, r.data_version, r.n_slices,
       r.max_p_malignant, r.mean_p_malignant, r.n_malignant_slices,
       r.predicted_class, r.needs_review, r.created_at AS scored_at,
       rv.reviewer, rv.decision, rv.corrected_label, rv.created_at AS reviewed_at,
       CASE WHEN rv.decision = 'correct' THEN rv.corrected_label
            WHEN rv.decision = 'confirm' THEN r.predicted_class END AS reviewed_label
FROM latest r
JOIN scan_batches b ON b.id = r.batch_id
LEFT JOIN LATERAL (
    SELECT v.reviewer, v.decision, v.corrected_label, v.created_at
    FROM reviews v
    WHERE v.batch_id = r.batch_id AND v.image_id IS NULL
    ORDER BY v.created_at DESC, v.id DESC
    LIMIT 1
) rv ON true
"""

_STATUS_SQL: dict[Status, str] = {
    "all": "true",
    "unreviewed": "rv.decision IS NULL",
    "reviewed": "rv.decision IS NOT NULL",
    "disagreement": "rv.decision = 'correct' AND rv.corrected_label <> r.predicted_class",
    "uncertain": "r.needs_review",
}


@dataclass(frozen=True)
class WorklistFilter:
    status: Status = "all"
    since: date | None = None  # study received on or after
    until: date | None = None  # study received on or before
    study: str = ""  # batch id, or the start of the study folder name
    page: int = 1
    page_size: int = 50


@dataclass(frozen=True)
class WorklistPage:
    rows: list[dict[str, Any]]
    total: int
    page: int
    pages: int


def _where(wanted: WorklistFilter) -> tuple[str, dict[str, Any]]:
    clauses = [_STATUS_SQL[wanted.status]]
    params: dict[str, Any] = {}
    if wanted.since:
        clauses.append("b.started_at >= :since")
        params["since"] = wanted.since
    if wanted.until:
        clauses.append("b.started_at < :until")
        params["until"] = wanted.until + timedelta(days=1)
    query = wanted.study.strip()
    if query.isdigit():
        clauses.append("b.id = :batch_id")
        params["batch_id"] = int(query)
    elif query:
        escaped = query.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        clauses.append("b.study LIKE :prefix")
        params["prefix"] = escaped + "%"
    return " AND ".join(clauses), params


def worklist(engine: Engine, wanted: WorklistFilter) -> WorklistPage:
    """One page of studies, highest malignancy risk first, and how many match in all."""
    if wanted.status not in _STATUS_SQL:
        raise ValueError(f"unknown status filter {wanted.status!r}")
    where, params = _where(wanted)
    size = max(1, min(wanted.page_size, 500))
    page = max(1, wanted.page)
    rows_sql = text(
        f"SELECT * FROM ({_ROWS} WHERE {where}) w "  # noqa: S608 - fixed clauses, bound values
        "ORDER BY max_p_malignant DESC, batch_id LIMIT :limit OFFSET :offset"
    )
    count_sql = text(f"SELECT count(*) FROM ({_ROWS} WHERE {where}) w")  # noqa: S608
    with engine.connect() as connection:
        total = int(connection.execute(count_sql, params).scalar_one())
        pages = max(1, -(-total // size))
        page = min(page, pages)
        result = connection.execute(
            rows_sql, {**params, "limit": size, "offset": (page - 1) * size}
        )
        rows = [dict(row._mapping) for row in result]
    return WorklistPage(rows=rows, total=total, page=page, pages=pages)
