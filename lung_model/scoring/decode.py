"""Files to model-ready arrays in parallel, a bounded number of batches ahead of the model.

Each file is read (regular files only, size-capped, never through a symlink), hashed
(sha256: the image's identity in `predictions`), decoded by content (`lung_model.imaging.images`)
and prepared for the model, in a pool of threads (Pillow, pydicom's codecs, hashlib and numpy
release the GIL while they work) or processes (`decode_pool`). At most `prefetch` batches
are in flight, so memory does not grow with the number of files. Whatever goes wrong with one file becomes its reason.
See https://docs.python.org/3/library/concurrent.futures.html
"""

from __future__ import annotations

import hashlib
import math
import os
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import BrokenExecutor, Future
from dataclasses import dataclass
from itertools import islice

import numpy as np

from lung_model.imaging.errors import UnreadableImage
from lung_model.imaging.images import DecodedImage, decode_bytes, read_limited, sniff_format
from lung_model.scoring.files import InputFile
from lung_model.scoring.guard import Measure
from lung_model.scoring.predictor import Prepare
from lung_model.scoring.sensitivity import perturbed_inputs
from lung_model.scoring.store import ImageRow

MAX_REASON = 300


class DecodeWorkerDied(RuntimeError):
    """A worker process of the decoding pool ended without an answer."""


@dataclass(frozen=True)
class Decoded:
    file: InputFile
    row: ImageRow
    x: np.ndarray | None  # model input, None when quarantined
    # inputs under acquisition perturbations (`scoring.sensitivity`), for the guard's slices
    perturbed: dict[str, np.ndarray] | None = None


def _refused(file: InputFile, reason: str, **known: object) -> Decoded:
    fields: dict[str, object] = {
        "sha256": None,
        "format": None,
        "size_bytes": None,
        "width": None,
        "height": None,
    }
    fields.update(known)
    row = ImageRow(file.relpath, status="quarantined", reason=reason[:MAX_REASON], **fields)  # type: ignore[arg-type]
    return Decoded(file, row, None)


def decode_file(
    file: InputFile,
    prepare: Prepare,
    input_shape: tuple[int, ...],
    id_key: bytes | None,
    reduce_to: int | None,
    measure: Measure | None = None,
    perturb: tuple[str, ...] = (),
) -> Decoded:
    """One input file to a scored-to-be row with its model input, or a quarantine row;
    `reduce_to` is how far the model lets a JPEG be decoded down (None: full resolution);
    `measure`, when given, adds the slice's acquisition measurements (`scoring.guard`),
    `perturb` its model inputs under those perturbations (`scoring.sensitivity`)."""
    if file.refusal:
        return _refused(file, file.refusal)
    try:
        data = read_limited(file.read_from)
    except UnreadableImage as error:
        return _refused(file, str(error))
    facts: dict[str, object] = {
        "sha256": hashlib.sha256(data).hexdigest(),
        "size_bytes": len(data),
        "format": sniff_format(data[:132]),
    }
    try:
        image = decode_bytes(data, id_key=id_key, reduce_to=reduce_to)
        facts.update(width=image.width, height=image.height)
        x = np.asarray(prepare(image.gray), dtype=np.float32)
        full = _full_resolution(data, image, id_key) if measure or perturb else None
        if measure is not None:
            facts["acquisition"] = _measured(measure, full, image)
        perturbed = _perturbed(perturb, prepare, full, image, input_shape)
    except UnreadableImage as error:
        return _refused(file, str(error), **facts)
    except Exception as error:  # a decoder or preprocessing bug must not stop the study
        return _refused(file, f"cannot decode: {type(error).__name__}: {error}", **facts)
    if x.shape != tuple(input_shape) or not np.isfinite(x).all():
        return _refused(file, f"preprocessing gave an unusable array {x.shape}", **facts)
    row = ImageRow(
        file.relpath,
        status="scored",
        reason=None,
        patient_hash=image.patient_hash,
        instance_number=image.instance_number,
        **facts,  # type: ignore[arg-type]
    )
    return Decoded(file, row, x, perturbed)


def _full_resolution(data: bytes, image: DecodedImage, id_key: bytes | None) -> DecodedImage | None:
    """The slice at full resolution (decoded again only when it was decoded down); None
    when that fails: the guard never costs a slice its score."""
    try:
        reduced = image.gray.shape != (image.height, image.width)
        return decode_bytes(data, id_key=id_key) if reduced else image
    except Exception:
        return None


def _measured(
    measure: Measure, full: DecodedImage | None, image: DecodedImage
) -> dict[str, float] | None:
    """The slice's acquisition measurements at full resolution (as training measured its
    slices); None when they cannot be taken."""
    try:
        return None if full is None else measure(full.gray, image.height, image.width)
    except Exception:  # an unmeasurable slice is scored, not refused
        return None


def _perturbed(
    names: tuple[str, ...],
    prepare: Prepare,
    full: DecodedImage | None,
    image: DecodedImage,
    input_shape: tuple[int, ...],
) -> dict[str, np.ndarray] | None:
    """The slice's model inputs under the perturbations `names` (as the invariance check
    makes them: from the full-resolution slice); None when not wanted or not possible."""
    if not names or full is None:
        return None
    try:
        inputs = perturbed_inputs(full.gray, prepare, names, full is not image)
    except Exception:  # a slice the perturbations break is scored, just not checked
        return None
    usable = all(x.shape == tuple(input_shape) and np.isfinite(x).all() for x in inputs.values())
    return inputs if usable else None


def default_workers() -> int:
    """60% of the CPUs, rounded up, between 1 and 4: reading, decoding and cropping a slice
    costs about 1.6 times the forward pass of the default model (bench/bench_scoring.py)."""
    return max(1, min(4, math.ceil(0.6 * (os.cpu_count() or 1))))


def split_cpus(workers: int, model_threads: int) -> tuple[int, int]:
    """(decoding threads, TensorFlow threads) for a scoring process; 0 means automatic:
    TensorFlow gets the CPUs the decoders leave plus one (the two stages take turns)."""
    workers = workers or default_workers()
    return workers, model_threads or max(1, (os.cpu_count() or 1) + 1 - workers)


def limit_model_threads(threads: int) -> bool:
    """Give TensorFlow's forward pass `threads` threads; False when too late (TensorFlow
    already ran an op in this process). Call before loading the model.

    Why: with its default, TensorFlow splits each convolution over every CPU, so each op
    waits for the CPU a decoding thread holds; on two CPUs, 2 decoding threads and 1
    TensorFlow thread scored 266 to 281 slices/s, against 254 with TensorFlow's default."""
    import tensorflow as tf

    try:
        tf.config.threading.set_intra_op_parallelism_threads(threads)
    except RuntimeError:
        return False
    return True


def decoded_batches(
    files: Iterable[InputFile],
    submit: Callable[[InputFile], Future[Decoded]],
    batch_size: int,
    prefetch: int = 2,
) -> Iterator[list[Decoded]]:
    """Batches of decoded files in input order; decoding (`submit`: to a pool of threads or
    processes, `lung_model.scoring.decode_pool`) runs `prefetch` batches ahead."""
    remaining = iter(files)
    pending: deque[Future[Decoded]] = deque(
        submit(f) for f in islice(remaining, batch_size * (prefetch + 1))
    )
    try:
        while pending:
            try:
                batch = [pending.popleft().result() for _ in range(min(batch_size, len(pending)))]
            except BrokenExecutor as error:
                raise DecodeWorkerDied(
                    "a decoding worker process died (killed, out of memory, or a decoder"
                    " crash): the study stays claimed and the next run resumes it"
                ) from error
            pending.extend(submit(f) for f in islice(remaining, batch_size))
            yield batch
    finally:
        for future in pending:  # a stopped scorer leaves nothing queued behind it
            future.cancel()
