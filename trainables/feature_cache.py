"""The feature cache: a frozen trunk's output, computed once per search and shared by its trials.

With augmentation off (`augment_views: 0`) and frozen BatchNorm in inference mode, the frozen part of a
method A or B model maps each image to the same output in every epoch, fold and config that shares it.
So that output is computed once, stored on disk beside the search (a folder every node can reach when
the search's --out is shared), and the trials train only the trainable part on it (see trunk.py).
With `augment_views: K` (1..MAX_VIEWS) the frozen part sees K fixed augmented views of each image instead
of a new random one every epoch: the cache holds K + 1 blocks of rows (block 0 un-augmented, for
validation; blocks 1..K the views, drawn with the pipeline's default augmentation and the config's seed),
and each training epoch draws one view per image (seeded).

    FEATURE_CACHE_DIR/
      <key>.npy              features of the dataset's cv rows, in manifest order (K + 1 blocks of them
                             with K views): method A the pooled
                             vector (float32, 2,048 or 1,024 per image), method B the activation at the
                             freeze boundary (float16, e.g. ResNet50 conv4 at 512 px: 32 x 32 x 1,024)
      <key>.json             what the key stands for, the shape, and how long the pass took
      <key>.lock             an exclusive file lock: the first trial computes, the others wait and read
      computations.jsonl     one line per feature pass actually run (the tests count them)

The key is sha256 over (backbone, source weights name + sha256 of the weight file, frozen depth, image
size, preprocessing, the dataset's identity + the cached image ids, and with K views: K, the augmentation
settings and the seed): a changed weight file, image set or size is a new entry, never a stale one.
Nothing here imports TensorFlow.
"""
from __future__ import annotations

import fcntl
import hashlib
import json
import os
import shutil
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Callable

import numpy as np

from trainables.backbones import get_backbone
from trainables.errors import TrainableConfigError

COMPUTATIONS_LOG = "computations.jsonl"
# Use the cache only while it takes at most this share of the memory available (it is read whole
# into each trial's memory) and leaves this much disk free (bytes).
MEMORY_SHARE = 0.5
DISK_RESERVE_BYTES = 1 << 30
FEATURE_CACHE_MODES = ("auto", "off")
MAX_VIEWS = 64  # fixed augmented views per image; each multiplies the cache's size
_WEIGHT_HASHES: dict[tuple, str] = {}  # (path, size, mtime) -> sha256, per worker process


def check_cache_keys(config: dict) -> None:
    """`augment_views` (0: no augmentation; K: K fixed augmented views per image; absent: random
    augmentation every epoch) and `feature_cache`."""
    views = config.get("augment_views")
    if views is not None and (isinstance(views, bool) or not isinstance(views, int) or not 0 <= views <= MAX_VIEWS):
        raise TrainableConfigError(
            f"augment_views must be 0 (augmentation off), an integer K from 1 to {MAX_VIEWS} (K fixed augmented "
            f"views per image; the frozen trunk's output can then be cached) or absent (random augmentation "
            f"every epoch), got {views!r}")
    mode = config.get("feature_cache", "auto")
    if mode not in FEATURE_CACHE_MODES:
        raise TrainableConfigError(f"feature_cache must be one of {', '.join(FEATURE_CACHE_MODES)}, got {mode!r}")


def n_views(config: dict) -> int:
    """Fixed augmented views per image the cache holds besides the un-augmented block (0: none)."""
    return int(config.get("augment_views") or 0)


def why_not_cached(config: dict) -> str | None:
    """None when `config` can train from cached features; else the reason, in a few words."""
    check_cache_keys(config)
    if config.get("feature_cache", "auto") == "off":
        return "feature_cache is off"
    if config["method"] not in ("A", "B"):
        return f"method {config['method']} freezes nothing"
    if config.get("augment_views") is None:
        return "augmentation is random every epoch (set augment_views: 0, or K fixed views, to cache)"
    if config.get("frozen_bn", "inference") != "inference":
        return "frozen_bn=train keeps the frozen BatchNorm layers changing"
    if not config.get("feature_cache_dir"):
        return "no feature_cache_dir (the search sets one)"
    return None


def weights_sha256(config: dict) -> str:
    """sha256 of the source weight file the trunk is loaded from (hashed once per file and process)."""
    from trainables.weights import get_source, imagenet_path, read_card

    backbone, source = config["backbone"], config["source_weights"]
    if get_source(source).pretrained_here:
        return read_card(config.get("weights_dir"), backbone, source).sha256  # the card checks the file's hash
    path = imagenet_path(backbone)
    stat = path.stat()
    memo = (str(path), stat.st_size, stat.st_mtime_ns)
    if memo not in _WEIGHT_HASHES:
        from trainables.weights import sha256_of

        _WEIGHT_HASHES[memo] = sha256_of(path)
    return _WEIGHT_HASHES[memo]


def dataset_identity(images_or_paths, manifest, rows: np.ndarray) -> str:
    """What the cached images are: their ids in order, plus the pixels (in memory) or the prepared folder."""
    digest = hashlib.sha256()
    ids = manifest["image_id"].astype(str).to_numpy()[rows] if "image_id" in manifest else rows.astype(str)
    digest.update("\n".join(ids).encode("utf-8"))
    if isinstance(images_or_paths, np.ndarray):
        digest.update(np.ascontiguousarray(images_or_paths[rows]).tobytes())
    else:  # a prepared folder: ids are content hashes or SOPInstanceUIDs; paths say which folder
        digest.update("\n".join(str(images_or_paths[row]) for row in rows).encode("utf-8"))
    return digest.hexdigest()


def cache_identity(config: dict, dataset_id: str, weights_id: str) -> dict:
    spec = get_backbone(config["backbone"])
    identity = {"format": 1, "backbone": spec.name, "source_weights": config["source_weights"],
                "weights_sha256": weights_id, "frozen": "all" if config["method"] == "A" else config["freeze"],
                "image_size": int(config["image_size"]), "preprocessing": spec.preprocessing,
                "dataset": dataset_id}
    if n_views(config):  # the views depend on the augmentation's settings and seed too
        from dataclasses import asdict

        from data.pipeline import Augmentation

        identity.update(views=n_views(config), augmentation=asdict(Augmentation()), view_seed=int(config["seed"]))
    return identity


def cache_key(identity: dict) -> str:
    canonical = json.dumps(identity, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()[:20]


def feature_dtype(config: dict) -> np.dtype:
    """A: float32 pooled vectors (small). B: float16 activations (32 x 32 x 1,024 per image at 512 px)."""
    return np.dtype(np.float32 if config["method"] == "A" else np.float16)


def why_not_fits(nbytes: int, cache_dir: Path) -> str | None:
    """None when a cache of `nbytes` fits in memory and on disk now; else why not."""
    available = _memory_available()
    if nbytes > MEMORY_SHARE * available:
        return (f"{nbytes / 2**30:.2f} GiB of features exceed {MEMORY_SHARE:.0%} of the memory available "
                f"({available / 2**30:.1f} GiB)")
    cache_dir.mkdir(parents=True, exist_ok=True)
    free = shutil.disk_usage(cache_dir).free
    if nbytes + DISK_RESERVE_BYTES > free:
        return f"{nbytes / 2**30:.2f} GiB of features do not fit in {cache_dir} ({free / 2**30:.1f} GiB free)"
    return None


def _memory_available() -> int:
    try:
        with open("/proc/meminfo") as meminfo:
            fields = dict(line.split(":", 1) for line in meminfo)
        return int(fields["MemAvailable"].split()[0]) * 1024
    except (OSError, KeyError, ValueError):
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")


@contextmanager
def _exclusive(lock_path: Path):
    """An flock on `lock_path`: one holder per key across processes (and across nodes on a shared
    filesystem whose locks are cluster-wide, such as NFSv4)."""
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    with open(lock_path, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def get_or_compute(cache_dir, key: str, identity: dict, shape: tuple, dtype: np.dtype,
                   compute: Callable[[np.ndarray], None]) -> tuple[np.ndarray, dict, bool]:
    """(features, meta, computed_here). The first caller per key runs `compute(out)`, which fills `out`
    (a memory-mapped N x ... array being written to disk); the others wait on the lock, then read."""
    cache_dir = Path(cache_dir)
    data_path, meta_path = cache_dir / f"{key}.npy", cache_dir / f"{key}.json"
    computed_here = False
    with _exclusive(cache_dir / f"{key}.lock"):
        if not (data_path.is_file() and meta_path.is_file()):
            partial = cache_dir / f"{key}.partial.npy"
            out = np.lib.format.open_memmap(partial, mode="w+", dtype=dtype, shape=shape)
            started = time.perf_counter()
            compute(out)
            out.flush()
            del out
            seconds = time.perf_counter() - started
            os.replace(partial, data_path)  # atomic: a reader never sees half a file
            meta = {**identity, "key": key, "shape": list(shape), "dtype": str(np.dtype(dtype)),
                    "nbytes": int(np.prod(shape)) * np.dtype(dtype).itemsize, "pass_seconds": seconds,
                    "created_unix": time.time()}
            meta_path.write_text(json.dumps(meta, indent=1))
            with open(cache_dir / COMPUTATIONS_LOG, "a") as log:
                log.write(json.dumps({"key": key, "pass_seconds": seconds, "pid": os.getpid(),
                                      "n_images": shape[0]}) + "\n")
            computed_here = True
    meta = json.loads(meta_path.read_text())
    features = np.load(data_path, mmap_mode="r")  # the caller copies it once, into its tensor
    if tuple(features.shape) != tuple(shape) or features.dtype != np.dtype(dtype):
        raise TrainableConfigError(f"feature cache {data_path} holds {features.dtype} {features.shape}, expected "
                                   f"{np.dtype(dtype)} {tuple(shape)}: delete it and run again")
    return features, meta, computed_here


def computations(cache_dir) -> list[dict]:
    """The feature passes run so far in `cache_dir`, oldest first."""
    path = Path(cache_dir) / COMPUTATIONS_LOG
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
