"""The batch-scoring DAG's sensor: wait until the inbox holds a study the scorer would claim.

It asks the inbox's own rule (`lung_model.scoring.inbox.ready_problem`), in the worker first
(`poke`) and then deferred to the triggerer between looks (`ReadyStudyTrigger`: no worker
slot held while it waits). Airflow's FileSensor had a rule of its own: a `_READY` folder
holding any file, or a `_READY` link, counted as the marker. The scorer does not take such a
study, so the sensor fired on every run and each run found nothing to claim.
The inbox folder and the marker come from the `lung_inbox` connection (as FileSensor's
did), the quiet period from `LUNG_READY_QUIET_SECONDS`. Light at import: DAG files import it.
See https://airflow.apache.org/docs/apache-airflow/stable/authoring-and-scheduling/deferring.html
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path
from typing import Any

from airflow.sdk import BaseSensorOperator, Connection
from airflow.triggers.base import BaseTrigger, TaskSuccessEvent, TriggerEvent


def study_ready(inbox: str, marker: str, quiet_seconds: float) -> bool:
    from lung_model.scoring.inbox import any_ready

    return any_ready(Path(inbox), marker, quiet_seconds)


class ReadyStudyTrigger(BaseTrigger):
    """Ends the waiting sensor successfully once some study in `inbox` is ready by the
    inbox's rule."""

    def __init__(
        self, inbox: str, marker: str, quiet_seconds: float, poke_interval: float = 5.0
    ) -> None:
        super().__init__()
        self.inbox, self.marker = inbox, marker
        self.quiet_seconds, self.poke_interval = quiet_seconds, poke_interval

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return (
            f"{__name__}.{type(self).__name__}",
            {
                "inbox": self.inbox,
                "marker": self.marker,
                "quiet_seconds": self.quiet_seconds,
                "poke_interval": self.poke_interval,
            },
        )

    async def run(self) -> AsyncIterator[TriggerEvent]:
        ready = (self.inbox, self.marker, self.quiet_seconds)
        while not await asyncio.to_thread(study_ready, *ready):
            await asyncio.sleep(self.poke_interval)
        # ends the sensor from the triggerer: no worker process starts to resume it, the
        # scoring tasks are scheduled seconds sooner (`dag.test()` still resumes it)
        yield TaskSuccessEvent()


class ReadyStudySensor(BaseSensorOperator):
    """Succeeds when a study in the `fs_conn_id` inbox is ready; deferrable."""

    def __init__(self, *, fs_conn_id: str, deferrable: bool = True, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.fs_conn_id, self.deferrable = fs_conn_id, deferrable

    def watched(self) -> tuple[str, str, float]:
        """(inbox folder, ready marker, quiet period in seconds)."""
        from lung_model.settings import get_settings

        extra = Connection.get(self.fs_conn_id).extra_dejson
        marker = str(extra.get("ready_marker") or "_READY")
        return str(extra.get("path", "")), marker, get_settings().ready_quiet_seconds

    def poke(self, context: Any) -> bool:
        return study_ready(*self.watched())

    def execute(self, context: Any) -> None:
        if not self.deferrable:
            super().execute(context)
        elif not self.poke(context):
            self.defer(
                trigger=ReadyStudyTrigger(*self.watched(), poke_interval=self.poke_interval),
                method_name="execute_complete",
                timeout=timedelta(seconds=self.timeout),
            )

    def execute_complete(self, context: Any, event: Any = None) -> None:
        return None
