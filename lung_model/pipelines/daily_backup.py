"""The daily backup (the `lung_backup` DAG): one dated backup into `LUNG_BACKUP_DIR`
(default: `<LUNG_HOME>-backups` beside LUNG_HOME), then all but the newest
`LUNG_BACKUP_KEEP` deleted. The work is `lung_model.lifecycle.backup.backup`; this returns
what the task logs and keeps.
"""

from __future__ import annotations

import logging
from typing import Any

from lung_model.lifecycle.backup import backup
from lung_model.settings import Settings, get_settings

log = logging.getLogger(__name__)


def run_backup(settings: Settings | None = None) -> dict[str, Any]:
    settings = settings or get_settings()
    result = backup(settings, settings.backup_folder, keep=settings.backup_keep)
    for warning in result.warnings:
        log.warning("backup %s: %s", result.folder.name, warning)
    log.info(
        "backup %s: %d bytes in %.1f s, pruned %d",
        result.folder,
        result.manifest["bytes"],
        result.manifest["seconds"],
        len(result.pruned),
    )
    return {
        "folder": str(result.folder),
        "bytes": result.manifest["bytes"],
        "seconds": result.manifest["seconds"],
        "pruned": [str(path) for path in result.pruned],
        "warnings": result.warnings,
    }
