"""Dashboard fixtures: a database of their own, seeded with studies, slices on disk and an
account; `signed_in` returns an AppTest of the dashboard after a real sign-in."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import pytest
from dashboard_helpers import MODEL, PASSWORD, USER, override_champion, seed_study, sign_in
from pg_admin import SERVER_URL
from pg_admin import admin as _admin
from sqlalchemy import text
from streamlit.testing.v1 import AppTest

from lung_model.platform import db
from lung_model.review import accounts
from lung_model.settings import Settings


@pytest.fixture(scope="session")
def pg_url() -> Iterator[str]:
    """Overrides the shared one: these tests count rows, so they get a database alone."""
    name = f"lung_dash_{uuid.uuid4().hex[:10]}"
    _admin(f"CREATE DATABASE {name}")
    try:
        yield SERVER_URL.rsplit("/", 1)[0] + f"/{name}"
    finally:
        _admin(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


@dataclass
class Seeded:
    settings: Settings
    high: int  # batch ids: a malignant-looking study, an uncertain one, a normal one
    uncertain: int
    low: int
    image_ids: dict[int, list[int]]


@pytest.fixture
def seeded(settings: Settings, monkeypatch: pytest.MonkeyPatch) -> Iterator[Seeded]:
    """Three fresh studies and one account (rows stay: the database is this directory's own)."""
    monkeypatch.setattr(accounts, "ROUNDS", 4)  # real bcrypt, at its lowest cost for speed
    accounts.add_account(settings, USER, PASSWORD)
    tag = uuid.uuid4().hex[:6]
    high, high_images = seed_study(settings, f"study-high-{tag}", [0.97, 0.40, 0.10])
    uncertain, u_images = seed_study(settings, f"study-mid-{tag}", [0.55, 0.45], True)
    low, low_images = seed_study(settings, f"study-low-{tag}", [0.02, 0.01])
    yield Seeded(
        settings, high, uncertain, low, {high: high_images, uncertain: u_images, low: low_images}
    )


@pytest.fixture
def signed_in(seeded: Seeded) -> Callable[[], AppTest]:
    """A function returning a fresh AppTest that has signed in as USER through the form."""
    return sign_in


@pytest.fixture
def overridden(seeded: Seeded) -> Iterator[Seeded]:
    """Version 1 became champion by operator override after the gate rejected it (what
    `make demo` records); the events go again afterwards, so later tests start with none."""
    override_champion(seeded.settings)
    yield seeded
    with db.get_engine(seeded.settings).begin() as connection:
        connection.execute(text("DELETE FROM promotion_events WHERE model_name = :m"), {"m": MODEL})
