"""Dataset handles: size-based choice, one decoded array in memory that reaches a Ray task
(reachability on every node is the search's preflight: tests/test_search_cluster.py)."""
from __future__ import annotations

import json
import pickle

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from data.errors import DataError
from data.handle import InMemoryHandle, PathHandle, make_handle

CATEGORIES = ["effusion", "nodule"]


def write_prepared(root, n_images=12, side=32, bit_depth=8):
    """A minimal PREPARED/ folder: random grayscale PNGs, manifest.csv with folds, summary.json."""
    rng = np.random.default_rng(0)
    (root / "images").mkdir(parents=True)
    dtype = np.uint16 if bit_depth == 16 else np.uint8
    pixels = rng.integers(0, np.iinfo(dtype).max, size=(n_images, side, side), dtype=dtype)
    rows = []
    for index, image in enumerate(pixels):
        Image.fromarray(image).save(root / "images" / f"im{index}.png")
        rows.append({"image_id": f"im{index}", "image_path": f"images/im{index}.png",
                     "patient_key": f"{index // 2:016x}", "effusion": index % 2, "nodule": int(index % 3 == 0),
                     "split": "cv", "fold": index % 3})
    pd.DataFrame(rows).to_csv(root / "manifest.csv", index=False)
    (root / "summary.json").write_text(json.dumps({"categories": CATEGORIES, "image_size": side,
                                                   "bit_depth": bit_depth, "format": "hospital"}))
    return pixels


def test_auto_mode_keeps_small_datasets_in_memory_as_one_array(tmp_path):
    pixels = write_prepared(tmp_path / "p")
    handle = make_handle(tmp_path / "p")
    assert isinstance(handle, InMemoryHandle) and handle.nbytes == 12 * 32 * 32
    images, labels, manifest, categories = handle.load()
    np.testing.assert_array_equal(images, pixels)
    assert images.dtype == np.uint8 and labels.dtype == np.uint8
    np.testing.assert_array_equal(labels, manifest[CATEGORIES].to_numpy())
    assert categories == CATEGORIES and list(manifest["fold"]) == [i % 3 for i in range(12)]
    restored = pickle.loads(pickle.dumps(handle))
    np.testing.assert_array_equal(restored.load()[0], pixels)


def test_auto_mode_switches_to_a_path_above_the_limit_and_modes_override(tmp_path):
    write_prepared(tmp_path / "p")
    handle = make_handle(tmp_path / "p", memory_limit_bytes=12 * 32 * 32 - 1)
    assert isinstance(handle, PathHandle) and handle.root == str((tmp_path / "p").resolve())
    paths, labels, _, _ = handle.load()
    assert paths[0] == str((tmp_path / "p" / "images" / "im0.png").resolve()) and labels.shape == (12, 2)
    assert isinstance(make_handle(tmp_path / "p", mode="path"), PathHandle)
    assert isinstance(make_handle(tmp_path / "p", mode="memory", memory_limit_bytes=1), InMemoryHandle)
    with pytest.raises(DataError, match="data mode 'disk' is not one of auto, memory, path"):
        make_handle(tmp_path / "p", mode="disk")


def test_sixteen_bit_images_stay_sixteen_bit(tmp_path):
    pixels = write_prepared(tmp_path / "p", n_images=3, bit_depth=16)
    images = make_handle(tmp_path / "p", mode="memory").load()[0]
    assert images.dtype == np.uint16
    np.testing.assert_array_equal(images, pixels)


def test_unreadable_or_mismatched_images_are_named(tmp_path):
    write_prepared(tmp_path / "p")
    (tmp_path / "p" / "images" / "im5.png").write_bytes(b"not a png")
    with pytest.raises(DataError, match=r"im5\.png: cannot decode"):
        make_handle(tmp_path / "p", mode="memory")
    Image.fromarray(np.zeros((16, 16), np.uint8)).save(tmp_path / "p" / "images" / "im5.png")
    with pytest.raises(DataError, match=r"im5\.png: 16x16 px, but .*im0\.png is 32x32"):
        make_handle(tmp_path / "p", mode="memory")


def test_in_memory_handle_reaches_a_ray_task_through_the_object_store(tmp_path, ray_local):
    pixels = write_prepared(tmp_path / "p")
    handle = make_handle(tmp_path / "p", mode="memory")

    @ray_local.remote(num_cpus=0)
    def checksum(data):
        images, labels, _, _ = data.load()
        return int(images.astype(np.int64).sum()), int(labels.sum())

    assert ray_local.get(checksum.remote(ray_local.put(handle))) == (int(pixels.astype(np.int64).sum()), 6 + 4)
