"""One input file (DICOM or PNG) -> one square training image, and the helpers prepare needs around it.

Aspect-ratio policy: pad, never crop. The long side is resized to `image_size` and the short side is
padded symmetrically with black (air). Cropping a portrait chest film to a square would cut the lung
apices or the costophrenic angles, where findings live; padding keeps every pixel of anatomy and the
original geometry (original size and pixel spacing go into the manifest).
"""
from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any

import numpy as np

from data.dicom import UnusableImageError, read_radiograph

PNG_SUFFIXES = (".png",)
BIT_DEPTHS = (8, 16)
# PNG zlib level: 3 writes 512 px images ~3x faster than the default 6 for ~10 % larger files.
PNG_COMPRESS_LEVEL = 3


def convert_image(path: Path | str, *, image_size: int, bit_depth: int = 8) -> np.ndarray:
    """Read a DICOM or PNG radiograph and return it square, `image_size` px, uint8 or uint16.

    The same conversion prepare, train-final and predict use, so a model sees the same pixels everywhere.
    """
    image, _ = read_any(path)
    return to_bit_depth(fit_square(image, image_size), bit_depth)


def read_any(path: Path | str) -> tuple[np.ndarray, dict[str, Any]]:
    """(float32 image in [0, 1], facts) from a PNG (by suffix) or else a DICOM file."""
    if Path(path).suffix.lower() in PNG_SUFFIXES:
        return read_png(path)
    return read_radiograph(path)


def read_png(path: Path | str) -> tuple[np.ndarray, dict[str, Any]]:
    """A grayscale PNG (8 or 16 bit) as float32 in [0, 1], and its facts."""
    pixels, top, facts = read_png_values(path)
    return pixels.astype(np.float32) / np.float32(top), facts


def read_png_values(path: Path | str) -> tuple[np.ndarray, float, dict[str, Any]]:
    """(stored 2-D values, their full-scale value 255 or 65535, facts) of a grayscale PNG.

    RGB(A) is accepted only when R == G == B: a few NIH ChestX-ray14 PNGs are RGBA with equal channels.
    """
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as opened:
            opened.load()
            mode = opened.mode
            pixels = np.asarray(opened)
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as error:
        raise UnusableImageError(path, f"unreadable or truncated PNG ({type(error).__name__})") from error
    if pixels.ndim == 3:
        colour = pixels[..., :3]
        if not (np.array_equal(colour[..., 0], colour[..., 1]) and np.array_equal(colour[..., 0], colour[..., 2])):
            raise UnusableImageError(path, f"colour image (PNG mode {mode}); accepted: grayscale")
        pixels = colour[..., 0]
    if pixels.ndim != 2:
        raise UnusableImageError(path, f"PNG has shape {pixels.shape}; accepted: one grayscale image")
    if pixels.dtype == np.uint8:
        top = 255.0
    elif mode.startswith("I;16") or mode == "I":  # Pillow may open 16-bit grayscale as 32-bit "I" holding 0..65535
        top = 65535.0
    else:
        raise UnusableImageError(path, f"unsupported PNG mode {mode}; accepted: 8- or 16-bit grayscale")
    rows, cols = pixels.shape
    facts = {"modality": "", "view_position": "", "photometric": "MONOCHROME2", "rows": rows, "cols": cols,
             "pixel_spacing_row_mm": None, "pixel_spacing_col_mm": None, "sop_instance_uid": "", "patient_id": "",
             "frames": 1, "bits_stored": 8 if top == 255.0 else 16}
    return pixels, top, facts


def fit_square(image: np.ndarray, image_size: int) -> np.ndarray:
    """Resize the long side to image_size (antialiased) and pad the short side with 0 (air)."""
    from PIL import Image

    rows, cols = image.shape
    scale = image_size / max(rows, cols)
    new_rows, new_cols = max(1, round(rows * scale)), max(1, round(cols * scale))
    if (new_rows, new_cols) != (rows, cols):
        # Pillow's resize convolves with the filter scaled to the reduction factor, so it is
        # antialiased; "F" mode keeps float32 precision until quantisation.
        resized = Image.fromarray(np.ascontiguousarray(image, dtype=np.float32)).resize(
            (new_cols, new_rows), Image.Resampling.BILINEAR, reducing_gap=3.0)
        image = np.asarray(resized)
    square = np.zeros((image_size, image_size), dtype=np.float32)
    top, left = (image_size - new_rows) // 2, (image_size - new_cols) // 2
    square[top:top + new_rows, left:left + new_cols] = image
    return square


def to_bit_depth(image: np.ndarray, bit_depth: int) -> np.ndarray:
    """[0, 1] float -> uint8 (0..255) or uint16 (0..65535), rounded to nearest."""
    if bit_depth not in BIT_DEPTHS:
        raise UnusableImageError("bit_depth", f"bit depth {bit_depth} is not supported; accepted: 8, 16")
    top = 255.0 if bit_depth == 8 else 65535.0
    dtype = np.uint8 if bit_depth == 8 else np.uint16
    return np.rint(np.clip(image, 0.0, 1.0) * top).astype(dtype)


def write_png_atomic(image: np.ndarray, path: Path) -> None:
    """Write a grayscale PNG so that `path` is either absent or complete, never half-written."""
    from PIL import Image

    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    Image.fromarray(np.ascontiguousarray(image)).save(temporary, format="PNG", compress_level=PNG_COMPRESS_LEVEL)
    os.replace(temporary, path)


def pixel_content_hash(stored: np.ndarray) -> str:
    """sha256 of the pixel values and shape, independent of encoding and of the integer dtype.

    The same image stored uncompressed (uint16) and as lossless JPEG 2000 hashes the same.
    """
    if stored.size and stored.min() >= 0 and stored.max() <= 0xFFFF:
        canonical = stored.astype("<u2", copy=False)
    else:
        canonical = stored.astype("<i4", copy=False)
    digest = hashlib.sha256(f"{stored.shape[0]}x{stored.shape[1]}:".encode())
    digest.update(memoryview(np.ascontiguousarray(canonical)).cast("B"))  # hashed in place, no bytes copy
    return digest.hexdigest()
