"""The delivery ledger's rules without a PACS: destinations, backoff, derived identifiers,
and two senders at once never sending the same row."""

from __future__ import annotations

import re
import threading
import time
from typing import Any

import pytest
from sqlalchemy import text

from lung_model.exchange import documents, reports
from lung_model.exchange.deliveries import Sender, backoff, destinations, parse_destination
from lung_model.platform.db import get_engine
from lung_model.settings import Settings

UID = re.compile(r"[0-9]+(\.[0-9]+)*")


def test_a_destination_is_aet_at_host_and_port() -> None:
    assert parse_destination("PACS@127.0.0.1:4242") == ("PACS", "127.0.0.1", 4242)
    assert parse_destination("PACS@[::1]:104") == ("PACS", "[::1]", 104)
    for wrong in ("PACS", "PACS@host", "@host:104", "PACS@:104", "PACS@host:port"):
        with pytest.raises(ValueError, match="AET@host:port"):
            parse_destination(wrong)


def test_retries_back_off_doubling_up_to_the_ceiling(settings: Settings) -> None:
    settings.results_retry_seconds, settings.results_retry_max_seconds = 30, 300
    assert [backoff(settings, n) for n in range(1, 7)] == [30, 60, 120, 240, 300, 300]


def test_the_outbox_always_the_others_when_configured(settings: Settings) -> None:
    assert destinations(settings) == [("fhir-outbox", str(settings.outbox))]
    settings.results_dicom_destination = " PACS@127.0.0.1:104 "
    settings.results_dicomweb_url = "http://127.0.0.1:8042/dicom-web/"
    settings.results_fhir_url = "http://127.0.0.1:8080/fhir/"
    assert [channel for channel, _ in destinations(settings)] == [
        "dicom",
        "stow-rs",
        "fhir-outbox",
        "fhir",
    ]
    assert destinations(settings)[0][1] == "PACS@127.0.0.1:104"
    assert destinations(settings)[1][1] == "http://127.0.0.1:8042/dicom-web"


def test_report_identifiers_are_derived_valid_and_distinct_per_version() -> None:
    first = documents.uids("1.2.826.0.1.3680043.8.498.1", "model:m:1")
    assert first == documents.uids("1.2.826.0.1.3680043.8.498.1", "model:m:1")
    final = documents.uids("1.2.826.0.1.3680043.8.498.1", "review:7")
    other = documents.uids("1.2.826.0.1.3680043.8.498.2", "model:m:1")
    for ids in (first, final, other):
        for uid in (ids.series, ids.sop_instance, ids.tracking):
            assert len(uid) <= 64 and UID.fullmatch(uid) and uid.startswith("2.25.")
        assert re.fullmatch(r"[A-Za-z0-9\-.]{1,64}", ids.fhir_id)
    assert len({first.sop_instance, final.sop_instance, other.sop_instance}) == 3
    assert first.series != first.sop_instance


class SlowSender(Sender):
    """Records what it sends and takes its time, so two of them overlap."""

    def __init__(self, *args: Any, sent: list[int]) -> None:
        super().__init__(*args)
        self.sent = sent

    def send(self, row: Any) -> None:
        time.sleep(0.05)
        self.sent.append(int(row["id"]))


def test_two_senders_at_once_send_each_due_row_once(settings: Settings, empty_pg_url: str) -> None:
    settings.database_url = empty_pg_url
    engine = get_engine(settings)
    with engine.begin() as connection:
        batch = connection.execute(
            text(
                "INSERT INTO scan_batches (study, source_path, status) VALUES ('s', '/s', 'done')"
                " RETURNING id"
            )
        ).scalar_one()
        for n in range(12):
            connection.execute(
                text(
                    "INSERT INTO result_deliveries (batch_id, report, report_status, channel,"
                    " destination, study_instance_uid, object_uid) VALUES (:b, :r, 'preliminary',"
                    " 'fhir-outbox', '/outbox', '1.2.3', :o)"
                ),
                {"b": batch, "r": f"model:m:{n}", "o": f"lung-{n}"},
            )
    sent: list[int] = []
    senders = [SlowSender(settings, engine, sent=sent) for _ in range(2)]
    threads = [threading.Thread(target=s.deliver_due) for s in senders]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(sent) == 12 and len(set(sent)) == 12
    with engine.connect() as connection:
        states = connection.execute(
            text("SELECT status, attempts, count(*) FROM result_deliveries GROUP BY 1, 2")
        ).all()
    assert states == [("sent", 1, 12)]
    assert senders[0].deliver_due() == (0, 0)  # sent rows are never sent again


def test_a_report_version_is_found_by_its_key_also_once_a_later_review_replaced_it(
    settings: Settings, empty_pg_url: str
) -> None:
    """What is planned is what is sent: a delivery of an earlier review, still waiting, is
    rebuilt from the same report version the planning saw (one query for both)."""
    settings.database_url = empty_pg_url
    engine = get_engine(settings)
    with engine.begin() as connection:

        def insert(sql: str, **values: object) -> int:
            return int(connection.execute(text(sql + " RETURNING id"), values).scalar_one())

        batch = insert(
            "INSERT INTO scan_batches (study, source_path, status, archive_path)"
            " VALUES ('s', '/s', 'done', '/archive/s')"
        )
        insert(
            "INSERT INTO images (batch_id, path, sha256, format, status)"
            " VALUES (:b, 'a.dcm', repeat('a', 64), 'dicom', 'scored')",
            b=batch,
        )
        result = insert(
            "INSERT INTO study_results (batch_id, model_name, model_version, data_version,"
            " n_slices, max_p_malignant, mean_p_malignant, n_malignant_slices,"
            " predicted_class, needs_review) VALUES (:b, 'm', '1', 'd', 1, 0.9, 0.9, 1,"
            " 'malignant', false)",
            b=batch,
        )
        reviews = [
            insert(
                "INSERT INTO reviews (batch_id, reviewer, decision, corrected_label,"
                " model_name, model_version, created_at)"
                " VALUES (:b, 'dr', 'correct', 'benign', 'm', '1', now() + :n * interval '1 s')",
                b=batch,
                n=n,
            )
            for n in range(2)
        ]

    planned = reports.candidates(engine, [("fhir-outbox", "/outbox")])
    assert [(c.report, c.report_status, c.result_id) for c in planned] == [
        ("model:m:1", "preliminary", result),
        (f"review:{reviews[1]}", "final", result),  # only the latest review is a report
    ]
    earlier = reports.candidate(engine, batch, f"review:{reviews[0]}")
    assert earlier == reports.Candidate(
        batch, f"review:{reviews[0]}", "final", result, reviews[0], "model:m:1"
    )
    assert reports.candidate(engine, batch, "model:m:1") == planned[0]
