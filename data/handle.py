"""How a prepared dataset reaches a trial: in memory through Ray's object store, or by a shared path.

A trial receives a handle through `tune.with_parameters(train_fold, data=handle)`, which puts it in Ray's
object store once; every trial on every node then reads that one copy. So:

- `InMemoryHandle`: all images decoded once in the driver into one N x H x W array. Nodes need no shared
  filesystem. For small datasets (the hospital case: ~2,000 images at 512 px is 0.5 GB).
- `PathHandle`: an absolute path to PREPARED/ that every node can read (NFS, a bucket mount). For large
  datasets (NIH: 112,120 images at 512 px is 29 GB), which the object store should not hold.

`make_handle(..., mode="auto")` picks by the decoded size. Whether every Ray node can read a path handle is
the search's preflight (search.cluster.check_reachable): this package never imports Ray.
"""
from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from data.errors import DataError

# Auto mode keeps a dataset in memory up to this decoded size. Below TensorFlow's 2 GB limit on one
# serialized tensor (tf.data may serialize the array when a distribution strategy rebatches it), and small
# enough that the object store (30% of node memory by default) holds it beside the trials' own memory.
DEFAULT_MEMORY_LIMIT_BYTES = 1 << 30
MODES = ("auto", "memory", "path")


@dataclass(frozen=True, eq=False)
class InMemoryHandle:
    """Decoded images (uint8, or uint16 for 16-bit datasets; N x H x W) with their manifest rows."""
    images: np.ndarray
    manifest: pd.DataFrame = field(repr=False)
    categories: list[str]
    source: str  # the PREPARED folder it was read from, for messages only

    def load(self):
        """(images, labels uint8 N x C, manifest, categories); images share this handle's memory."""
        return self.images, self.manifest[self.categories].to_numpy(dtype=np.uint8), self.manifest, self.categories

    @property
    def nbytes(self) -> int:
        return int(self.images.nbytes)


@dataclass(frozen=True)
class PathHandle:
    """An absolute PREPARED path; `load` reads the manifest on whichever node calls it."""
    root: str

    def load(self):
        """(absolute PNG paths as str, labels uint8 N x C, manifest, categories)."""
        from data.manifest import load_prepared

        prepared = load_prepared(self.root)
        return [str(path) for path in prepared.image_paths()], prepared.labels(), prepared.manifest, prepared.categories


def make_handle(prepared_path, *, mode: str = "auto", memory_limit_bytes: int = DEFAULT_MEMORY_LIMIT_BYTES,
                decode_threads: int = 8):
    """A handle for PREPARED/: `memory` or `path`, or `auto` (memory when the decoded images fit the limit)."""
    from data.manifest import load_prepared

    if mode not in MODES:
        raise DataError(f"data mode {mode!r} is not one of {', '.join(MODES)}")
    prepared = load_prepared(prepared_path)
    size_bytes = estimated_bytes(prepared.summary, len(prepared.manifest))
    if mode == "path" or (mode == "auto" and size_bytes > memory_limit_bytes):
        return PathHandle(str(prepared.root))
    images = read_images(prepared.image_paths(), threads=decode_threads)
    return InMemoryHandle(images, prepared.manifest, list(prepared.categories), str(prepared.root))


def estimated_bytes(summary: dict, n_images: int) -> int:
    """Decoded size of a prepared dataset from its summary: images x side^2 x bytes per pixel."""
    try:
        side, bit_depth = int(summary["image_size"]), int(summary.get("bit_depth", 8))
    except (KeyError, TypeError, ValueError) as error:
        raise DataError(f"summary.json lacks a usable image_size/bit_depth ({error!r})") from error
    return n_images * side * side * (2 if bit_depth > 8 else 1)


def read_images(paths: list[Path], *, threads: int = 8) -> np.ndarray:
    """Decode grayscale PNGs into one N x H x W array (uint8, or uint16 for 16-bit files).

    PIL releases the GIL while decoding, so threads overlap on several cores.
    """
    from PIL import Image

    if not paths:
        raise DataError("the prepared dataset has no images")

    def decode(path: Path) -> np.ndarray:
        try:
            with Image.open(path) as image:
                pixels = np.asarray(image)
        except (OSError, ValueError) as error:
            raise DataError(f"{path}: cannot decode as PNG ({error})") from error
        if pixels.ndim != 2:
            raise DataError(f"{path}: {pixels.shape} is not a grayscale image; prepared images are 1-channel")
        return pixels

    first = decode(paths[0])
    images = np.empty((len(paths), *first.shape), dtype=np.uint16 if first.dtype != np.uint8 else np.uint8)
    images[0] = first

    def store(index: int) -> None:
        pixels = decode(paths[index])
        if pixels.shape != first.shape:
            raise DataError(f"{paths[index]}: {pixels.shape[1]}x{pixels.shape[0]} px, but {paths[0]} is "
                            f"{first.shape[1]}x{first.shape[0]}; a prepared dataset has one image size")
        images[index] = pixels

    with ThreadPoolExecutor(max_workers=threads) as pool:
        list(pool.map(store, range(1, len(paths))))
    return images
