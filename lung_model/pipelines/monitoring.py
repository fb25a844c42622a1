"""Daily health checks of the running system.

Over a time window: does the mix of predicted classes of the scored slices (every scored
slice, exact duplicates too, as the Operations page counts them:
`lung_model.review.operations.predicted_mix`) drift from the labels the model was trained on
(population stability index over normal/benign/malignant)? Do the scanned studies drift
away from the acquisitions the model learned from (the share of the studies a guarded model
scored that were unlike its training scans, `lung_model.scoring.guard`)? How many scored
studies wait for
a clinician's review? How many study folders failed, how many files were quarantined? Each
run is stored in `monitoring_checks` and returned with its `breaches`; the DAG raises each
as an alert (`lung_model.platform.alerts`).
"""

from __future__ import annotations

import csv
import json
import logging
import math
from datetime import datetime
from pathlib import Path
from typing import Any

from sqlalchemy import text

from lung_model.platform import db
from lung_model.review.operations import (
    acquisition_counts,
    predicted_mix,
)
from lung_model.settings import CLASSES, Settings, get_settings

log = logging.getLogger(__name__)


def psi(expected: dict[str, float], actual: dict[str, float], floor: float = 1e-4) -> float:
    """Population stability index between two class mixes (counts or shares)."""
    e_total = sum(expected.values()) or 1.0
    a_total = sum(actual.values()) or 1.0
    value = 0.0
    for label in CLASSES:
        e = max(expected.get(label, 0.0) / e_total, floor)
        a = max(actual.get(label, 0.0) / a_total, floor)
        value += (a - e) * math.log(a / e)
    return value


def training_mix(data_dir: Path) -> dict[str, float]:
    """Label counts of the labelled dataset (its MANIFEST.csv), the reference mix."""
    counts = {label: 0.0 for label in CLASSES}
    manifest = data_dir / "MANIFEST.csv"
    if manifest.exists():
        for row in csv.DictReader(manifest.open()):
            if row.get("label") in counts:
                counts[row["label"]] += 1
    return counts


QUERIES = {
    "backlog": """
        SELECT count(*) FROM scan_batches b
        WHERE b.status = 'done' AND b.started_at < :end
          AND EXISTS (SELECT 1 FROM study_results s WHERE s.batch_id = b.id)
          AND NOT EXISTS (SELECT 1 FROM reviews r WHERE r.batch_id = b.id)""",
    "failed_batches": """
        SELECT count(*) FROM scan_batches
        WHERE status = 'failed' AND started_at >= :start AND started_at < :end""",
    "quarantined": """
        SELECT count(*) FROM images
        WHERE status = 'quarantined' AND created_at >= :start AND created_at < :end""",
}


def acquisition_breach(counted: dict[str, Any], most: float) -> str | None:
    """Acquisition drift, when more than `most` of the guarded studies were unlike the scans
    their model learned from (`review.operations.acquisition_counts`)."""
    guarded, unlike = counted["guarded"], counted["unlike"]
    if not guarded or unlike / guarded <= most:
        return None
    which = ", ".join(f"{what}: {n}" for what, n in counted["by_measurement"].items())
    return (
        f"acquisition drift: {unlike} of {guarded} studies ({unlike / guarded:.0%}) unlike the"
        f" scans their model learned from ({which}) > {most:.0%}"
    )


def run_checks(start: datetime, end: datetime, settings: Settings | None = None) -> dict[str, Any]:
    """Check the window [start, end), store the report, and return it (with `breaches`)."""
    settings = settings or get_settings()
    window = {"start": start, "end": end}
    engine = db.get_engine(settings)
    predicted = predicted_mix(engine, start, end)
    with engine.connect() as connection:
        backlog = int(connection.execute(text(QUERIES["backlog"]), window).scalar_one())
        failed = int(connection.execute(text(QUERIES["failed_batches"]), window).scalar_one())
        quarantined = int(connection.execute(text(QUERIES["quarantined"]), window).scalar_one())
    acquisition, sensitive = acquisition_counts(engine, start, end)
    reference = training_mix(settings.raw_data)
    drift = psi(reference, predicted) if sum(predicted.values()) else None
    breaches = []
    if drift is not None and drift > settings.monitor_max_psi:
        breaches.append(f"prediction drift: PSI {drift:.3f} > {settings.monitor_max_psi}")
    if breach := acquisition_breach(acquisition, settings.monitor_max_unlike_training):
        breaches.append(breach)
    if backlog > settings.monitor_max_backlog:
        breaches.append(f"review backlog: {backlog} studies > {settings.monitor_max_backlog}")
    if failed:
        breaches.append(f"{failed} study folder(s) failed to score")
    report: dict[str, Any] = {
        "window": [start.isoformat(), end.isoformat()],
        "predicted_mix": predicted,
        "training_mix": reference,
        "psi": drift,
        "unlike_training": acquisition,
        # watched, not alerted on: what share is normal is not known yet (issue 22)
        "sensitive_to_export": sensitive,
        "review_backlog": backlog,
        "failed_batches": failed,
        "quarantined_files": quarantined,
        "breaches": breaches,
    }
    with engine.begin() as connection:
        connection.execute(
            text("""
                INSERT INTO monitoring_checks (window_start, window_end, report, breaches)
                VALUES (:start, :end, CAST(:report AS jsonb), :breaches)
                ON CONFLICT (window_start, window_end) DO UPDATE
                SET report = EXCLUDED.report, breaches = EXCLUDED.breaches, checked_at = now()"""),
            {**window, "report": json.dumps(report), "breaches": breaches},
        )
    return report
