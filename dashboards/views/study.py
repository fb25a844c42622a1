"""Study view: verdict, slices with probabilities, explanations on demand (Grad-CAM for a
CNN; outlined nodule candidates and feature pushes for a feature model), reviews."""

import pandas as pd
import streamlit as st
import ui
import ui_marks

from lung_model.exchange.status import study_deliveries
from lung_model.review.explain import explain_features_file, explain_file
from lung_model.review.marks import current_marks
from lung_model.review.reviews import (
    add_review,
    latest_study_review,
    review_history,
    reviewed_label,
)
from lung_model.review.rules import probabilities_line
from lung_model.review.studies import (
    get_study,
    quarantined_by_reason,
    slice_file,
    slice_unlike_training,
    study_slices,
)
from lung_model.scoring.guard import unlike_training
from lung_model.scoring.sensitivity import HIGH_SENSITIVITY, changed_on, described
from lung_model.settings import CLASSES

raw = st.query_params.get("batch", "")
if not raw.isdigit():
    st.title("Study")
    st.info("Open a study from the worklist.")
    st.page_link("views/worklist.py", label="Go to the worklist", icon=":material/list:")
    st.stop()

engine = ui.engine()
study = get_study(engine, int(raw))
if study is None:
    st.error(f"No study with batch id {raw}.")
    st.stop()

st.title(f"Study {ui.plain(study['study'])}")
result = study["results"][0] if study["results"] else None
st.caption(
    f"Batch {study['id']} · received {study['started_at']:%Y-%m-%d %H:%M} · {study['status']}"
)
if newer := study.get("superseded_by"):  # more of the study arrived: lung_model.scoring.grown
    st.error(
        f"More of this study arrived after it was scored: batch {newer} scored it whole. "
        "This verdict read only part of the study; the worklist and the reports follow the "
        "newer batch."
    )
    st.page_link("views/study.py", label=f"Open batch {newer}", query_params={"batch": newer})
if result is None:
    st.warning("This study has not been scored yet.")
    st.stop()
ui.override_banner(result["model_version"], "The model that scored this study")

verdict, risk, slices_over, lineage = st.columns(4)
verdict.metric("Model says", result["predicted_class"])
risk.metric("Highest malignant probability", ui.percent(result["max_p_malignant"]))
slices_over.metric(
    "Slices over threshold", f"{result['n_malignant_slices']} / {result['n_slices']}"
)
lineage.metric("Model version", result["model_version"])
st.caption(
    f"Model {result['model_name']} v{result['model_version']} · data version "
    f"`{result['data_version']}` · scored {result['created_at']:%Y-%m-%d %H:%M}"
)
rule = ui.verdict_rule(result["model_name"], result["model_version"])
if rule:
    st.caption(f"{rule.study_line()}  \n{rule.slice_line()}")
else:
    st.caption(
        "Verdict rule unavailable: this model version is not in the registry, or the registry cannot be read."
    )
if result["needs_review"]:
    st.warning("The model is uncertain about this study: review it with particular care.")
if unlike := unlike_training(result["acquisition_outside"]):  # lung_model.scoring.guard
    st.warning(
        "This study is **unlike the scans this model learned from**: "
        + "; ".join(unlike)
        + ". It was scored, but read the verdict with particular care: the model has not seen "
        "scans acquired or exported like this one."
    )
sensitivity = result.get("acquisition_sensitivity")  # lung_model.scoring.sensitivity
if sensitivity and sensitivity["changed"]:
    shaky = (result["sensitivity_share"] or 0.0) >= HIGH_SENSITIVITY
    (st.warning if shaky else st.info)(
        f"The model's {described(sensitivity)}: its verdict may hang on how the scan was "
        "exported, not only on what it shows. A review of this study teaches the model most."
    )
elif sensitivity:
    st.caption(f"The model's {described(sensitivity)}.")

user = ui.current_user() or ""
latest = latest_study_review(engine, study["id"])
if latest:
    st.info(
        f"Reviewed as **{latest['label']}** by {ui.plain(latest['reviewer'])} on "
        f"{latest['created_at']:%Y-%m-%d %H:%M} ({latest['decision']}, model version "
        f"{latest['model_version']})."
    )


def save_review(key: str, predicted: str, image_id: int | None) -> None:
    """The form's callback: record the review, keep the chosen label, clear the comment."""
    if st.session_state[f"{key}_label"] is None:
        st.session_state["review_outcome"] = ("error", "Choose a label: nothing was recorded.")
        return
    try:
        review_id = add_review(
            engine,
            batch_id=study["id"],
            image_id=image_id,
            reviewer=user,
            label=st.session_state[f"{key}_label"],
            predicted_class=predicted,
            model_name=result["model_name"],
            model_version=result["model_version"],
            comment=st.session_state[f"{key}_comment"],
        )
    except Exception as error:  # the database may refuse or be unreachable
        st.session_state["review_outcome"] = ("error", f"Review not recorded: {error}")
        return
    st.session_state[f"{key}_comment"] = ""
    chosen = st.session_state[f"{key}_label"]
    st.session_state["review_outcome"] = ("success", f"Review {review_id} recorded: {chosen}.")


def review_form(
    container,
    key: str,
    label: str,
    button: str,
    predicted: str,
    current: str | None,
    image_id: int | None = None,
) -> None:
    """An append-only review (of the study, or of one slice with `image_id`) by `user`; the
    label starts at the latest review's (`current`), else at none: a decision, not a click that
    agrees with the model, whose answer stays in view beside it."""
    with container.form(f"{key}-review"):
        if image_id is None:
            st.subheader("Your review of the study")
        st.radio(
            label, CLASSES, index=CLASSES.index(current) if current else None, horizontal=True,
            key=f"{key}_label",
        )  # fmt: skip
        st.caption(f"The model says **{predicted}**. Choose the label you see.")
        st.text_area("Comment", key=f"{key}_comment", max_chars=4000)
        st.caption(f"Recorded as **{user}**, with model version {result['model_version']}.")
        st.form_submit_button(
            button,
            type="primary" if image_id is None else "secondary",
            on_click=save_review,
            args=(key, predicted, image_id),
        )
    if outcome := st.session_state.pop("review_outcome", None):
        (container.success if outcome[0] == "success" else container.error)(outcome[1])


review_form(
    st,
    f"study_{study['id']}",
    "Label",
    "Submit review",
    result["predicted_class"],
    latest["label"] if latest else None,
)

every_file = study_slices(engine, study["id"], result["model_name"], result["model_version"])
slices = [item for item in every_file if item["status"] != "quarantined"]
quarantined = quarantined_by_reason(every_file)
marks = current_marks(engine, study["id"])
settings = ui.settings()
st.subheader(f"Slices ({len(slices)})")
per_page = 24
pages = max(1, -(-len(slices) // per_page))
page = st.number_input("Slice page", 1, pages, 1, key="slice_page") if pages > 1 else 1
columns = st.columns(6)
for position, item in enumerate(slices[(page - 1) * per_page : page * per_page]):
    column = columns[position % 6]
    if (path := slice_file(settings, study, item["path"])) is not None:
        column.image(ui.thumbnail(path), width="stretch")
    if item["p_malignant"] is None:
        column.caption(f"**{ui.plain(item['path'])}**: no prediction by this model version")
    else:
        reviewed = (
            f" · reviewed {item['corrected_label'] or 'confirmed'}" if item["decision"] else ""
        )
        if unlike := slice_unlike_training(item, result):
            reviewed += f" · outside the training range: {', '.join(unlike)}"
        if changes := changed_on(sensitivity, item["path"]):
            reviewed += f" · call changes under another export: {changes}"
        shares = {c: item[f"p_{c}"] for c in CLASSES}
        column.caption(
            f"**{ui.plain(item['path'])}** → {item['predicted_class']}  \n"
            f"{probabilities_line(shares)}{reviewed}{ui_marks.mark_note(marks, item)}"
        )

for reason, paths in quarantined:
    files = f"{len(paths)} files" if len(paths) > 1 else "1 file"
    st.warning(f"{files} quarantined, not scored: {ui.plain(reason)}", icon=":material/block:")
    more = f" and {len(paths) - 20} more" if len(paths) > 20 else ""
    st.caption(", ".join(ui.plain(path) for path in paths[:20]) + more)

scored = [item for item in slices if item["p_malignant"] is not None]
if scored:
    st.subheader("Explain and review a slice")
    names = {item["image_id"]: item for item in scored}
    left, right = st.columns([1, 1])
    chosen = names[
        left.selectbox(
            "Slice", list(names), format_func=lambda i: names[i]["path"], key="explain_slice"
        )
    ]
    explained = left.radio(
        "Explain the class",
        CLASSES,
        index=CLASSES.index(chosen["predicted_class"]),
        horizontal=True,
        key="explain_class",
    )
    path = slice_file(settings, study, chosen["path"])
    if path is None:
        left.warning("The slice's file is no longer on disk.")
    elif left.button("Explain this slice", key="explain_go"):
        try:
            model = ui.load_model(f"models:/{result['model_name']}/{result['model_version']}")
            if model.family == "cnn":
                index = CLASSES.index(explained)
                heat = explain_file(settings, model, path, chosen["sha256"], index)
                right.image(heat, caption=f"Grad-CAM for {explained}", width="stretch")
            else:
                mark = marks.get(chosen["image_id"])  # beside the candidates, if marked
                why = explain_features_file(model, path, explained, mark=mark)
                right.image(why.outlined, caption=ui.candidates_caption(why), width="stretch")
                ui.feature_pushes(st, why)
        except Exception as error:  # the model store may be unreachable
            right.warning(f"Explanation unavailable: {type(error).__name__}: {error}")
    review_form(
        left,
        f"slice_{chosen['image_id']}",
        "Label of this slice",
        "Submit slice review",
        chosen["predicted_class"],
        reviewed_label(chosen["decision"], chosen["corrected_label"], chosen["predicted_class"]),
        chosen["image_id"],
    )
    ui_marks.mark_slice(engine, user, result, chosen, path, marks.get(chosen["image_id"]))

st.subheader("Review history")
history = review_history(engine, study["id"])
if history:
    st.dataframe(pd.DataFrame(history), hide_index=True, width="stretch")
    st.caption("Append-only: the newest review counts; earlier ones stay on record.")
else:
    st.caption("Not reviewed yet.")

deliveries = study_deliveries(engine, study["id"])
if deliveries:
    st.subheader("Sent to the hospital")
    st.dataframe(pd.DataFrame(deliveries), hide_index=True, width="stretch")
    st.caption(
        "The DICOM SR and FHIR report of each report version, once per place; a waiting one "
        "is retried with backoff."
    )

if len(study["results"]) > 1:
    with st.expander("Earlier results of this study (other model versions)"):
        st.dataframe(pd.DataFrame(study["results"][1:]), hide_index=True)
