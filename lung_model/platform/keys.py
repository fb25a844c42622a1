"""Site secrets that are generated, never configured: random keys in `LUNG_HOME/secrets/`.

A key file is created once (0600, folder 0700) on first use, with a hard link so that two
processes starting at once end up with the same key; nothing here is ever committed.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path


def site_key(path: Path) -> bytes:
    """The 32 random bytes in `path`, created on first use."""
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        staging = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}")
        fd = os.open(staging, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:  # a full disk fails the write: leave no half-made key behind
            with os.fdopen(fd, "wb") as handle:
                handle.write(secrets.token_bytes(32))
            os.link(staging, path)
        except FileExistsError:
            pass  # another process won the race: use its key
        finally:
            staging.unlink()
    return path.read_bytes()
