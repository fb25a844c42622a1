"""The worklist: each study's latest result, riskiest first, filtered and paged in SQL.

A study (one scan batch) may have been scored by several model versions; the worklist shows
its newest result and its newest study-level review (reviews are append-only, so a later one
supersedes an earlier one here without erasing it). Triggers keep `worklist_entries` (one
row per study, `sql/0003.dashboard-worklist.sql`) current, so a page is one indexed read
even at 100,000 studies (`bench/bench_worklist.py`). Every filter is a bound parameter.
A row's `acquisition_outside` says whether the study is unlike the scans its model learned
from (`lung_model.scoring.guard`; None: an unguarded model; `summary_line` in words), its
`acquisition_sensitivity` on how many checked slices another export changes the call
(`lung_model.scoring.sensitivity`; None: not checked; `sensitivity.described` in words).
See https://docs.sqlalchemy.org/en/20/core/connections.html#using-textual-sql
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any, Literal

from sqlalchemy import Engine, text

from lung_model.platform.names import StoredNames

Status = Literal["all", "unreviewed", "reviewed", "disagreement", "uncertain"]
Order = Literal["risk", "teach"]
ORDERS: tuple[Order, ...] = ("risk", "teach")
# "risk": riskiest first (triage). "teach": the reviews that teach the model most first
# (issue 22), by the study's teach priority, stored with its worklist row and indexed
# (sql/0008.teach-order.sql, `teach_priority`), each term in [0, 1]:
#     [unlike the scans the model learned from (the acquisition guard)]
#   + [the model is unsure (needs_review)]
#   + the share of its checked slices whose call another export changes (`sensitivity`)
#   + 1 - 2 |max p(malignant) - 0.5|  (a verdict closest to a coin toss)
# highest first; riskiest first among equals.
_ORDER_SQL: dict[Order, str] = {
    "risk": "w.max_p_malignant DESC, w.batch_id",
    "teach": "w.teach_priority DESC, w.max_p_malignant DESC, w.batch_id",
}
STATUSES: tuple[Status, ...] = ("all", "unreviewed", "reviewed", "disagreement", "uncertain")

_ROWS = """
SELECT w.batch_id, w.study, w.received_at AS started_at,
       r.model_name, r.model_version, r.data_version, r.n_slices,
       r.max_p_malignant, r.mean_p_malignant, r.n_malignant_slices,
       r.predicted_class, r.needs_review, r.created_at AS scored_at, r.acquisition_outside,
       r.acquisition_sensitivity, w.teach_priority,
       v.reviewer, v.decision, v.corrected_label, v.created_at AS reviewed_at,
       w.reviewed_label, b.n_files, b.n_scored, b.n_quarantined
FROM worklist_entries w
JOIN study_results r ON r.id = w.result_id
JOIN scan_batches b ON b.id = w.batch_id
LEFT JOIN reviews v ON v.id = w.review_id
"""

_STATUS_SQL: dict[Status, str] = {
    "all": "true",
    "unreviewed": "w.review_id IS NULL",
    "reviewed": "w.review_id IS NOT NULL",
    "disagreement": "w.disagrees",
    "uncertain": "w.needs_review",
}


@dataclass(frozen=True)
class WorklistFilter:
    status: Status = "all"
    since: date | None = None  # study received on or after
    until: date | None = None  # study received on or before
    study: str = ""  # batch id, the start of the study folder name (as stored), or its name
    page: int = 1
    page_size: int = 50
    order: Order = "risk"


@dataclass(frozen=True)
class WorklistPage:
    rows: list[dict[str, Any]]
    total: int
    page: int
    pages: int


def files_summary(row: dict[str, Any]) -> str:
    """'3 of 4 scored, 1 quarantined': what became of every file of the study."""
    summary = f"{row['n_scored']} of {row['n_files']} scored"
    return summary + (f", {row['n_quarantined']} quarantined" if row["n_quarantined"] else "")


def _where(wanted: WorklistFilter, names: StoredNames) -> tuple[str, dict[str, Any]]:
    clauses = [_STATUS_SQL[wanted.status]]
    params: dict[str, Any] = {}
    if wanted.since:
        clauses.append("w.received_at >= :since")
        params["since"] = wanted.since
    if wanted.until:
        clauses.append("w.received_at < :until")
        params["until"] = wanted.until + timedelta(days=1)
    query = wanted.study.strip()
    matches = []
    if query.isdigit():
        matches.append("w.batch_id = :batch_id")
        params["batch_id"] = int(query)
    elif query:
        escaped = query.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        matches.append("w.study LIKE :prefix")
        params["prefix"] = escaped + "%"
    if query and names.key is not None:  # pseudonyms: the real name typed finds it too
        matches.append("w.study = :stored_as")
        params["stored_as"] = names.name(query)
    if matches:
        clauses.append(f"({' OR '.join(matches)})")
    return " AND ".join(clauses), params


def worklist(
    engine: Engine, wanted: WorklistFilter, names: StoredNames | None = None
) -> WorklistPage:
    """One page of studies, highest malignancy risk first (or in `order`), and how many match
    in all; with pseudonymised `names`, a study is also found by the real name it was dropped
    under."""
    if wanted.status not in _STATUS_SQL:
        raise ValueError(f"unknown status filter {wanted.status!r}")
    if wanted.order not in _ORDER_SQL:
        raise ValueError(f"unknown order {wanted.order!r}")
    where, params = _where(wanted, names or StoredNames())
    size = max(1, min(wanted.page_size, 500))
    page = max(1, wanted.page)
    rows_sql = text(
        f"{_ROWS} WHERE {where} "  # noqa: S608 - fixed clauses, bound values
        f"ORDER BY {_ORDER_SQL[wanted.order]} LIMIT :limit OFFSET :offset"
    )
    count_sql = text(f"SELECT count(*) FROM worklist_entries w WHERE {where}")  # noqa: S608
    with engine.connect() as connection:
        total = int(connection.execute(count_sql, params).scalar_one())
        pages = max(1, -(-total // size))
        page = min(page, pages)
        result = connection.execute(
            rows_sql, {**params, "limit": size, "offset": (page - 1) * size}
        )
        rows = [dict(row._mapping) for row in result]
    return WorklistPage(rows=rows, total=total, page=page, pages=pages)
