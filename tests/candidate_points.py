"""Points on the nodule candidates a test marks (issue 22: a reviewer's click on a lesion)."""

from __future__ import annotations

import numpy as np
from skimage.measure import points_in_poly

from lung_model.imaging.features import Candidate


def inside(candidate: Candidate) -> tuple[float, float]:
    """(x, y) of a pixel centre inside the candidate's outline, nearest its vertices' mean."""
    outline = np.array(candidate.outline)
    top, bottom, left, right = candidate.box
    rows, cols = np.mgrid[top:bottom, left:right]
    grid = np.column_stack([rows.ravel(), cols.ravel()]).astype(float)
    within = grid[points_in_poly(grid, outline)]
    nearest = within[np.argmin(np.hypot(*(within - outline.mean(axis=0)).T))]
    return float(nearest[1]), float(nearest[0])
