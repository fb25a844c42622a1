"""The schema every upgrade path must end at: an empty database migrated in one go."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest
from pg_admin import SERVER_URL, admin
from release_fixture import Migrated, schema

from lung_model.platform import db


@pytest.fixture(scope="session")
def migrated_in_one_go() -> Iterator[Migrated]:
    name = f"lung_test_{uuid.uuid4().hex[:10]}"
    admin(f"CREATE DATABASE {name}")
    try:
        url = SERVER_URL.rsplit("/", 1)[0] + f"/{name}"
        order = db.migrate(url)
        yield Migrated(order, schema(url))
    finally:
        admin(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
