"""List a study folder's input files safely: nothing is read through a symlink leading out.

Every entry below the study folder becomes one `InputFile` (the ready marker at its top
excepted). Symbolic links are never followed out of the folder: a link to a regular file
inside it is read at its target, any other link (outside, to a folder, broken) is refused
with a reason, as are FIFOs, sockets and devices, which are never opened.
See https://docs.python.org/3/library/os.html#os.scandir
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass
from pathlib import Path

from lung_model.platform.names import printable


@dataclass(frozen=True)
class InputFile:
    relpath: str  # POSIX path relative to the study folder: the name stored in `images`
    entry: Path  # the directory entry itself (what moves to quarantine)
    read_from: Path  # where its bytes are read (differs from entry for an in-folder link)
    refusal: str | None = None  # why it must not be read at all


def _link(entry: Path, root_real: str) -> tuple[Path, str | None]:
    target = os.path.realpath(entry)
    inside = target == root_real or target.startswith(root_real + os.sep)
    if not os.path.exists(target):
        return entry, "broken symbolic link"
    if not inside:
        return entry, "symbolic link leading outside the study folder: not followed"
    if not os.path.isfile(target):
        return entry, "symbolic link to a folder or special file: not followed"
    return Path(target), None


def list_inputs(root: Path, marker: str | None = None) -> list[InputFile]:
    """Every file below `root` in a stable order (sorted by relative path)."""
    root_real = os.path.realpath(root)
    found: list[InputFile] = []
    pending = [Path(root)]
    while pending:
        folder = pending.pop()
        with os.scandir(folder) as entries:
            for item in entries:
                path = Path(item.path)
                relpath = printable(path.relative_to(root).as_posix())
                if folder == root and item.name == marker:
                    continue
                mode = item.stat(follow_symlinks=False).st_mode
                if stat.S_ISDIR(mode):
                    pending.append(path)
                elif stat.S_ISLNK(mode):
                    read_from, refusal = _link(path, root_real)
                    found.append(InputFile(relpath, path, read_from, refusal))
                elif stat.S_ISREG(mode):
                    found.append(InputFile(relpath, path, path))
                else:
                    found.append(InputFile(relpath, path, path, "not a regular file"))
    return sorted(found, key=lambda f: f.relpath)
