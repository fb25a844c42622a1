"""Model: champion and challenger, how each came in, the gate's decisions, metrics and plots."""

import pandas as pd
import streamlit as st
import ui
import ui_marks

from lung_model.lifecycle.gate import Floors
from lung_model.review.model_card import (
    decision_sentence,
    invariance_rows,
    invariance_sentence,
    metrics_table,
    model_cards,
    promotion_history,
    training_runs,
)
from lung_model.review.standing import standing

settings = ui.settings()
floors = Floors.from_settings(settings)
st.title("Model")
st.caption(f"Registered model `{settings.model_name}` · MLflow {settings.mlflow_ui_url}")

try:
    cards = model_cards(settings)
except Exception as error:  # the MLflow store may be unreachable
    cards = []
    st.error(f"MLflow registry unavailable: {type(error).__name__}: {error}")
if not cards:
    st.info("No champion or challenger yet: train a model (`python -m lung_model train`).")
history = promotion_history(ui.engine(), settings.model_name)


def show_decision(event: dict) -> None:
    st.markdown(ui.plain(decision_sentence(event)))
    table = pd.DataFrame(metrics_table(event, floors))
    if not table.empty:
        st.dataframe(table, hide_index=True, width="stretch")


for column, card in zip(st.columns(max(len(cards), 1)), cards, strict=False):
    with column:
        st.subheader(f"{card.alias.capitalize()}: version {card.version}")
        mine = standing(history, card.version)
        if mine.overridden:
            st.error(ui.plain(mine.warning(f"The {card.alias}")))
        elif mine.cleared:
            st.success(f"Version {card.version} passed the safety gate.")
        elif card.alias == "challenger":
            st.caption("Not promoted: it waits for the gate or failed it (below).")
        lineage = (
            [f"data version `{card.tags['data_version']}`"] if "data_version" in card.tags else []
        )
        if previous := card.tags.get("previous_champion"):
            lineage.append(f"replaced version {previous}")
        if lineage:
            st.caption(" · ".join(lineage))
        if card.run_url:
            st.link_button("Open the MLflow run", card.run_url)
        decisions = [e for e in history if str(e["candidate_version"]) == card.version]
        if decisions:
            st.markdown("**Latest decision about this version**")
            show_decision(decisions[0])
        key = card.key_metrics()
        for row in range(0, len(key), 3):
            for cell, (name, value) in zip(
                st.columns(3), list(key.items())[row : row + 3], strict=False
            ):
                cell.metric(name.removeprefix("test_").replace("_", " "), f"{value:.3f}")
        if sentence := invariance_sentence(card.metrics, floors):
            st.markdown("**Under other acquisitions**")
            st.caption(
                "The test split as another kernel, dose, display window, JPEG export or matrix"
                " size would give it: the acquisition-invariance check."
            )
            st.markdown(ui.plain(sentence))
            st.dataframe(
                pd.DataFrame(invariance_rows(card.metrics)), hide_index=True, width="stretch"
            )
        if card.metrics:
            with st.expander(f"All {len(card.metrics)} metrics of the run"):
                metrics = pd.DataFrame(sorted(card.metrics.items()), columns=["metric", "value"])
                st.dataframe(metrics, hide_index=True, width="stretch")
        for plot in card.plots:
            st.image(str(plot), caption=plot.stem.replace("_", " "), width="stretch")

st.subheader("Promotion history")
st.caption(
    f"The gate promotes a model that reaches malignant recall {floors.min_malignant_recall:.2f}, "
    f"macro-F1 {floors.min_macro_f1:.2f} and calibration error at most {floors.max_ece:.2f} on "
    f"the fixed test split, and is no worse than the champion beyond {floors.tolerance}."
)
if not history:
    st.caption("No gate decision recorded yet.")
else:
    table = pd.DataFrame(
        {
            "when": [e["created_at"] for e in history],
            "decision": [e["decision"] for e in history],
            "version": [e["candidate_version"] for e in history],
            "by": [e["actor"] for e in history],
            "what happened": [decision_sentence(e) for e in history],
        }
    )
    st.dataframe(
        table,
        hide_index=True,
        width="stretch",
        column_config={"when": st.column_config.DatetimeColumn(format="YYYY-MM-DD HH:mm")},
    )
    events = {e["id"]: e for e in history}
    picked = st.selectbox(
        "Metrics behind a decision",
        list(events),
        format_func=lambda i: (
            f"{events[i]['created_at']:%Y-%m-%d %H:%M} · "
            f"{events[i]['decision']} version {events[i]['candidate_version']}"
        ),
        key="model_event",
    )
    show_decision(events[picked])

st.subheader("Training runs")
st.caption(
    "The latest runs of the training job. A run whose process is gone (killed, out of memory)"
    " is ended as killed, with what was found gone and when, never left in progress."
)
try:
    runs = training_runs(settings)
except Exception as error:  # the MLflow store may be unreachable
    runs = []
    st.error(f"MLflow unavailable: {type(error).__name__}: {error}")
if runs:
    st.dataframe(
        pd.DataFrame(runs),
        hide_index=True,
        width="stretch",
        column_config={
            "started": st.column_config.DatetimeColumn(format="YYYY-MM-DD HH:mm"),
            "link": st.column_config.LinkColumn(display_text="MLflow run"),
        },
    )
else:
    st.caption("No training run yet.")
ui_marks.training_marks(ui.engine(), runs)
