"""What `python -m lung_model` exits with; scripts and DAGs may rely on these numbers."""

from __future__ import annotations

from enum import IntEnum


class ExitCode(IntEnum):
    OK = 0
    ERROR = 1  # an unexpected error (one line; the traceback with --verbose), or failed checks
    USAGE = 2  # wrong arguments (argparse uses 2 as well)
    NO_MODEL = 2  # `score`: no model to score with (no champion and no --model)
    DATABASE_UNAVAILABLE = 3  # also when it goes away mid-run: the next run resumes the claim
    NOT_A_FOLDER = 4  # `score PATH`: PATH is not a folder
    REGISTRY_UNAVAILABLE = 5  # the MLflow store cannot be reached or read
    REFUSED = 6  # `restore`: the target is not empty, or no usable backup; nothing changed
    INTERRUPTED = 130  # Ctrl-C
