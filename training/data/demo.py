"""A demo task on real tissue that ships with scikit-image, for runs without data paths.

``skimage.data.immunohistochemistry()`` is a 512x512 image of human colon tissue
stained with DAB and haematoxylin. The demo segments the DAB-positive (brown)
epithelium, blob-shaped regions much like glomeruli: the mask is the DAB channel of
scikit-image's colour deconvolution, smoothed, thresholded by Otsu's method, with
holes filled and specks removed. It is no glomerulus task; it exercises the whole
pipeline on real histology when no kidney data is at hand.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
from PIL import Image

logger = logging.getLogger(__name__)

GRID = 3


def dab_mask(image: np.ndarray) -> np.ndarray:
    """Return the 0/1 mask of DAB-positive pixels of an RGB IHC image."""
    from scipy.ndimage import binary_fill_holes
    from skimage.color import rgb2hed
    from skimage.filters import gaussian, threshold_otsu
    from skimage.morphology import remove_small_objects

    dab = gaussian(rgb2hed(image)[..., 2], sigma=4)
    mask = binary_fill_holes(dab > threshold_otsu(dab))
    mask = remove_small_objects(mask, max_size=256)
    return mask.astype(np.uint8)


def write_demo_data(root: Path | str) -> tuple[Path, Path]:
    """Write the demo's unlabelled and labelled folders under ``root``; return both paths.

    Labelled: the image cut into a 3x3 grid of tiles, each tile its own biopsy group
    (``ihc<row><col>``) so the split has groups to distribute. Unlabelled: the whole
    image as one domain. Existing files are rewritten, so the folders always match
    the installed scikit-image.
    """
    from skimage.data import immunohistochemistry

    root = Path(root)
    image = immunohistochemistry()
    mask = dab_mask(image)

    unlabelled = root / "unlabelled"
    (unlabelled / "ihc").mkdir(parents=True, exist_ok=True)
    Image.fromarray(image).save(unlabelled / "ihc" / "immunohistochemistry.png")

    labelled = root / "labelled"
    (labelled / "images").mkdir(parents=True, exist_ok=True)
    (labelled / "masks").mkdir(parents=True, exist_ok=True)
    side = image.shape[0] // GRID
    for row in range(GRID):
        for col in range(GRID):
            name = f"ihc{row}{col}"
            window = (slice(row * side, (row + 1) * side), slice(col * side, (col + 1) * side))
            Image.fromarray(image[window]).save(labelled / "images" / f"{name}.png")
            Image.fromarray(mask[window] * 255).save(labelled / "masks" / f"{name}.png")
    logger.info("Demo data written to %s (DAB-positive tissue on scikit-image's IHC image).", root)
    return unlabelled, labelled
