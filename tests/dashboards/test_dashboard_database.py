"""The dashboard's database role reads results and appends reviews, and nothing more."""

from __future__ import annotations

import pytest
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError

from lung_model.platform import db
from lung_model.review.database import ROLE, dashboard_engine, dashboard_url


def test_the_dashboard_logs_in_as_its_own_role(seeded) -> None:
    assert f"//{ROLE}:" in dashboard_url(seeded.settings)
    with dashboard_engine(seeded.settings).connect() as connection:
        assert connection.execute(text("SELECT current_user")).scalar() == ROLE
        assert connection.execute(text("SELECT count(*) FROM predictions")).scalar() >= 7
    password = seeded.settings.secrets_dir / "dashboard-db-password"
    assert password.stat().st_mode & 0o777 == 0o600
    with db.get_engine(seeded.settings).connect() as owner:  # set hashed, never in clear
        stored = owner.execute(
            text("SELECT rolpassword FROM pg_authid WHERE rolname = :r"), {"r": ROLE}
        ).scalar_one()
    assert stored.startswith(("SCRAM-SHA-256$", "md5"))
    assert password.read_text().strip() not in stored


@pytest.mark.parametrize(
    "statement",
    [
        "UPDATE predictions SET p_malignant = 0",
        "DELETE FROM predictions",
        "UPDATE study_results SET predicted_class = 'normal'",
        "INSERT INTO promotion_events (model_name, candidate_version, decision, reason, actor)"
        " VALUES ('m', '9', 'promoted', 'forged', 'dashboard')",
        "DELETE FROM reviews",
        "UPDATE reviews SET reviewer = 'someone else'",
        "TRUNCATE reviews",
        "CREATE TABLE intruder (id int)",
        "SET ROLE postgres",
    ],
)
def test_the_role_cannot_change_results_or_erase_reviews(seeded, statement: str) -> None:
    engine = dashboard_engine(seeded.settings)
    refused = pytest.raises(DBAPIError, match="permission denied|must be|not allowed")
    with refused, engine.begin() as connection:
        connection.execute(text(statement))


def test_the_role_can_append_a_review(seeded) -> None:
    with dashboard_engine(seeded.settings).begin() as connection:
        review_id = connection.execute(
            text(
                "INSERT INTO reviews (batch_id, reviewer, decision) "
                "VALUES (:b, 'alice', 'confirm') RETURNING id"
            ),
            {"b": seeded.high},
        ).scalar_one()
    assert review_id > 0
