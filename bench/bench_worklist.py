"""Worklist query time with 100,000 predictions (target: under 1 second per page).

Creates a throwaway database on the configured PostgreSQL (embedded by default), migrates
it, and fills it in SQL: scenario A has 100,000 predictions in 5,000 studies of 20 slices
(a fifth rescored by a second model version, a third reviewed, some corrected; a seventh
unlike the training scans, calls changing under another export on 0 to 12 of 12 checked
slices, for the "teach the model" order); scenario B
puts each of 100,000 predictions in a study of its own (the worst case for the worklist).
Each query of `lung_model.review.worklist` (which reads the trigger-maintained
`worklist_entries`) runs 5 times (median and worst); the baseline in the same run computes
the same page from `study_results` and `reviews` on every request, and the teach order's
priority computed on every request (as before it was stored with the worklist row).

    .venv/bin/python bench/bench_worklist.py [--predictions 100000]
"""

from __future__ import annotations

import argparse
import statistics
import time
import uuid
from collections.abc import Callable
from datetime import date, timedelta
from urllib.parse import urlsplit, urlunsplit

import psycopg2
from sqlalchemy import create_engine, text

from lung_model.platform import db
from lung_model.review.database import CONNECT_ARGS
from lung_model.review.studies import study_slices
from lung_model.review.worklist import WorklistFilter, worklist
from lung_model.settings import get_settings

FILL = """
INSERT INTO scan_batches (id, study, source_path, status, n_files, n_scored, started_at,
                          finished_at)
SELECT s, 'study-' || lpad(s::text, 6, '0'), '/inbox/study-' || s, 'done', :per, :per,
       now() - (s % 60) * interval '1 day', now() - (s % 60) * interval '1 day' + interval '9 s'
FROM generate_series(1, :studies) s;
SELECT setval('scan_batches_id_seq', :studies);
INSERT INTO images (batch_id, path, sha256, format, status)
SELECT (i - 1) / :per + 1, 'slice-' || i || '.jpg', md5(i::text) || md5((-i)::text), 'jpeg',
       'scored'
FROM generate_series(1, :predictions) i;
INSERT INTO predictions (image_sha256, model_name, model_version, data_version, p_normal,
                         p_benign, p_malignant, predicted_class, created_at)
SELECT md5(i::text) || md5((-i)::text), 'lung-ct-classifier', '1', 'data-v1',
       (1 - r) / 2, (1 - r) / 2, r, CASE WHEN r > 0.5 THEN 'malignant' ELSE 'normal' END,
       now() - (((i - 1) / :per + 1) % 60) * interval '1 day'
FROM (SELECT i, random() AS r FROM generate_series(1, :predictions) i) g;
INSERT INTO study_results (batch_id, model_name, model_version, data_version, n_slices,
    max_p_malignant, mean_p_malignant, n_malignant_slices, predicted_class, needs_review,
    created_at, acquisition_outside, sensitivity_share)
SELECT i.batch_id, 'lung-ct-classifier', '1', 'data-v1', count(*), max(p.p_malignant),
       avg(p.p_malignant), count(*) FILTER (WHERE p.p_malignant > 0.5),
       CASE WHEN max(p.p_malignant) > 0.5 THEN 'malignant' ELSE 'normal' END,
       max(p.p_malignant) BETWEEN 0.4 AND 0.6, now() - interval '2 days',
       CASE WHEN i.batch_id % 7 = 0 THEN '[{"measurement": "noise", "side": "below"}]'::jsonb
            ELSE '[]'::jsonb END,
       (i.batch_id % 13) / 12.0
FROM images i JOIN predictions p ON p.image_sha256 = i.sha256 GROUP BY i.batch_id;
INSERT INTO study_results (batch_id, model_name, model_version, data_version, n_slices,
    max_p_malignant, mean_p_malignant, n_malignant_slices, predicted_class, needs_review,
    acquisition_outside, sensitivity_share)
SELECT batch_id, model_name, '2', 'data-v2', n_slices, max_p_malignant * 0.9,
       mean_p_malignant, n_malignant_slices, predicted_class, needs_review,
       acquisition_outside, sensitivity_share
FROM study_results WHERE batch_id % 5 = 0;
INSERT INTO reviews (batch_id, reviewer, decision, corrected_label, model_name, model_version)
SELECT batch_id, 'bench', CASE WHEN batch_id % 9 = 0 THEN 'correct' ELSE 'confirm' END,
       CASE WHEN batch_id % 9 = 0 THEN 'benign' END, model_name, model_version
FROM study_results WHERE batch_id % 3 = 0 AND model_version = '1';
ANALYZE;
"""
# The baseline: the same page computed from study_results and reviews on every request.
BASELINE = """
SELECT r.batch_id, b.study, r.max_p_malignant, v.decision
FROM study_results r
JOIN scan_batches b ON b.id = r.batch_id
LEFT JOIN LATERAL (SELECT decision FROM reviews v WHERE v.batch_id = r.batch_id
                   AND v.image_id IS NULL ORDER BY created_at DESC, id DESC LIMIT 1) v ON true
WHERE NOT EXISTS (SELECT 1 FROM study_results n WHERE n.batch_id = r.batch_id
                  AND (n.created_at, n.id) > (r.created_at, r.id)) AND {where}
"""
BASELINE_QUERIES = {"all, page 1": "true", "unreviewed, page 1": "v.decision IS NULL"}
# The teach order with its priority computed on every request from the latest results.
TEACH_ON_THE_FLY = """
SELECT w.batch_id FROM worklist_entries w JOIN study_results r ON r.id = w.result_id
WHERE {where}
ORDER BY teach_priority(r.acquisition_outside, r.needs_review, r.sensitivity_share,
                        r.max_p_malignant) DESC, w.max_p_malignant DESC, w.batch_id LIMIT 50
"""
TEACH_BASELINE = {"teach, all, page 1": "true", "teach, unreviewed, page 1": "w.review_id IS NULL"}


def scratch_database(url: str) -> tuple[str, Callable[[], None]]:
    """A new database beside the configured one, and a function that drops it."""
    name = f"lung_bench_{uuid.uuid4().hex[:8]}"
    parts = urlsplit(db.yoyo_url(url))

    def admin(statement: str) -> None:
        connection = psycopg2.connect(url.replace("+psycopg2", ""))
        connection.autocommit = True
        with connection.cursor() as cursor:
            cursor.execute(statement)
        connection.close()

    admin(f"CREATE DATABASE {name}")
    return urlunsplit(parts._replace(path=f"/{name}")), lambda: admin(
        f"DROP DATABASE IF EXISTS {name} WITH (FORCE)"
    )


def timed(call: Callable[[], object], runs: int = 5) -> tuple[float, float]:
    seconds = []
    for _ in range(runs):
        start = time.perf_counter()
        call()
        seconds.append(time.perf_counter() - start)
    return statistics.median(seconds), max(seconds)


QUERIES: dict[str, WorklistFilter] = {
    "all, page 1": WorklistFilter(),
    "unreviewed, page 1": WorklistFilter(status="unreviewed"),
    "reviewed, page 1": WorklistFilter(status="reviewed"),
    "disagreement, page 1": WorklistFilter(status="disagreement"),
    "uncertain, page 1": WorklistFilter(status="uncertain"),
    "last 7 days": WorklistFilter(since=date.today() - timedelta(days=7)),
    "study name prefix": WorklistFilter(study="study-0004"),
    "all, page 80": WorklistFilter(page=80),
    "teach, all, page 1": WorklistFilter(order="teach"),
    "teach, unreviewed, page 1": WorklistFilter(status="unreviewed", order="teach"),
    "teach, all, page 80": WorklistFilter(page=80, order="teach"),
}


def run(predictions: int, per_study: int, label: str, rows: list[list[str]]) -> None:
    url, drop = scratch_database(db.database_url(get_settings()))
    try:
        db.migrate(url)
        engine = create_engine(db.sqlalchemy_url(url), connect_args=CONNECT_ARGS)
        studies = predictions // per_study
        start = time.perf_counter()
        with create_engine(db.sqlalchemy_url(url)).begin() as connection:
            for statement in FILL.split(";\n"):
                if statement.strip():
                    connection.execute(
                        text(statement),
                        {"studies": studies, "per": per_study, "predictions": predictions},
                    )
        print(f"{label}: filled in {time.perf_counter() - start:.1f} s")

        def row(variant: str, name: str, matches: int, median: float, worst: float) -> None:
            rows.append([label, variant, name, str(matches), f"{median * 1000:.0f}",
                         f"{worst * 1000:.0f}", "yes" if worst < 1 else "NO"])  # fmt: skip

        for name, wanted in QUERIES.items():
            found = worklist(engine, wanted)
            row("worklist_entries", name, found.total, *timed(lambda w=wanted: worklist(engine, w)))
        slices = timed(lambda: study_slices(engine, 42, "lung-ct-classifier", "1"))
        row("worklist_entries", "study view slices", per_study, *slices)
        for name, where in BASELINE_QUERIES.items():
            query = BASELINE.format(where=where)
            page = text(f"{query} ORDER BY r.max_p_malignant DESC, r.batch_id LIMIT 50")
            count = text(f"SELECT count(*) FROM ({query}) q")  # noqa: S608 - fixed text

            def baseline(page=page, count=count) -> int:
                with engine.connect() as connection:
                    connection.execute(page).all()
                    return int(connection.execute(count).scalar_one())

            row("baseline: on the fly", name, baseline(), *timed(baseline, runs=3))
        for name, where in TEACH_BASELINE.items():
            teach = text(TEACH_ON_THE_FLY.format(where=where))
            count = text(f"SELECT count(*) FROM worklist_entries w WHERE {where}")  # noqa: S608

            def on_the_fly(teach=teach, count=count) -> int:
                with engine.connect() as connection:
                    connection.execute(teach).all()
                    return int(connection.execute(count).scalar_one())

            row("baseline: priority on the fly", name, on_the_fly(), *timed(on_the_fly, runs=3))
        engine.dispose()
    finally:
        drop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--predictions", type=int, default=100_000)
    args = parser.parse_args()
    rows: list[list[str]] = []
    n = args.predictions
    run(n, 20, f"A: {n:,} predictions, {n // 20:,} studies", rows)
    run(n, 1, f"B: {n:,} predictions, {n:,} studies", rows)
    header = ["scenario", "read from", "query", "matches", "median ms", "worst ms", "< 1 s"]
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    for line in [header, ["-" * w for w in widths], *rows]:
        print("  ".join(cell.ljust(width) for cell, width in zip(line, widths, strict=True)))


if __name__ == "__main__":
    main()
