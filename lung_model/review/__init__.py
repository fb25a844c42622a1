"""What the review dashboard shows and records: accounts, worklist, studies, reviews,
model and operations views. The Streamlit pages in `dashboards/` only render these."""
