"""Try a scan: the champion's verdict and its explanation for one slice, added to nothing."""

import streamlit as st
import ui

from lung_model.imaging.errors import UnreadableImage
from lung_model.review.rules import rule_for
from lung_model.review.try_scan import try_scan
from lung_model.settings import CLASSES

st.title("Try a scan")
champion = ui.override_banner()
st.caption(
    "Upload one CT slice (JPEG, PNG or DICOM). The current champion scores it with the same "
    "preprocessing as training. Nothing is stored and the worklist does not change."
)
upload = st.file_uploader("CT slice", type=["jpg", "jpeg", "png", "dcm", "dicom"], key="scan")
if upload is None:
    st.stop()

try:
    model = ui.load_model(None)
except Exception as error:  # no champion yet, or the registry is unreachable
    st.error(f"No model to score with: {type(error).__name__}: {error}")
    st.stop()

try:
    verdict = try_scan(upload.getvalue(), model)
except UnreadableImage as error:
    st.error(f"This file cannot be scored: {error}")
    st.stop()

if champion is None or champion.version != model.version:  # a cached, older champion
    ui.override_banner(model.version, "The model that scored this slice")
st.metric("Model says", verdict.predicted_class)
st.caption(rule_for(ui.settings(), model.malignant_threshold, model.study_rule).slice_line())
for name in CLASSES:  # the same order on every page
    probability = verdict.probabilities[name]
    st.progress(probability, text=f"{name}: {ui.percent(probability)}")
left, right = st.columns(2)
if verdict.gradcam is not None:
    left.image(verdict.model_input, caption="What the model saw", clamp=True, width="stretch")
    caption = f"Grad-CAM for {verdict.predicted_class}"
    right.image(verdict.gradcam, caption=caption, width="stretch")
elif verdict.features is not None:
    outlined = verdict.features.outlined
    left.image(outlined, caption=ui.candidates_caption(verdict.features), width="stretch")
    ui.feature_pushes(right, verdict.features)
st.caption(
    f"{verdict.format}, {verdict.width}x{verdict.height} px · model {model.name} "
    f"v{model.version} · data version `{model.data_version}`"
)
