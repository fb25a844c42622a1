"""The pipelines' tests use the scoring tests' helpers (real slices, stand-in models), plain
modules in their folder."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parents[1] / "scoring"))
