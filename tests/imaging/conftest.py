"""Real slices of the test fixture shared by the imaging tests."""

from pathlib import Path

import numpy as np
import pytest

from lung_model.imaging.images import read_gray

SLICES = Path(__file__).parents[1] / "fixtures" / "iq-othnccd"


@pytest.fixture(scope="module")
def normal() -> np.ndarray:
    return read_gray(SLICES / "Normal cases" / "Normal case (1).jpg").gray
