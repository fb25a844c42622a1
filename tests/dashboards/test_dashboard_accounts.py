"""Local accounts: hashed, private, created once at setup, verified in constant work."""

from __future__ import annotations

import json
import time

import pytest

from lung_model.review import accounts


def test_first_account_is_created_once_and_signs_in(settings) -> None:
    first = accounts.ensure_first_account(settings)
    assert first.username == accounts.FIRST_USER and first.password
    assert accounts.ensure_first_account(settings) == first  # idempotent: same login
    assert accounts.verify(settings, first.username, first.password)
    assert not accounts.verify(settings, first.username, first.password + "!")
    stored = (settings.secrets_dir / accounts.ACCOUNTS_FILE).read_text()
    assert first.password not in stored
    assert json.loads(stored)[first.username]["hash"].startswith("$2b$12$")
    for name in (accounts.ACCOUNTS_FILE, accounts.FIRST_LOGIN_FILE):
        assert (settings.secrets_dir / name).stat().st_mode & 0o777 == 0o600


def test_unknown_users_and_bad_inputs(settings, monkeypatch) -> None:
    monkeypatch.setattr(accounts, "ROUNDS", 4)
    accounts.add_account(settings, "bob", "a long enough password")
    assert accounts.verify(settings, "BOB ", "a long enough password")
    assert not accounts.verify(settings, "mallory", "a long enough password")
    assert not accounts.verify(settings, "bob", "a long enough password" + "x" * 80)
    with pytest.raises(ValueError):
        accounts.add_account(settings, "'; DROP TABLE reviews; --", "a long enough password")
    with pytest.raises(ValueError):
        accounts.add_account(settings, "carol", "short")


def test_users_command_adds_and_lists(settings, capsys, monkeypatch) -> None:
    monkeypatch.setattr(accounts, "ROUNDS", 4)
    from lung_model.cli.main import main

    assert main(["users", "add", "dora"]) == 0
    password = capsys.readouterr().out.split("password ")[1].split()[0]
    assert accounts.verify(settings, "dora", password)
    assert main(["users", "list"]) == 0
    assert "dora" in capsys.readouterr().out
    assert main(["users", "add"]) == 2


def test_guessing_is_throttled(settings, monkeypatch) -> None:
    monkeypatch.setattr(accounts, "ROUNDS", 4)
    accounts.add_account(settings, "erin", "the right password")
    for _ in range(accounts.MAX_FAILURES):
        assert not accounts.sign_in(settings, "erin", "a wrong guess")
    assert accounts.locked_out("erin")
    assert not accounts.sign_in(settings, "erin", "the right password")  # even the right one
    later = time.monotonic() + accounts.FAILURE_WINDOW + 1
    assert not accounts.locked_out("erin", now=later)
    assert accounts.sign_in(settings, "erin", "the right password")
