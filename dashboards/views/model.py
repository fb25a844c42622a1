"""Model: champion and challenger, their metrics and plots, and the promotion history."""

import json

import pandas as pd
import streamlit as st
import ui

from lung_model.review.model_card import model_cards, promotion_history

settings = ui.settings()
st.title("Model")
st.caption(f"Registered model `{settings.model_name}` · MLflow {settings.mlflow_ui_url}")

try:
    cards = model_cards(settings)
except Exception as error:  # the MLflow store may be unreachable
    cards = []
    st.error(f"MLflow registry unavailable: {type(error).__name__}: {error}")
if not cards:
    st.info("No champion or challenger yet: train a model (`python -m lung_model train`).")

for column, card in zip(st.columns(max(len(cards), 1)), cards, strict=False):
    with column:
        st.subheader(f"{card.alias.capitalize()}: version {card.version}")
        if card.run_url:
            st.link_button("Open the MLflow run", card.run_url)
        interesting = {k: v for k, v in card.tags.items() if not k.startswith("mlflow.")}
        if interesting:
            st.caption(" · ".join(f"{k}: {v}" for k, v in sorted(interesting.items())))
        key = card.key_metrics()
        for row in range(0, len(key), 3):
            for cell, (name, value) in zip(
                st.columns(3), list(key.items())[row : row + 3], strict=False
            ):
                cell.metric(name.removeprefix("test_").replace("_", " "), f"{value:.3f}")
        if card.metrics:
            with st.expander(f"All {len(card.metrics)} metrics of the run"):
                metrics = pd.DataFrame(sorted(card.metrics.items()), columns=["metric", "value"])
                st.dataframe(metrics, hide_index=True, width="stretch")
        for plot in card.plots:
            st.image(str(plot), caption=plot.stem.replace("_", " "), width="stretch")

st.subheader("Promotion history")
history = promotion_history(ui.engine(), settings.model_name)
if not history:
    st.caption("No gate decision recorded yet.")
else:
    table = pd.DataFrame(history)
    for column in ("candidate_metrics", "champion_metrics"):
        table[column] = table[column].map(lambda m: json.dumps(m) if m else "")
    st.dataframe(table, hide_index=True, width="stretch")
