"""What every page shares: settings, the restricted database engine, the signed-in user,
and the models (loaded once per process). Rendering helpers only; logic is in lung_model."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import streamlit as st
from sqlalchemy import Engine

from lung_model.review import accounts, sessions
from lung_model.review.database import dashboard_engine
from lung_model.review.explain import MOSTLY, TEXTURE, TOP_CANDIDATES, FeatureExplanation
from lung_model.review.rules import LoggedRules, VerdictRule, logged_rules, rule_for, share
from lung_model.review.standing import Standing, champion_standing, version_standing
from lung_model.settings import Settings, get_settings

USER_KEY = "signed_in_user"
COOKIE_KEY = "session_cookie_to_write"


def settings() -> Settings:
    return get_settings()


def engine() -> Engine:
    return dashboard_engine(settings())


def current_user() -> str | None:
    """The reviewer, from the sign-in only: OIDC claims, or the local account signed in."""
    provider = settings().dashboard_auth_provider
    if provider:
        if not st.user.get("is_logged_in", False):
            return None
        identity = st.user.get("email") or st.user.get("preferred_username") or st.user.get("sub")
        return str(identity) if identity else None
    user = st.session_state.get(USER_KEY)
    if not user:  # a reloaded page: a new Streamlit session, maybe with the session cookie
        user = sessions.user_for(settings(), st.context.cookies.get(sessions.COOKIE))
        st.session_state[USER_KEY] = user
    return str(user) if user else None


_session_cookie = st.components.v2.component(
    "lung_session_cookie",
    js="""
export default function ({ data }) {
  const secure = location.protocol === "https:" ? "; Secure" : "";
  document.cookie = `${data.name}=${data.value}; Max-Age=${data.max_age}; Path=/; SameSite=Strict${secure}`;
}
""",
)


def write_session_cookie() -> None:
    """Set (after sign-in) or clear (after sign-out) the browser's session cookie."""
    token = st.session_state.pop(COOKIE_KEY, None)
    if token is not None:
        max_age = sessions.LIFETIME if token else 0
        data = {"name": sessions.COOKIE, "value": token, "max_age": max_age}
        _session_cookie(data=data, key="session-cookie")


def sign_in() -> None:
    """The only thing a stranger sees."""
    st.title("Lung CT triage")
    st.caption("Decision support for radiology review. Sign in to continue.")
    provider = settings().dashboard_auth_provider
    if provider:
        name = None if provider == "default" else provider
        st.button("Sign in", type="primary", on_click=st.login, args=(name,))
        return
    with st.form("sign-in"):
        username = st.text_input("Username", key="signin_username")
        password = st.text_input("Password", type="password", key="signin_password")
        submitted = st.form_submit_button("Sign in", type="primary")
    if submitted:
        if accounts.sign_in(settings(), username, password):
            user = accounts.normalise_username(username)
            st.session_state[USER_KEY] = user
            st.session_state[COOKIE_KEY] = sessions.issue(settings(), user)
            st.rerun()
        if accounts.locked_out(username):
            st.error("Too many failed attempts: try again in a few minutes.")
        else:
            st.error("Unknown username or wrong password.")


def sign_out() -> None:
    if settings().dashboard_auth_provider:
        st.logout()
    elif user := st.session_state.get(USER_KEY):
        sessions.end(settings(), user)
        st.session_state[COOKIE_KEY] = ""  # cleared by the next run's write_session_cookie
    st.session_state[USER_KEY] = None


@st.cache_resource(max_entries=3, show_spinner="Loading the model...")
def _load_model(tracking_uri: str, uri: str | None) -> Any:
    from lung_model.scoring.inference import load_model as load

    return load(settings(), uri)


def load_model(uri: str | None = None) -> Any:
    """The model at `uri` (default: the champion) of this model store, loaded once per
    process (a version number names a model only within its store)."""
    return _load_model(settings().tracking_uri(), uri)


@st.cache_data(max_entries=2000, show_spinner=False)
def _thumbnail(path: str, modified: float) -> Any:
    from lung_model.review.studies import thumbnail as make

    return make(Path(path))


def thumbnail(path: Path) -> Any:
    """The slice's thumbnail, decoded once per file version and kept across reruns."""
    return _thumbnail(str(path), path.stat().st_mtime)


def plain(text: object) -> str:
    """Text from files or users, shown literally inside Markdown (no links, no markup)."""
    flat = " ".join(str(text).split())
    return "".join("\\" + c if c in MARKDOWN_SPECIALS else c for c in flat)


MARKDOWN_SPECIALS = set("\\`*_{}[]()<>#+-.!|~$:")


def percent(value: float | None) -> str:
    return "" if value is None else f"{100 * value:.1f}%"


def override_banner(
    version: str | None = None, subject: str = "The model in use"
) -> Standing | None:
    """A red banner while the champion (or `version`) serves without having passed the gate;
    returns that model's standing (None: no champion yet)."""
    name = settings().model_name
    if version is None:
        standing = champion_standing(engine(), name)
    else:
        standing = version_standing(engine(), name, version)
    if standing is not None and (warning := standing.warning(subject)):
        st.error(plain(warning), icon=":material/gpp_maybe:")
    return standing


@st.cache_data(ttl=600, show_spinner=False)
def _logged_rules(tracking_uri: str, model_name: str, version: str) -> LoggedRules:
    return logged_rules(settings(), model_name, version)


def verdict_rule(model_name: str, version: str) -> VerdictRule | None:
    """The decision rule of a registered version; None when the registry cannot say."""
    try:
        logged = _logged_rules(settings().tracking_uri(), model_name, str(version))
        return rule_for(settings(), logged.malignant_threshold, logged.study_rule)
    except Exception:  # noqa: BLE001 - unregistered version or registry unreachable
        return None


def candidates_caption(explanation: FeatureExplanation) -> str:
    """'Dense candidates the model measured (share of the lung field): 1: 10.2% · 2: 2.1%'."""
    if not explanation.candidates:
        return "No dense candidate in the lung field: the nodule features measured none."
    mark = explanation.mark
    beyond = mark.at_mark if mark and mark.at_mark and mark.at_mark > TOP_CANDIDATES else None
    shares = " · ".join(
        f"{n}: {share(c.share)}" + (" (smaller, at the mark)" if n == beyond else "")
        for n, c in enumerate(explanation.candidates, start=1)
    )
    ring = "; blue ring: the reviewer's lesion mark" if mark and mark.point else ""
    return (
        "Dense candidates the model measured, largest first (share of the lung field): "
        f"{shares}{ring}"
    )


def feature_pushes(container: Any, explanation: FeatureExplanation) -> None:
    """What the push rests on in words (a warning when on whole-slice texture), then the
    features that pushed the slice's raw score most, as bars, with the sum in words."""
    import altair as alt
    import pandas as pd

    reading = explanation.reading
    (container.warning if reading.shares[TEXTURE] > MOSTLY else container.info)(reading.text)
    if mark := explanation.mark:  # the reviewer's mark of this slice, beside the model's
        (container.warning if mark.driver_at_mark is False else container.info)(mark.text)

    name = explanation.class_name
    table = pd.DataFrame(
        {
            "feature": [c.label for c in explanation.top],
            "value on this slice": [c.value for c in explanation.top],
            "push": [c.contribution for c in explanation.top],
            "direction": [f"towards {name}" if c.contribution > 0 else f"away from {name}"
                          for c in explanation.top],
        }
    )  # fmt: skip
    chart = (
        alt.Chart(table)
        .mark_bar()
        .encode(
            x=alt.X("push:Q", title=f"push on the {name} score (log-odds)"),
            y=alt.Y("feature:N", sort=None, title=None, axis=alt.Axis(labelLimit=320)),
            color=alt.Color(
                "direction:N",
                scale=alt.Scale(
                    domain=[f"towards {name}", f"away from {name}"], range=["#d62728", "#1f77b4"]
                ),
                legend=alt.Legend(orient="bottom", title=None),
            ),
            tooltip=[
                "feature",
                alt.Tooltip("value on this slice:Q", format=".4g"),
                alt.Tooltip("push:Q", format="+.3f"),
            ],
        )  # fmt: skip
        .properties(title=f"What pushed this slice's {name} score most")
    )
    container.altair_chart(chart, width="stretch")
    shown = sum(c.contribution for c in explanation.top)
    container.caption(
        f"Raw {name} score {explanation.raw_score:+.2f} = average slice "
        f"{explanation.expected_value:+.2f} + these {len(explanation.top)} features "
        f"{shown:+.2f} + all other features {explanation.others:+.2f} (exact TreeSHAP; "
        "log-odds before calibration, so the pushes add up but are not percentages)."
    )
    with container.expander("The numbers"):
        st.dataframe(
            table.drop(columns="direction"),
            hide_index=True,
            column_config={
                "value on this slice": st.column_config.NumberColumn(format="%.4g"),
                "push": st.column_config.NumberColumn(format="%+.3f"),
            },
        )
