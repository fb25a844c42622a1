"""Nothing but the sign-in for a stranger; a wrong password gets nothing either."""

from dashboard_helpers import PASSWORD, USER, new_app
from streamlit.testing.v1 import AppTest


def _all_text(app: AppTest) -> str:
    parts = [e.value for e in (*app.markdown, *app.caption, *app.title, *app.info, *app.error)]
    return "\n".join(str(part) for part in parts)


def test_a_stranger_sees_only_the_sign_in(seeded) -> None:
    app = new_app().run()
    assert not app.exception
    assert [t.label for t in app.text_input] == ["Username", "Password"]
    assert len(app.dataframe) == 0 and len(app.metric) == 0
    text = _all_text(app)
    assert "study-" not in text and "malignant" not in text.lower()
    app.switch_page("views/study.py")
    app.query_params["batch"] = str(seeded.high)
    app.run()
    assert len(app.dataframe) == 0 and "study-" not in _all_text(app)


def test_wrong_password_is_refused(seeded) -> None:
    app = new_app().run()
    app.text_input(key="signin_username").input(USER)
    app.text_input(key="signin_password").input(PASSWORD + "x")
    app.button[0].click().run()
    assert "wrong password" in _all_text(app)
    assert len(app.dataframe) == 0


def test_sign_in_shows_the_worklist_and_who(signed_in) -> None:
    app = signed_in()
    assert app.title[0].value == "Worklist"
    assert f"Signed in as **{USER}**" in _all_text(app)


def test_with_an_oidc_provider_a_stranger_gets_only_its_button(seeded, monkeypatch) -> None:
    from lung_model import settings as settings_module

    monkeypatch.setenv("LUNG_DASHBOARD_AUTH_PROVIDER", "default")
    settings_module.get_settings.cache_clear()
    app = new_app().run()
    assert not app.exception
    assert [b.label for b in app.button] == ["Sign in"]
    assert len(app.text_input) == 0 and len(app.dataframe) == 0
    assert "study-" not in _all_text(app)
