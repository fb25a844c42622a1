"""What a compressed CT slice costs the scorer to decode, against the same slice uncompressed.

The receiver accepts every transfer syntax the decoder reads (`imaging.dicom
.decodable_transfer_syntaxes`) and Orthanc forwards a study in the syntax it stored it in, so
a site whose PACS keeps JPEG 2000 sends the scorer JPEG 2000. For `--slices` real slices of
the dataset (512 px), written as CT instances (`exchange.synthetic`, 12-bit, Explicit VR
Little Endian: the baseline) and then losslessly compressed to each syntax that can be
encoded here (pydicom's encoders; JPEG Lossless SV1 by dcmtk's dcmcjpeg when installed),
the table gives the CPU time of `imaging.dicom.decode_dicom` a slice (median of `--repeat`
passes over all slices, one process), the same with the plugin pydicom picks by itself
(`FASTEST_DECODERS` emptied), the file size, and whether every decoded slice equals the
uncompressed one. The baseline is measured in the same run.

Run: .venv/bin/python bench/bench_decode.py [--slices 40] [--repeat 3]
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pydicom
from pydicom.uid import (
    UID,
    JPEG2000Lossless,
    JPEGLosslessSV1,
    JPEGLSLossless,
    RLELossless,
)

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from lung_model.exchange.synthetic import write_series  # noqa: E402
from lung_model.imaging import dicom  # noqa: E402
from lung_model.imaging.dicom import decode_dicom  # noqa: E402
from lung_model.settings import get_settings  # noqa: E402


def pydicom_encoder(syntax: UID) -> Callable[[Path, Path], None]:
    def compress(source: Path, target: Path) -> None:
        ds = pydicom.dcmread(source)
        ds.compress(syntax)
        ds.save_as(target)

    return compress


def dcmcjpeg(source: Path, target: Path) -> None:
    subprocess.run(["dcmcjpeg", "+e1", str(source), str(target)], check=True)


@contextmanager
def pydicom_default_plugins() -> Iterator[None]:
    """Decode as pydicom chooses by itself, without `FASTEST_DECODERS` (the comparison)."""
    chosen = dict(dicom.FASTEST_DECODERS)
    dicom.FASTEST_DECODERS.clear()
    try:
        yield
    finally:
        dicom.FASTEST_DECODERS.update(chosen)


def syntaxes() -> dict[str, tuple[UID, Callable[[Path, Path], None]]]:
    found = {
        "JPEG 2000 lossless": (JPEG2000Lossless, pydicom_encoder(JPEG2000Lossless)),
        "JPEG-LS lossless": (JPEGLSLossless, pydicom_encoder(JPEGLSLossless)),
        "RLE lossless": (RLELossless, pydicom_encoder(RLELossless)),
    }
    if shutil.which("dcmcjpeg"):
        found["JPEG lossless SV1"] = (JPEGLosslessSV1, dcmcjpeg)
    return found


def decode_ms(files: list[Path], repeat: int) -> tuple[float, list[np.ndarray]]:
    """Median over passes of the CPU ms a slice, and the decoded slices of the last pass."""
    datas = [file.read_bytes() for file in files]
    passes, grays = [], []
    for _ in range(repeat):
        start = time.process_time()
        grays = [decode_dicom(data).gray for data in datas]
        passes.append((time.process_time() - start) * 1000 / len(datas))
    return statistics.median(passes), grays


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--slices", type=int, default=40)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    raw = get_settings().raw_data / "Normal cases"
    sources = sorted(raw.glob("*.jpg"))[: args.slices]
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        plain = write_series(root / "uncompressed", sources, seed="bench-decode").files
        base_ms, base_grays = decode_ms(plain, args.repeat)
        size = sum(f.stat().st_size for f in plain)
        baseline = "Explicit VR Little Endian (baseline)"
        rows = [(baseline, base_ms, base_ms, 1.0, size / len(plain), True)]
        for name, (syntax, compress) in syntaxes().items():
            folder = root / str(syntax)
            folder.mkdir()
            files = [folder / f.name for f in plain]
            for source, target in zip(plain, files, strict=True):
                compress(source, target)
            assert all(pydicom.dcmread(f).file_meta.TransferSyntaxUID == syntax for f in files)
            ms, grays = decode_ms(files, args.repeat)
            with pydicom_default_plugins():
                default_ms, _ = decode_ms(files, args.repeat)
            same = all(np.array_equal(a, b) for a, b in zip(base_grays, grays, strict=True))
            ratio = size / sum(f.stat().st_size for f in files)
            per_file = sum(f.stat().st_size for f in files) / len(files)
            rows.append((name, ms, default_ms, ratio, per_file, same))
    print(f"{len(plain)} slices of 512 px, 12 bits; decode_dicom CPU time, median of {args.repeat}")
    print(
        "\n| transfer syntax | CPU ms a slice | vs baseline | pydicom's own plugin choice |"
        " compression | KB a file | lossless |"
    )
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for name, ms, default_ms, ratio, per_file, same in rows:
        print(
            f"| {name} | {ms:.2f} | {ms / base_ms:.1f}x | {default_ms:.2f} ms | {ratio:.2f}:1 |"
            f" {per_file / 1024:.0f} | {'yes' if same else 'NO'} |"
        )
    return 0 if all(row[-1] for row in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
