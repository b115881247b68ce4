"""The tf.data pipeline: keras' own preprocessing, seeded shuffles, radiograph augmentation, cache, strategies."""
from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
from PIL import Image

from data.errors import DataError
from data.pipeline import Augmentation, make_dataset

NO_AUGMENTATION = Augmentation(rotation_deg=0, shift_fraction=0, zoom_fraction=0, brightness=0, contrast=0)


def gray_images(n=20, side=32, seed=0):
    return np.random.default_rng(seed).integers(0, 256, size=(n, side, side), dtype=np.uint8)


def id_labels(n):
    """Column 0 is the image's row number, so every output batch says which images it holds."""
    return np.stack([np.arange(n), np.arange(n) % 2], axis=1).astype(np.float32)


def write_pngs(folder, images):
    paths = []
    for index, image in enumerate(images):
        paths.append(folder / f"{index}.png")
        Image.fromarray(image).save(paths[-1])
    return paths


def collect(dataset):
    batches = list(dataset.as_numpy_iterator())
    return np.concatenate([x for x, _ in batches]), np.concatenate([y for _, y in batches])


@pytest.mark.parametrize("mode, module", [("caffe", "resnet50"), ("torch", "densenet")])
def test_output_equals_keras_preprocess_input_for_arrays_and_pngs(tmp_path, mode, module):
    import keras

    images = gray_images()
    expected = getattr(keras.applications, module).preprocess_input(
        np.repeat(images[..., None].astype(np.float32), 3, axis=-1))
    for source in (images, write_pngs(tmp_path, images)):
        x, y = collect(make_dataset(source, id_labels(20), image_size=32, batch_size=8, preprocessing=mode,
                                    training=False, seed=0, augment=Augmentation()))  # validation: ignored
        assert x.dtype == np.float32 and x.shape == (20, 32, 32, 3)
        np.testing.assert_allclose(x, expected, atol=1e-4)
        np.testing.assert_array_equal(y[:, 0], np.arange(20))  # validation keeps the order


@pytest.mark.parametrize("cache", [True, False])
def test_sixteen_bit_pngs_match_their_eight_bit_content(tmp_path, cache):
    images = gray_images(4)
    sixteen = write_pngs(tmp_path, images.astype(np.uint16) * 257)
    x16, _ = collect(make_dataset(sixteen, id_labels(4), image_size=32, batch_size=4, preprocessing="torch",
                                  training=False, seed=0, cache=cache))
    x8, _ = collect(make_dataset(images, id_labels(4), image_size=32, batch_size=4, preprocessing="torch",
                                 training=False, seed=0))
    np.testing.assert_allclose(x16, x8, atol=1e-4)


def test_resize_when_stored_size_differs_gives_the_same_for_arrays_and_pngs(tmp_path):
    images = gray_images(6, side=48)
    common = dict(image_size=32, batch_size=6, preprocessing="tf", training=False, seed=0)
    from_array, _ = collect(make_dataset(images, id_labels(6), **common))
    paths = write_pngs(tmp_path, images)
    for cache in (True, False):
        from_pngs, _ = collect(make_dataset(paths, id_labels(6), cache=cache, **common))
        assert from_array.shape == from_pngs.shape == (6, 32, 32, 3)
        assert np.abs(from_array - from_pngs).max() <= 2 / 127.5 + 1e-6  # both round to integers once


def test_uncached_training_epochs_decode_a_new_seeded_order(tmp_path):
    paths = write_pngs(tmp_path, gray_images(10))
    common = dict(image_size=32, batch_size=4, preprocessing="tf", training=True, augment=False, cache=False)
    dataset = make_dataset(paths, id_labels(10), seed=5, **common)
    first, second = collect(dataset)[1][:, 0], collect(dataset)[1][:, 0]
    assert sorted(first) == list(range(10)) and list(first) != list(second)
    np.testing.assert_array_equal(first, collect(make_dataset(paths, id_labels(10), seed=5, **common))[1][:, 0])


def test_training_shuffle_is_seeded_complete_and_new_each_epoch():
    images = gray_images()
    common = dict(image_size=32, batch_size=8, preprocessing="caffe", training=True, augment=False)
    dataset = make_dataset(images, id_labels(20), seed=3, **common)
    first, second = collect(dataset)[1][:, 0], collect(dataset)[1][:, 0]
    again = collect(make_dataset(images, id_labels(20), seed=3, **common))[1][:, 0]
    other = collect(make_dataset(images, id_labels(20), seed=4, **common))[1][:, 0]
    assert sorted(first) == list(range(20))
    np.testing.assert_array_equal(first, again)
    assert list(first) != list(second) and list(first) != list(other) and list(first) != list(range(20))


def test_labels_stay_with_their_images_after_shuffling():
    images = np.repeat(np.arange(20, dtype=np.uint8)[:, None, None] * 10, 32, axis=1).repeat(32, axis=2)
    x, y = collect(make_dataset(images, id_labels(20), image_size=32, batch_size=8, preprocessing="tf",
                                training=True, seed=0, augment=False))
    np.testing.assert_allclose((x[:, 0, 0, 0] + 1) * 127.5, y[:, 0] * 10, atol=1e-3)


def test_augmentation_is_mild_seeded_and_never_flips_by_default():
    side = 32
    image = np.zeros((side, side), np.uint8)
    image[: side // 2, : side // 2] = 255  # bright top-left quadrant
    images = np.repeat(image[None], 16, axis=0)
    common = dict(image_size=side, batch_size=16, preprocessing="tf", training=True)
    x, _ = collect(make_dataset(images, id_labels(16), seed=0, **common))
    y, _ = collect(make_dataset(images, id_labels(16), seed=0, **common))
    np.testing.assert_array_equal(x, y)
    plain, _ = collect(make_dataset(images, id_labels(16), seed=0, augment=NO_AUGMENTATION, **common))
    np.testing.assert_allclose(plain[0, ..., 0], image / 127.5 - 1, atol=1e-5)  # zero ranges: identity
    assert not np.allclose(x, plain, atol=1e-3)
    quadrant = side // 4
    top_left, bottom_right = x[:, :quadrant, :quadrant, 0], x[:, -quadrant:, -quadrant:, 0]
    assert (top_left.mean(axis=(1, 2)) > bottom_right.mean(axis=(1, 2)) + 1).all()  # no flip, either axis
    flipped, _ = collect(make_dataset(images, id_labels(16), seed=0,
                                      augment={"horizontal_flip": True}, **common))
    left, right = flipped[:, :quadrant, :quadrant, 0], flipped[:, :quadrant, -quadrant:, 0]
    assert 0 < (right.mean(axis=(1, 2)) > left.mean(axis=(1, 2))).sum() < 16


def test_drop_remainder_gives_only_full_static_batches():
    dataset = make_dataset(gray_images(), id_labels(20), image_size=32, batch_size=8, preprocessing="torch",
                           training=True, seed=0, drop_remainder=True)
    assert dataset.element_spec[0].shape.as_list() == [8, 32, 32, 3]
    assert [len(y) for _, y in dataset.as_numpy_iterator()] == [8, 8]


def test_cache_serves_later_epochs_from_memory(tmp_path):
    paths = write_pngs(tmp_path, gray_images(6))
    dataset = make_dataset(paths, id_labels(6), image_size=32, batch_size=4, preprocessing="caffe",
                           training=True, seed=0)
    first, _ = collect(dataset)
    for path in paths:
        path.unlink()
    second, labels = collect(dataset)
    assert sorted(labels[:, 0]) == list(range(6)) and second.shape == first.shape


def test_images_that_do_not_fit_are_decoded_every_epoch_with_a_warning(tmp_path, monkeypatch):
    import data.pipeline

    monkeypatch.setattr(data.pipeline, "CACHE_MEMORY_SHARE", 0.0)
    paths = write_pngs(tmp_path, gray_images(6))
    with pytest.warns(UserWarning, match="6 images at 32 px do not fit in memory: decoding every epoch"):
        dataset = make_dataset(paths, id_labels(6), image_size=32, batch_size=4, preprocessing="tf",
                               training=False, seed=0)
    assert collect(dataset)[0].shape == (6, 32, 32, 3)
    paths[0].unlink()
    import tensorflow as tf

    with pytest.raises(tf.errors.NotFoundError, match="0.png"):  # not cached: each epoch reads the files
        collect(dataset)


@pytest.mark.parametrize("kwargs, message", [
    ({"preprocessing": "imagenet"}, "preprocessing 'imagenet' is not one of"),
    ({"batch_size": 0}, "batch_size must be a positive integer"),
    ({"augment": {"vertical_flip": True}}, r"unknown augmentation setting\(s\) \['vertical_flip'\]"),
    ({"batch_size": 64, "drop_remainder": True}, "drop_remainder with 20 images and batch_size 64"),
])
def test_bad_settings_raise_data_error(kwargs, message):
    settings = dict(image_size=32, batch_size=8, preprocessing="caffe", training=True, seed=0) | kwargs
    with pytest.raises(DataError, match=message):
        make_dataset(gray_images(), id_labels(20), **settings)


def test_mismatched_inputs_raise_data_error(tmp_path):
    with pytest.raises(DataError, match="one row per label row"):
        make_dataset(gray_images(5), id_labels(6), image_size=32, batch_size=2, preprocessing="tf",
                     training=False, seed=0)
    with pytest.raises(DataError, match="3 image paths but 2 label rows"):
        make_dataset(write_pngs(tmp_path, gray_images(3)), id_labels(2), image_size=32, batch_size=2,
                     preprocessing="tf", training=False, seed=0)


MIRRORED_FIT = textwrap.dedent("""
    import tensorflow as tf
    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
    import keras, numpy as np
    from data.pipeline import make_dataset
    strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
    images = np.random.default_rng(0).integers(0, 256, (20, 32, 32), dtype=np.uint8)
    labels = np.random.default_rng(1).integers(0, 2, (20, 3))
    dataset = make_dataset(images, labels, image_size=32, batch_size=8, preprocessing="torch",
                           training=True, seed=0, drop_remainder=True)
    with strategy.scope():
        model = keras.Sequential([keras.Input((32, 32, 3)), keras.layers.Conv2D(4, 3),
                                  keras.layers.GlobalAveragePooling2D(), keras.layers.Dense(3, activation="sigmoid")])
        model.compile(optimizer="adam", loss="binary_crossentropy")
    history = model.fit(dataset, epochs=2, verbose=0)
    steps = sum(1 for _ in strategy.experimental_distribute_dataset(dataset))
    print("REPLICAS", strategy.num_replicas_in_sync, "STEPS", steps, "LOSS", history.history["loss"][-1])
""")


@pytest.mark.slow
def test_trains_under_a_two_replica_mirrored_strategy_with_drop_remainder():
    # A fresh process: logical CPU devices must be set before TensorFlow initialises its runtime.
    result = subprocess.run([sys.executable, "-c", MIRRORED_FIT], capture_output=True, text=True, timeout=300,
                            env=os.environ | {"CUDA_VISIBLE_DEVICES": ""})
    assert result.returncode == 0, result.stderr[-3000:]
    words = result.stdout.split()
    assert words[words.index("REPLICAS") + 1] == "2" and words[words.index("STEPS") + 1] == "2"
    assert np.isfinite(float(words[words.index("LOSS") + 1]))


def test_importing_this_area_starts_neither_tensorflow_nor_ray():
    code = ("import sys, data.pipeline, data.handle, data.folds, data.class_balance, search.cli.folds; "
            "print(sorted(m for m in ('tensorflow', 'keras', 'ray') if m in sys.modules))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip() == "[]"
