"""Lung CT triage: the logic behind the DAGs, the CLI and the dashboard."""
