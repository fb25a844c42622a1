"""Operations: batches, throughput and errors, the quarantine, drift and the review backlog."""

import pandas as pd
import streamlit as st
import ui

from lung_model.data.dvc import remote_status
from lung_model.exchange.status import delivery_counts, waiting_deliveries
from lung_model.review.operations import (
    acquisition_counts,
    drift_summary,
    inbox_waiting,
    monitoring_history,
    quarantine_reasons,
    quarantined_files,
    recent_batches,
    status_counts,
    unlike_training_studies,
)
from lung_model.scoring.sensitivity import HIGH_SENSITIVITY

engine = ui.engine()
st.title("Operations")
counts = status_counts(engine)
for column, (label, key) in zip(
    st.columns(4) + st.columns(4),
    [
        ("Processing", "processing"),
        ("Done", "done"),
        ("Failed", "failed"),
        ("Awaiting review", "awaiting_review"),
        ("Slices scored", "scored"),
        ("Quarantined", "quarantined"),
        ("Scored in 24 h", "scored_last_day"),
        ("Slices/s (24 h)", "slices_per_second"),
    ],
    strict=True,
):
    value = counts[key]
    column.metric(label, f"{value:.1f}" if key == "slices_per_second" else int(value))

st.subheader("Batches")
batches = recent_batches(engine)
if batches:
    st.dataframe(
        pd.DataFrame(batches),
        hide_index=True,
        width="stretch",
        column_config={
            "slices_per_second": st.column_config.NumberColumn("slices/s", format="%.1f"),
            "seconds": st.column_config.NumberColumn(format="%.1f"),
        },
    )
    failed = [batch for batch in batches if batch["error"]]
    for batch in failed[:20]:
        st.error(f"{ui.plain(batch['study'])} (batch {batch['id']}): {ui.plain(batch['error'])}")
else:
    st.caption("No batch yet: drop a study folder with a `_READY` marker into the inbox.")

st.subheader("Waiting in the inbox")
waiting = inbox_waiting(ui.settings())
if waiting:
    marker = ui.settings().ready_marker
    st.warning(
        f"{len(waiting)} {'item' if len(waiting) == 1 else 'items'} in the inbox will not be "
        f"scored until the table's reason is gone: a study needs a `{marker}` file "
        "(dropped into the study folder when it is complete; a folder or a link of that name "
        "does not count)."
    )
    st.dataframe(pd.DataFrame(waiting), hide_index=True, width="stretch")
else:
    st.caption("Nothing waiting: every study folder in the inbox has been taken up.")

st.subheader("Quarantine")
reasons = quarantine_reasons(engine)
if reasons:
    st.dataframe(pd.DataFrame(reasons), hide_index=True)
    st.caption("Each quarantined file, with its study and why it could not be scored:")
    st.dataframe(pd.DataFrame(quarantined_files(engine)), hide_index=True, width="stretch")
else:
    st.caption("Nothing quarantined.")

st.subheader("Results to the hospital")
sent = delivery_counts(engine)
for column, (label, value) in zip(
    st.columns(3),
    [
        ("Reports sent", sent["sent"]),
        ("Reports waiting", sent["waiting"]),
        ("Retrying after a failure", sent["failing"]),
    ],
    strict=True,
):
    column.metric(label, value)
waiting_out = waiting_deliveries(engine)
if waiting_out:
    st.dataframe(pd.DataFrame(waiting_out), hide_index=True, width="stretch")
    st.caption(
        "Each report version (the model's preliminary result, the final one after a review) "
        "goes once to each configured place; a failed one is retried with backoff "
        "(`python -m lung_model send-results`, the `lung_results_out` DAG)."
    )
elif sent["sent"]:
    st.caption(f"Nothing waiting; last report sent {sent['last_sent']:%Y-%m-%d %H:%M %Z}.")
else:
    st.caption("Nothing sent yet: reports go out for studies that came in as DICOM.")

st.subheader("Drift")
days = st.number_input("Recent window (days)", 1, 365, 7, key="drift_days")
drift = drift_summary(engine, int(days))
if drift:
    st.dataframe(
        pd.DataFrame(drift),
        hide_index=True,
        width="stretch",
        column_config={"class_shift": st.column_config.NumberColumn(format="%.3f")},
    )
    st.caption(
        "recent_n, before_n: scored slices (as counted in Slices scored) of the studies each "
        "model version scored in the window and before it. class_shift: total variation "
        "distance between the two predicted-class mixes (0: same mix, 1: disjoint)."
    )
else:
    st.caption("No predictions yet.")

st.subheader("Unlike the scans the model learned from")
unlike, sensitive = acquisition_counts(engine)
if unlike["guarded"]:
    st.metric(
        "Studies unlike training",
        f"{unlike['unlike']} of {unlike['guarded']}",
        help="Of the studies scored by a model that ships its training scans' acquisition "
        "range (each study by its latest result): those outside it on some measurement.",
    )
    if unlike["by_measurement"]:
        by = pd.DataFrame(unlike["by_measurement"].items(), columns=["outside on", "studies"])
        st.dataframe(by, hide_index=True)
        st.dataframe(pd.DataFrame(unlike_training_studies(engine)), hide_index=True)
else:
    st.caption("No study was scored by a model that ships its acquisition range (unguarded).")
if sensitive["checked"]:
    st.metric(
        "Studies whose calls hang on the export",
        f"{sensitive['sensitive']} of {sensitive['checked']}",
        help="Of the studies whose checked slices were scored again as other exports would "
        "give them (each study by its latest result): those on which the model's call "
        f"changed on at least {HIGH_SENSITIVITY:.0%} of the checked slices.",
    )

st.subheader("Daily checks")
checks = monitoring_history(engine)
if checks:
    latest = checks[0]
    if latest["breaches"]:
        st.error("Latest check breached: " + "; ".join(latest["breaches"]))
    else:
        st.success(f"Latest check ({latest['checked_at']:%Y-%m-%d %H:%M}): all within limits.")
    table = pd.DataFrame(checks)
    table["report"] = table["report"].map(str)
    st.dataframe(table, hide_index=True, width="stretch")
else:
    st.caption("No daily check has run yet (the lung_monitoring DAG writes them).")


st.subheader("Data")


@st.cache_data(ttl=300, show_spinner="Asking DVC whether the remote holds the data...")
def _data_remote() -> tuple[bool, str]:
    status = remote_status(ui.settings())
    return status.holds, status.describe()


holds, remote = _data_remote()
(st.success if holds else st.error)(f"DVC remote {ui.plain(remote)}")
st.caption(
    "Hosts that retrain (Airflow workers, a new machine) pull the committed data version "
    "from this remote; checked with `dvc data status --not-in-remote`, at most every 5 min."
)
