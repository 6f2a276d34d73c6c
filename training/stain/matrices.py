"""Stain matrices of the Ruifrok-Johnston colour deconvolution, one per stain code.

A stain matrix has one row per stain: the optical density that a unit amount of that
stain adds in the red, green and blue channels. Row 0 is haematoxylin (H), row 1 the
counter-stain (O) of the stain code, row 2 the residual, completed as the normalised
cross product of the first two (Ruifrok and Johnston, Anal. Quant. Cytol. Histol.
23(4), 2001). Every row has unit length. This is the ``rgb_from_*`` convention of
``skimage.color``; its inverse turns optical densities into concentrations.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

HAEMATOXYLIN = (0.641, 0.712, 0.285)
PAS = (0.175, 0.972, 0.155)
EOSIN = (0.077, 0.994, 0.105)
DAB = (0.268, 0.570, 0.776)
SIRIUS_RED = (0.339, 0.690, 0.639)

# Counter-stain of each stain code of the study's cohort: (name, optical density vector).
COUNTER_STAINS: dict[str, tuple[str, tuple[float, float, float]]] = {
    "02": ("PAS", PAS),
    "03": ("eosin", EOSIN),  # Jones H&E
    "16": ("DAB", DAB),  # CD68 immunostain
    "32": ("Sirius Red", SIRIUS_RED),
    # NOTE: CD34 (code 39) is developed with a red chromogen whose stain vector was never
    # measured for this cohort. The study reused Sirius Red, and so does this table.
    "39": ("Sirius Red", SIRIUS_RED),
}

# Determinant below which two stain vectors count as parallel: they cannot be separated.
_MIN_DETERMINANT = 1e-3


def normalise_stain_code(stain) -> str:
    """Return a stain code as the two-digit string that names its folder.

    YAML and MLflow parameters turn ``02`` into the integer 2, so integers are padded.
    """
    if isinstance(stain, bool):
        raise ValueError(f"stain={stain!r} is not a stain code; use one of {', '.join(COUNTER_STAINS)}.")
    if isinstance(stain, (int, np.integer)):
        return f"{int(stain):02d}"
    return str(stain).strip()


def _unit_rows(rows: np.ndarray, argument: str) -> np.ndarray:
    norms = np.linalg.norm(rows, axis=1, keepdims=True)
    if not np.all(np.isfinite(rows)) or np.any(norms == 0):
        raise ValueError(f"{argument}={rows.tolist()} contains a zero or non-finite row. Give every stain vector a nonzero direction.")
    return rows / norms


def matrix_from_vectors(vectors: Sequence[Sequence[float]], argument: str = "stain_matrix") -> np.ndarray:
    """Build a 3x3 ``rgb_from_stains`` matrix from two or three stain vectors.

    The first vector is haematoxylin, the second the counter-stain; a missing third
    row is completed as the normalised cross product. Raises ValueError naming
    ``argument`` when the vectors are malformed or cannot be distinguished.
    """
    try:
        rows = np.asarray(vectors, dtype=np.float64)
    except (TypeError, ValueError):
        raise ValueError(f"{argument}={vectors!r} must be a list of two or three [R, G, B] optical densities.") from None
    if rows.ndim != 2 or rows.shape[1] != 3 or rows.shape[0] not in (2, 3):
        raise ValueError(
            f"{argument} has shape {list(rows.shape)}; it must be two or three rows of [R, G, B] optical densities "
            "(haematoxylin first, then the counter-stain, then optionally the residual)."
        )
    rows = _unit_rows(rows, argument)
    if rows.shape[0] == 2:
        residual = np.cross(rows[0], rows[1])
        if np.linalg.norm(residual) < _MIN_DETERMINANT:
            raise ValueError(
                f"{argument}: the haematoxylin and counter-stain vectors {rows.tolist()} are parallel, so the stains "
                "cannot be separated. Give two different stain vectors."
            )
        rows = np.vstack([rows, residual / np.linalg.norm(residual)])
    if abs(np.linalg.det(rows)) < _MIN_DETERMINANT:
        raise ValueError(
            f"{argument}={rows.round(4).tolist()} is singular (determinant {np.linalg.det(rows):.2g}): the three stain "
            "vectors are nearly coplanar. Give three independent vectors, or only the first two."
        )
    return rows


def stain_matrix(stain=None, custom: Sequence[Sequence[float]] | None = None) -> np.ndarray:
    """Return the ``rgb_from_stains`` matrix for a stain code or a custom matrix.

    ``custom`` (two or three rows) takes precedence over ``stain``.
    """
    if custom is not None and len(custom):
        return matrix_from_vectors(custom)
    code = normalise_stain_code(stain)
    if code not in COUNTER_STAINS:
        raise ValueError(
            f"stain={code!r} has no stain matrix. Known stain codes: {', '.join(COUNTER_STAINS)}; "
            "for another stain give method.stain_matrix as [[haematoxylin R, G, B], [counter-stain R, G, B]]."
        )
    return matrix_from_vectors([HAEMATOXYLIN, COUNTER_STAINS[code][1]])


def counter_stain_name(stain=None, custom: Sequence[Sequence[float]] | None = None) -> str:
    """Return the counter-stain's name for figures and tags ("custom" for a custom matrix)."""
    if custom is not None and len(custom):
        return "custom"
    return COUNTER_STAINS.get(normalise_stain_code(stain), ("unknown",))[0]
