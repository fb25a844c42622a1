"""Marking lesions on the Study page: one click on the slice records the lesion's centre (a
drag from the centre records its extent too), a button records 'no lesion visible'. Each mark
is saved at once by the component's callback, which reruns the page without reloading it, so
the reviewer keeps the slice and the place. Logic is in lung_model.review.marks."""

from __future__ import annotations

from functools import partial
from pathlib import Path
from typing import Any

import streamlit as st
from sqlalchemy import Engine
from streamlit_image_coordinates import streamlit_image_coordinates

from lung_model.review.marks import (
    Kind,
    add_mark,
    click_to_mark,
    marked_slice,
    marks_for_training,
)

OUTCOME = "mark_outcome"


def describe(mark: dict[str, Any] | None) -> str:
    """'lesion at (212, 301), radius 18 px' / 'no lesion visible' / 'not marked'."""
    if mark is None:
        return "not marked"
    if mark["kind"] == "no_lesion":
        return "no lesion visible"
    extent = f", radius {mark['radius']:.0f} px" if mark["radius"] else ""
    return f"lesion at ({mark['x']:.0f}, {mark['y']:.0f}){extent}"


def _drawn(mark: dict[str, Any] | None) -> dict[str, Any] | None:
    """What of a mark the drawing shows (so a new mark row at the same place draws nothing
    new)."""
    return None if mark is None else {k: mark[k] for k in ("kind", "x", "y", "radius")}


@st.cache_data(max_entries=200, show_spinner=False)
def _marked_slice(path: str, modified: float, mark: dict[str, Any] | None) -> Any:
    """`marked_slice`, decoded once per file version and mark, kept across reruns (every
    click and button reruns the page)."""
    return marked_slice(Path(path), mark)


def mark_note(marks: dict[int, dict[str, Any]], item: dict[str, Any]) -> str:
    """The slice caption's note on its mark, if it has one."""
    mark = marks.get(item["image_id"])
    return f" · marked: {describe(mark)}" if mark else ""


def _save(
    engine: Engine,
    user: str,
    result: dict[str, Any],
    image_id: int,
    kind: Kind,
    size: tuple[int, int] | None = None,
) -> None:
    """The callback of a click on the slice (`size` given) or of a button."""
    x = y = radius = None
    if size is not None:
        value = st.session_state.get(f"mark_{image_id}")
        if not value:
            return
        x, y, radius = click_to_mark(value, *size)
    try:
        add_mark(
            engine,
            image_id=image_id,
            reviewer=user,
            kind=kind,
            x=x,
            y=y,
            radius=radius,
            model_name=result["model_name"],
            model_version=result["model_version"],
        )
    except Exception as error:  # the database may refuse or be unreachable
        st.session_state[OUTCOME] = ("error", f"Mark not recorded: {error}")
        return
    mark = {"kind": kind, "x": x, "y": y, "radius": radius}
    said = "withdrawn" if kind == "withdrawn" else describe(mark)
    st.session_state[OUTCOME] = ("success", f"Mark recorded: {said}.")


def mark_slice(
    engine: Engine,
    user: str,
    result: dict[str, Any],
    chosen: dict[str, Any],
    path: Path | None,
    mark: dict[str, Any] | None,
) -> None:
    """The chosen slice at full size with its mark, ready for a click, and the buttons."""
    st.subheader("Mark the lesion on this slice")
    if path is None:
        st.warning("The slice's file is no longer on disk: it cannot be marked.")
        return
    image = _marked_slice(str(path), path.stat().st_mtime, _drawn(mark))
    image_id = chosen["image_id"]
    picture, controls = st.columns([3, 2])
    with picture:
        streamlit_image_coordinates(
            image,
            key=f"mark_{image_id}",
            width="stretch",
            click_and_drag=True,
            cursor="crosshair",
            on_click=partial(_save, engine, user, result, image_id, "lesion", image.size),
        )
    controls.markdown(f"**{describe(mark)}**")
    if mark is not None:
        controls.caption(f"by {mark['reviewer']} on {mark['created_at']:%Y-%m-%d %H:%M}")
    controls.caption(
        "Click the lesion's centre to mark it; drag from the centre to its edge to give its "
        "extent too. A new mark replaces this slice's mark; earlier ones stay on record."
    )
    controls.button(
        "No lesion visible",
        key=f"no_lesion_{image_id}",
        on_click=_save,
        args=(engine, user, result, image_id, "no_lesion"),
    )
    if mark is not None:
        controls.button(
            "Take the mark back",
            key=f"withdraw_{image_id}",
            on_click=_save,
            args=(engine, user, result, image_id, "withdrawn"),
        )
    if outcome := st.session_state.pop(OUTCOME, None):
        (controls.success if outcome[0] == "success" else controls.error)(outcome[1])


def training_marks(engine: Engine, runs: list[dict[str, Any]]) -> None:
    """The Model page's lines on marks: what the next training can use, what the last used."""
    st.subheader("Lesion marks for training")
    try:
        found = marks_for_training(engine)
    except Exception as error:  # the database may be unreachable
        st.error(f"Marks unavailable: {type(error).__name__}: {error}")
        return
    st.markdown(
        f"The next training can use **{found['slices']} marked slices** in "
        f"**{found['studies']} reviewed studies**; {found['exported_slices']} slices of "
        f"{found['exported_studies']} studies are in the data already, the rest once "
        "lung_feedback exports them (nightly)."
    )
    last = next((run for run in runs if run.get("marked slices") is not None), None)
    if last is None:
        st.caption("No training run has recorded marks yet.")
    else:
        st.markdown(
            f"The last training ({last['run']}, {last['started']:%Y-%m-%d %H:%M}) used "
            f"**{last['marked slices']:.0f} marked slices** in "
            f"**{last['marked studies']:.0f} studies**."
        )
    st.caption(
        "Marked slices of the training and validation patients are used (test patients keep "
        "their patient labels); slices marked 'no lesion visible' in a benign or malignant "
        "study are left out of training (docs/MODEL.md, run 6)."
    )
