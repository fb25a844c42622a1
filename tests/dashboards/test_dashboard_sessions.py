"""Session tokens: a reload keeps the reviewer signed in, nothing else does."""

from __future__ import annotations

import time

import pytest

from lung_model.review import accounts, sessions


@pytest.fixture
def account(settings, monkeypatch) -> str:
    monkeypatch.setattr(accounts, "ROUNDS", 4)
    accounts.add_account(settings, "j.smith", "a long enough password")
    return "j.smith"


def test_a_token_names_its_reviewer_until_it_expires(settings, account) -> None:
    token = sessions.issue(settings, account)
    assert sessions.user_for(settings, token) == account  # a name with a dot survives
    later = time.time() + sessions.LIFETIME + 1
    assert sessions.user_for(settings, token, now=later) is None
    assert (settings.secrets_dir / sessions.KEY_FILE).stat().st_mode & 0o777 == 0o600


def test_forged_tampered_and_foreign_tokens_are_refused(settings, account) -> None:
    token = sessions.issue(settings, account)
    user, issued, expires, signature = token.rsplit(".", 3)
    assert sessions.user_for(settings, f"reviewer.{issued}.{expires}.{signature}") is None
    assert sessions.user_for(settings, f"{user}.{issued}.9{expires}.{signature}") is None
    assert sessions.user_for(settings, token[:-1] + ("0" if token[-1] != "0" else "1")) is None
    for junk in ("", "garbage", "...", f"{user}.x.y.{signature}"):
        assert sessions.user_for(settings, junk) is None
    other = settings.model_copy(update={"home": settings.home / "other-site"})
    accounts.add_account(other, account, "another long password")
    assert sessions.user_for(other, token) is None  # signed with another site's key


def test_sign_out_and_password_reset_end_earlier_sessions(settings, account) -> None:
    before = sessions.issue(settings, account, now=time.time() - 5)
    sessions.end(settings, account)
    assert sessions.user_for(settings, before) is None
    after = sessions.issue(settings, account)
    assert sessions.user_for(settings, after) == account  # signing in again works
    accounts.add_account(settings, account, "a new long password")  # reset
    assert sessions.user_for(settings, after) is None
    accounts.add_account(settings, "bob", "a long enough password")
    bob = sessions.issue(settings, "bob")
    path = settings.secrets_dir / accounts.ACCOUNTS_FILE
    path.write_text(path.read_text().replace('"bob"', '"bobby"'))  # account removed
    assert sessions.user_for(settings, bob) is None
