"""Read histology images and glomerulus masks in every common flavour.

Images come back as ``uint8`` RGB arrays of shape (height, width, 3); masks as
``uint8`` arrays of shape (height, width) holding 0 (background) and 1 (glomerulus).
Everything that cannot be read correctly raises :class:`ImageReadError` naming the
file, the problem and the fix.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff")
MASK_SUFFIXES = (".png", ".tif", ".tiff")
LOSSY_SUFFIXES = (".jpg", ".jpeg")


class ImageReadError(ValueError):
    """An image or mask file that cannot be used, with the reason and the fix."""

    def __init__(self, path: Path | str, problem: str, fix: str):
        self.path = Path(path)
        self.problem = problem
        self.fix = fix
        super().__init__(f"{path}: {problem}. {fix}")


def _to_uint8(array: np.ndarray, path: Path) -> np.ndarray:
    """Scale integer or float samples to uint8 by the range of their type."""
    if array.dtype == np.uint8:
        return array
    if array.dtype == bool:
        return array.astype(np.uint8) * 255
    if np.issubdtype(array.dtype, np.unsignedinteger) or np.issubdtype(array.dtype, np.signedinteger):
        maximum = np.iinfo(array.dtype).max
        return np.round(np.clip(array, 0, None) / maximum * 255).astype(np.uint8)
    if np.issubdtype(array.dtype, np.floating):
        if not np.isfinite(array).all():
            raise ImageReadError(path, "the image holds NaN or infinite samples", "Re-export it as 8- or 16-bit PNG or TIFF.")
        if array.min() < 0 or array.max() > 1:
            raise ImageReadError(
                path,
                f"floating-point samples span [{array.min():.3g}, {array.max():.3g}], expected [0, 1]",
                "Re-export it as 8- or 16-bit PNG or TIFF.",
            )
        return np.round(array * 255).astype(np.uint8)
    raise ImageReadError(path, f"unsupported sample type {array.dtype}", "Re-export it as 8- or 16-bit PNG or TIFF.")


def _composite_on_white(rgba: np.ndarray) -> np.ndarray:
    """Blend transparent pixels onto white, the colour of an empty glass slide."""
    alpha = rgba[..., 3:4].astype(np.float32) / 255.0
    rgb = rgba[..., :3].astype(np.float32) * alpha + 255.0 * (1.0 - alpha)
    return np.round(rgb).astype(np.uint8)


def _channels_last(array: np.ndarray) -> np.ndarray:
    """Move a leading channel axis of 1, 3 or 4 to the end, as some TIFF writers store it."""
    if array.ndim == 3 and array.shape[0] in (1, 3, 4) and array.shape[2] not in (1, 3, 4):
        return np.moveaxis(array, 0, -1)
    return array


def _read_tiff(path: Path) -> np.ndarray:
    import tifffile

    try:
        array = tifffile.imread(path)
    except (tifffile.TiffFileError, ValueError, OSError) as error:
        raise ImageReadError(path, f"cannot decode the TIFF file ({error})", "Check that the file is complete, or re-export it.") from None
    array = np.squeeze(_channels_last(np.asarray(array)))
    if array.ndim not in (2, 3):
        raise ImageReadError(
            path,
            f"the TIFF holds an array of shape {array.shape}, expected one plane of height x width (x channels)",
            "Export a single page (for a pyramid, one level) as RGB.",
        )
    return array


def _read_pil(path: Path, keep_palette: bool) -> np.ndarray:
    try:
        with Image.open(path) as image:
            image.load()
            if image.mode == "P" and not keep_palette:
                image = image.convert("RGBA" if "transparency" in image.info else "RGB")
            elif image.mode in ("CMYK", "YCbCr", "LAB", "HSV"):
                image = image.convert("RGB")
            elif image.mode == "PA":
                image = image.convert("RGBA")
            array = np.array(image)
    except UnidentifiedImageError:
        raise ImageReadError(path, "not a readable image", "Check the file type; PNG, JPEG and TIFF are supported.") from None
    except OSError as error:
        raise ImageReadError(path, f"cannot decode the file ({error})", "The file is probably truncated or corrupt: copy or export it again.") from None
    return array


def _read_array(path: Path, keep_palette: bool = False) -> np.ndarray:
    path = Path(path)
    if not path.is_file():
        raise ImageReadError(path, "file not found", "Check the path.")
    if path.suffix.lower() in (".tif", ".tiff"):
        return _read_tiff(path)
    return _read_pil(path, keep_palette)


def read_image(path: Path | str) -> np.ndarray:
    """Read an RGB image; grey is replicated, alpha blended onto white, 16 bit scaled to 8."""
    path = Path(path)
    array = _read_array(path)
    if array.ndim == 3 and array.shape[2] == 1:
        array = array[..., 0]
    if array.ndim == 3 and array.shape[2] == 2:
        # Grey with alpha: blend as RGBA.
        array = np.concatenate([array[..., :1]] * 3 + [array[..., 1:]], axis=2)
    array = _to_uint8(array, path)
    if array.ndim == 2:
        array = np.stack([array] * 3, axis=-1)
    if array.shape[2] == 4:
        array = _composite_on_white(array)
    if array.ndim != 3 or array.shape[2] != 3:
        raise ImageReadError(path, f"unexpected image shape {array.shape}", "Export it as RGB, RGBA or greyscale.")
    if min(array.shape[:2]) < 2:
        raise ImageReadError(path, f"the image is only {array.shape[1]}x{array.shape[0]} pixels", "Check the file.")
    return np.ascontiguousarray(array)


def read_mask(path: Path | str) -> np.ndarray:
    """Read a binary glomerulus mask as 0/1 ``uint8``.

    Accepted: 0/1 or 0/max samples in 8 or 16 bit, boolean images, palette images whose
    indices are 0 and one other value, and RGB masks whose three channels are equal.
    """
    path = Path(path)
    if path.suffix.lower() in LOSSY_SUFFIXES:
        raise ImageReadError(
            path,
            "the mask is a JPEG file, and lossy compression leaves values between background and glomerulus",
            "Save masks as PNG with 0 for background and 255 (or 1) for glomerulus.",
        )
    array = _read_array(path, keep_palette=True)
    if array.ndim == 3:
        channels = array.shape[2]
        if channels in (2, 4):
            alpha = array[..., -1]
            if alpha.min() != alpha.max():
                raise ImageReadError(path, "the mask has a varying alpha channel", "Save masks without transparency, as one channel of 0/255.")
            array = array[..., : channels - 1]
        if array.shape[2] > 1 and not (array == array[..., :1]).all():
            raise ImageReadError(
                path,
                "the mask is a colour image whose channels differ",
                "Save masks as one channel with 0 for background and 255 (or 1) for glomerulus.",
            )
        array = array[..., 0]
    if array.dtype == bool:
        return array.astype(np.uint8)
    values = np.unique(array)
    if len(values) > 2 or (len(values) == 2 and values[0] != 0):
        shown = ", ".join(str(v) for v in values[:8]) + (", ..." if len(values) > 8 else "")
        raise ImageReadError(
            path,
            f"the mask is not binary: it holds the values {shown}",
            "Threshold it so that background is 0 and glomerulus is 255 (or 1), and save it as PNG.",
        )
    return (array > 0).astype(np.uint8)
