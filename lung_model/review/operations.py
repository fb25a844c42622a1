"""The operations view: batches with throughput and errors, the quarantine, drift, backlog,
and the studies unlike the scans their model learned from (the acquisition guard,
`lung_model.scoring.guard`: counted over the studies a model with a range scored).

Drift here is the shift of the predicted-class mix and of the mean malignant probability
between the last `days` days and everything scored before (total variation distance of the
two class distributions), per model version, over the scored slices (the ones "Slices
scored" counts) with the prediction of the version that scored their study.
See https://docs.sqlalchemy.org/en/20/core/connections.html#using-textual-sql
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Engine, text

from lung_model.platform.names import stored_names
from lung_model.scoring.guard import MEASUREMENTS, summary_line
from lung_model.scoring.inbox import waiting_folders
from lung_model.scoring.sensitivity import HIGH_SENSITIVITY
from lung_model.settings import CLASSES, Settings

_STATUS = text("""
SELECT count(*) FILTER (WHERE status = 'processing') AS processing,
       count(*) FILTER (WHERE status = 'done') AS done,
       count(*) FILTER (WHERE status = 'failed') AS failed,
       coalesce(sum(n_files), 0) AS files, coalesce(sum(n_scored), 0) AS scored,
       coalesce(sum(n_quarantined), 0) AS quarantined,
       coalesce(sum(n_scored) FILTER (WHERE finished_at > now() - interval '1 day'), 0)
           AS scored_last_day
FROM scan_batches
""")
_THROUGHPUT = text("""
SELECT sum(n_scored) / nullif(sum(extract(epoch FROM finished_at - started_at)), 0)
FROM scan_batches WHERE status = 'done' AND finished_at > now() - interval '1 day'
""")
_BACKLOG = text("""
SELECT count(DISTINCT sr.batch_id) FROM study_results sr
WHERE NOT EXISTS (SELECT 1 FROM reviews v WHERE v.batch_id = sr.batch_id AND v.image_id IS NULL)
""")
_BATCHES = text("""
SELECT id, study, status, n_files, n_scored, n_quarantined, model_version, started_at,
       finished_at, extract(epoch FROM finished_at - started_at) AS seconds,
       CASE WHEN finished_at > started_at
            THEN n_scored / extract(epoch FROM finished_at - started_at) END AS slices_per_second,
       error
FROM scan_batches ORDER BY started_at DESC, id DESC LIMIT :limit
""")
_QUARANTINE = text("""
SELECT b.study, i.path, i.format, i.size_bytes, i.reason, i.created_at
FROM images i JOIN scan_batches b ON b.id = i.batch_id
WHERE i.status = 'quarantined' ORDER BY i.created_at DESC, i.id DESC LIMIT :limit
""")
_REASONS = text("""
SELECT reason, count(*) AS files FROM images WHERE status = 'quarantined'
GROUP BY reason ORDER BY files DESC, reason
""")
# Scored slices per model version, class and whether their study was scored in the window
# [:start, :end) (default: the last :days days): one row per scored slice and model version
# that scored its study (the same slices that "Slices scored" counts), not per distinct
# image content: predictions are stored once per content and version, and a study may hold
# exact duplicates or repeat another study. The Operations page and the daily checks
# (`lung_model.pipelines.monitoring`) both count with it.
_SCORED_SLICES = text("""
SELECT p.model_name, p.model_version,
       sr.created_at >= coalesce(CAST(:start AS timestamptz), now() - make_interval(days => :days))
           AND sr.created_at < coalesce(CAST(:end AS timestamptz), 'infinity') AS recent,
       p.predicted_class, count(*) AS n, avg(p.p_malignant) AS mean_p_malignant
FROM images i
JOIN study_results sr ON sr.batch_id = i.batch_id
JOIN predictions p ON p.image_sha256 = i.sha256
    AND p.model_name = sr.model_name AND p.model_version = sr.model_version
WHERE i.status = 'scored'
GROUP BY 1, 2, 3, 4
""")


# Each study's latest result (the worklist's), or every result created in [:start, :end) when
# a window is given (the daily checks), counted once for both of what the acquisition checks
# found: studies a guarded model scored (acquisition_outside NULL: unguarded) and those outside
# its range, per measurement and side; studies checked under other exports and those whose
# call changes on at least :high of their checked slices (`lung_model.scoring.sensitivity`).
# PostgreSQL materialises a CTE referenced twice, so the results are read once.
_ACQUISITION = text("""
WITH results AS (
    SELECT r.acquisition_outside, r.sensitivity_share FROM study_results r
    WHERE CAST(:start AS timestamptz) IS NOT NULL
      AND r.created_at >= :start AND r.created_at < :end
    UNION ALL
    SELECT r.acquisition_outside, r.sensitivity_share
    FROM worklist_entries w JOIN study_results r ON r.id = w.result_id
    WHERE CAST(:start AS timestamptz) IS NULL
)
SELECT NULL AS measurement, NULL AS side,
       count(*) FILTER (WHERE acquisition_outside IS NOT NULL) AS guarded,
       count(*) FILTER (WHERE jsonb_array_length(acquisition_outside) > 0) AS studies,
       count(sensitivity_share) AS checked,
       count(*) FILTER (WHERE sensitivity_share >= :high) AS sensitive
FROM results
UNION ALL
SELECT d->>'measurement', d->>'side', NULL, count(*), NULL, NULL
FROM results, jsonb_array_elements(coalesce(acquisition_outside, '[]')) d
GROUP BY 1, 2
""")
_UNLIKE_STUDIES = text("""
SELECT w.batch_id, w.study, r.model_version, r.predicted_class, r.acquisition_outside,
       r.created_at AS scored_at
FROM worklist_entries w JOIN study_results r ON r.id = w.result_id
WHERE jsonb_array_length(r.acquisition_outside) > 0
ORDER BY r.created_at DESC, w.batch_id DESC LIMIT :limit
""")
_CHECKS = text("""
SELECT checked_at, window_start, window_end, breaches, report
FROM monitoring_checks ORDER BY checked_at DESC, id DESC LIMIT :limit
""")


def _rows(engine: Engine, statement: Any, **params: Any) -> list[dict[str, Any]]:
    with engine.connect() as connection:
        return [dict(row) for row in connection.execute(statement, params).mappings()]


def status_counts(engine: Engine) -> dict[str, float]:
    """Batches by status, files scored and quarantined, studies awaiting review, and the
    scoring throughput of the last day (slices per second of batch wall time)."""
    counts: dict[str, float] = {k: int(v) for k, v in _rows(engine, _STATUS)[0].items()}
    with engine.connect() as connection:
        counts["awaiting_review"] = int(connection.execute(_BACKLOG).scalar_one())
        counts["slices_per_second"] = float(connection.execute(_THROUGHPUT).scalar() or 0.0)
    return counts


def recent_batches(engine: Engine, limit: int = 200) -> list[dict[str, Any]]:
    return _rows(engine, _BATCHES, limit=limit)


def quarantined_files(engine: Engine, limit: int = 500) -> list[dict[str, Any]]:
    return _rows(engine, _QUARANTINE, limit=limit)


def quarantine_reasons(engine: Engine) -> list[dict[str, Any]]:
    return _rows(engine, _REASONS)


def monitoring_history(engine: Engine, limit: int = 30) -> list[dict[str, Any]]:
    """The latest daily checks (drift PSI, backlog, failures) with their breaches, if any ran."""
    with engine.connect() as connection:
        if connection.execute(text("SELECT to_regclass('monitoring_checks')")).scalar() is None:
            return []
    return _rows(engine, _CHECKS, limit=limit)


def age(seconds: float) -> str:
    """'45 s', '12 min', '3 h 20 min', '2 d 4 h'."""
    minutes, hours, days = int(seconds // 60), int(seconds // 3600), int(seconds // 86400)
    if seconds < 60:
        return f"{seconds:.0f} s"
    if hours < 1:
        return f"{minutes} min"
    if days < 1:
        return f"{hours} h {minutes % 60} min"
    return f"{days} d {hours % 24} h"


def inbox_waiting(settings: Settings) -> list[dict[str, Any]]:
    """Inbox entries the scorer will not take yet (no ready marker, ...), oldest first; named
    as the database would name them (pseudonyms with `LUNG_PSEUDONYMISE_NAMES`)."""
    names = stored_names(settings)
    return [
        {
            "in inbox": names.name(item.name),
            "unchanged for": age(item.age_seconds),
            "waiting because": item.why,
        }
        for item in waiting_folders(settings)
    ]


def predicted_mix(engine: Engine, start: datetime, end: datetime) -> dict[str, float]:
    """Scored slices per predicted class whose study was scored in [start, end): each slice
    once per model version that scored it, exact duplicates included (as "Slices scored")."""
    mix: dict[str, float] = {}
    for row in _rows(engine, _SCORED_SLICES, start=start, end=end, days=0):
        if row["recent"]:
            label = str(row["predicted_class"])
            mix[label] = mix.get(label, 0.0) + float(row["n"])
    return mix


def drift_summary(engine: Engine, days: int = 7) -> list[dict[str, Any]]:
    """Per model version: scored slices, class shares recently and before, and their
    distance (0 to 1). Recent means the version scored the slice's study in the last `days`."""
    windows: dict[tuple[str, str], dict[bool, dict[str, Any]]] = {}
    for row in _rows(engine, _SCORED_SLICES, start=None, end=None, days=days):
        key = (row["model_name"], row["model_version"])
        window = windows.setdefault(key, {}).setdefault(
            row["recent"], {"n": 0, "classes": dict.fromkeys(CLASSES, 0), "p_sum": 0.0}
        )
        window["n"] += row["n"]
        window["classes"][row["predicted_class"]] += row["n"]
        window["p_sum"] += float(row["mean_p_malignant"]) * row["n"]
    summary = []
    for (name, version), parts in sorted(windows.items()):
        shares = {
            recent: {c: w["classes"][c] / w["n"] for c in CLASSES} for recent, w in parts.items()
        }
        line: dict[str, Any] = {"model": name, "version": version}
        for recent, label in ((True, "recent"), (False, "before")):
            part = parts.get(recent)
            line[f"{label}_n"] = part["n"] if part else 0
            line[f"{label}_mean_p_malignant"] = part["p_sum"] / part["n"] if part else None
            for c in CLASSES:
                line[f"{label}_{c}"] = shares[recent][c] if part else None
        both = True in shares and False in shares
        line["class_shift"] = (
            sum(abs(shares[True][c] - shares[False][c]) for c in CLASSES) / 2 if both else None
        )
        summary.append(line)
    return summary


def acquisition_counts(
    engine: Engine, start: datetime | None = None, end: datetime | None = None
) -> tuple[dict[str, Any], dict[str, int]]:
    """What the acquisition checks found, every study by its latest result, or, with a window,
    the results created in [start, end) (the daily checks), in one query:
    - {'guarded': studies a model with an acquisition range scored, 'unlike': those outside
      it, 'by_measurement': {'pixel noise below': n, ...}};
    - {'checked': studies scored again under other exports, 'sensitive': those whose call
      another export changes on at least `HIGH_SENSITIVITY` of their checked slices}."""
    unlike: dict[str, Any] = {"guarded": 0, "unlike": 0, "by_measurement": {}}
    sensitive = {"checked": 0, "sensitive": 0}
    for row in _rows(engine, _ACQUISITION, high=HIGH_SENSITIVITY, start=start, end=end):
        if row["measurement"] is None:
            unlike["guarded"], unlike["unlike"] = int(row["guarded"]), int(row["studies"])
            sensitive = {"checked": int(row["checked"]), "sensitive": int(row["sensitive"])}
        else:
            name = MEASUREMENTS.get(row["measurement"], row["measurement"])
            unlike["by_measurement"][f"{name} {row['side']}"] = int(row["studies"])
    return unlike, sensitive


def unlike_training_studies(engine: Engine, limit: int = 200) -> list[dict[str, Any]]:
    """The latest studies unlike the scans their model learned from, newest first, with
    what differed in words."""
    found = _rows(engine, _UNLIKE_STUDIES, limit=limit)
    for row in found:
        row["unlike in"] = summary_line(row.pop("acquisition_outside"))
    return found
