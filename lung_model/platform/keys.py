"""Site secrets that are generated, never configured: random keys in `LUNG_HOME/secrets/`.

A key file is created once (0600, folder 0700) on first use, with a hard link so that two
processes starting at once end up with the same key; nothing here is ever committed.
`keyed_hash` makes a pseudonym with one: equal values match, a value cannot be read back,
and without the key a guessed value cannot be checked.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
from pathlib import Path

PATIENT_KEY_FILE = "patient-id.key"  # hashes DICOM patient IDs and, when set, stored names


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


def keyed_hash(value: str, key: bytes) -> str:
    """HMAC-SHA256 of `value` (UTF-8, undecodable file-name bytes kept) under `key`, in hex."""
    data = value.encode("utf-8", "surrogateescape")
    return hmac.new(key, data, hashlib.sha256).hexdigest()
