"""Lung CT triage review dashboard: `streamlit run dashboards/app.py`.

Nothing but the sign-in renders until someone has signed in; then the pages below.
"""

import streamlit as st
import ui

st.set_page_config(page_title="Lung CT triage", page_icon=":lungs:", layout="wide")

user = ui.current_user()
ui.write_session_cookie()
if user is None:
    ui.sign_in()
    st.stop()

navigation = st.navigation(
    {
        "Review": [
            st.Page("views/worklist.py", title="Worklist", icon=":material/list:", default=True),
            st.Page("views/study.py", title="Study", icon=":material/radiology:"),
            st.Page("views/try_scan.py", title="Try a scan", icon=":material/upload:"),
        ],
        "System": [
            st.Page("views/model.py", title="Model", icon=":material/model_training:"),
            st.Page("views/operations.py", title="Operations", icon=":material/monitoring:"),
        ],
    }
)
with st.sidebar:
    st.caption(f"Signed in as **{user}**")
    st.button("Sign out", on_click=ui.sign_out)
    st.caption("Decision support only: a person decides.")
navigation.run()
