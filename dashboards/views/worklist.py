"""Worklist: studies by malignancy risk, filtered and paged in the database."""

from datetime import date

import pandas as pd
import streamlit as st
import ui

from lung_model.platform.names import stored_names
from lung_model.review.worklist import (
    ORDERS,
    STATUSES,
    WorklistFilter,
    files_summary,
    worklist,
)
from lung_model.scoring.guard import summary_line
from lung_model.scoring.sensitivity import slices_changed

st.title("Worklist")
ui.override_banner()
st.caption("Studies ordered by the highest malignant probability of any slice. A person decides.")

status = st.segmented_control(
    "Show", STATUSES, default="unreviewed", key="wl_status", format_func=str.capitalize
)
order = st.segmented_control(
    "Order",
    ORDERS,
    default="risk",
    key="wl_order",
    format_func={"risk": "Riskiest first", "teach": "Teach the model"}.__getitem__,
)
if order == "teach":
    st.caption(
        "The reviews that teach the model most first. A study's teach priority adds up, each "
        "from 0 to 1: unlike the scans the model learned from; the model unsure of it; the "
        "share of its checked slices whose call another export changes; how close its "
        "verdict is to a coin toss (riskiest first among equals). Mark the lesion on their "
        "slices (or say none is visible) on the Study page."
    )
middle, right, search = st.columns(3)
since = middle.date_input("Received from", value=None, key="wl_since")
until = right.date_input("Received until", value=None, key="wl_until")
query = search.text_input("Study or batch", key="wl_query", placeholder="name prefix or id")
page_size = 50
page = int(st.session_state.get("wl_page", 1))

found = worklist(
    ui.engine(),
    WorklistFilter(
        status=status or "all",
        since=since if isinstance(since, date) else None,
        until=until if isinstance(until, date) else None,
        study=query,
        page=page,
        page_size=page_size,
        order=order or "risk",
    ),
    stored_names(ui.settings()),
)
st.caption(f"{found.total} studies · page {found.page} of {found.pages}")
if not found.rows:
    st.info("No study matches these filters.")
    st.stop()

unlike = [summary_line(row["acquisition_outside"]) for row in found.rows]
changed = [slices_changed(row["acquisition_sensitivity"]) for row in found.rows]
table = pd.DataFrame(
    {
        "batch": [row["batch_id"] for row in found.rows],
        "study": [row["study"] for row in found.rows],
        "risk": [row["max_p_malignant"] for row in found.rows],
        "model says": [row["predicted_class"] for row in found.rows],
        "reviewed as": [row["reviewed_label"] or "" for row in found.rows],
        "reviewer": [row["reviewer"] or "" for row in found.rows],
        "uncertain": [row["needs_review"] for row in found.rows],
        "unlike training": unlike,
        "calls change under another export": changed,
        "files": [files_summary(row) for row in found.rows],
        "malignant slices": [
            f"{row['n_malignant_slices']}/{row['n_slices']}" for row in found.rows
        ],
        "received": [row["started_at"] for row in found.rows],
        "model version": [row["model_version"] for row in found.rows],
    }
)
selection = st.dataframe(
    table,
    hide_index=True,
    width="stretch",
    on_select="rerun",
    selection_mode="single-row",
    key="wl_table",
    column_config={
        "risk": st.column_config.ProgressColumn(
            "malignant risk", min_value=0.0, max_value=1.0, format="percent"
        ),
        "received": st.column_config.DatetimeColumn(format="YYYY-MM-DD HH:mm"),
        "calls change under another export": st.column_config.TextColumn(
            "other export", help="calls change under another export (see below)"
        ),
    },
)

if any(unlike):
    st.caption(
        "unlike training: the study's acquisition (pixel noise, display window, matrix) lies "
        "outside the range of the scans the model learned from; it is scored, but read its "
        "verdict with care (the Study page says how far)."
    )
if any(changed):
    st.caption(
        "calls change under another export: the checked slices of the study (the same the "
        "unlike-training check measures) were scored again as other exports would give them "
        "(by default a narrower display window and a smaller matrix); on so many of "
        "them the model's call changed. A "
        "verdict that hangs on the export is one to read with care, and one whose review "
        "teaches the model most."
    )
for name, version in sorted({(row["model_name"], row["model_version"]) for row in found.rows}):
    rule = ui.verdict_rule(name, version)
    line = rule.study_line() if rule else "verdict rule unavailable (not in the registry?)"
    st.caption(f"Model v{version}: {line}")


def open_study(batch_id: int) -> None:
    st.switch_page("views/study.py", query_params={"batch": str(batch_id)})


chosen = getattr(getattr(selection, "selection", None), "rows", None)
if chosen:
    open_study(int(table.iloc[chosen[0]]["batch"]))

labels = {int(row["batch_id"]): f"{row['study']} (batch {row['batch_id']})" for row in found.rows}
pick, go, previous, following = st.columns([4, 1, 1, 1], vertical_alignment="bottom")
batch = pick.selectbox("Study", list(labels), format_func=labels.__getitem__, key="wl_pick")
if go.button("Open study", type="primary", key="wl_open"):
    open_study(int(batch))
if previous.button("Previous page", disabled=found.page <= 1, key="wl_prev"):
    st.session_state["wl_page"] = found.page - 1
    st.rerun()
if following.button("Next page", disabled=found.page >= found.pages, key="wl_next"):
    st.session_state["wl_page"] = found.page + 1
    st.rerun()
