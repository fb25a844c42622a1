"""Study folder and file names as the results database stores them, and back to the disk.

By default a name is stored as dropped (made printable). With `LUNG_PSEUDONYMISE_NAMES`, for
a site whose folders or files carry patients' names, a pseudonym is stored instead: `ps-`
and 16 hex digits (64 bits) of an HMAC-SHA256 of the name under the site's patient-ID key
(`LUNG_HOME/secrets/patient-id.key`, which hashes DICOM patient IDs too; the `name:` prefix
keeps the two kinds of pseudonym apart). The same name always gives the same pseudonym, so a
rerun adds nothing twice; without the key a name can neither be read back nor guessed and
checked. Only the database holds pseudonyms: the archive and quarantine keep the real
names, and `locate` and `find` get from a stored name to the disk by hashing what is there.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from lung_model.platform.keys import PATIENT_KEY_FILE, keyed_hash, site_key
from lung_model.settings import Settings

PREFIX = "ps-"


def printable(name: str) -> str:
    """A file name as valid UTF-8 text for the database and CSV: bytes that are not UTF-8
    (kept by Python as surrogate escapes) are written as `\\xNN`."""
    return name.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")


@dataclass(frozen=True)
class StoredNames:
    """How names are stored: as dropped (no key) or as pseudonyms under `key`."""

    key: bytes | None = None

    def name(self, name: str) -> str:
        """What the database holds for a folder name or a path relative to a study."""
        shown = printable(name)
        if self.key is None:
            return shown
        return PREFIX + keyed_hash(f"name:{shown}", self.key)[:16]

    def folder(self, path: Path) -> str:
        """A study folder's path as stored: the place it is in, and its name as `name`."""
        if self.key is None:
            return printable(str(path))
        return str(path.parent / self.name(path.name))

    def locate(self, stored: str) -> Path | None:
        """The folder a stored folder path names: that path when it exists, else the entry
        of its parent whose name is stored as its last part."""
        path = Path(stored)
        if path.is_dir():
            return path
        if self.key is None or not path.parent.is_dir():
            return None
        seen = _entry_stored_as(self, path.parent, path.name)  # a study view asks per slice
        if seen is not None and os.path.lexists(seen):
            return seen
        return _entry_stored_as.__wrapped__(self, path.parent, path.name)

    def find(self, root: Path, stored: str) -> Path | None:
        """The file below `root` that a stored relative path names, never one outside it."""
        inside = root.resolve()

        def kept(candidate: Path) -> Path | None:
            real = candidate.resolve()
            return real if real.is_relative_to(inside) and real.is_file() else None

        if (as_named := kept(root / stored)) or self.key is None:
            return as_named
        for folder, _, files in os.walk(root):
            for file in files:
                path = Path(folder) / file
                if self.name(path.relative_to(root).as_posix()) == stored:
                    return kept(path)
        return None


@lru_cache(maxsize=1024)
def _entry_stored_as(names: StoredNames, parent: Path, stored: str) -> Path | None:
    return next((e for e in parent.iterdir() if names.name(e.name) == stored), None)


def stored_names(settings: Settings) -> StoredNames:
    """The site's rule: pseudonyms under the patient-ID key when `LUNG_PSEUDONYMISE_NAMES`."""
    if not settings.pseudonymise_names:
        return StoredNames()
    return StoredNames(site_key(settings.secrets_dir / PATIENT_KEY_FILE))
