"""The tf.data input pipeline: prepared grayscale images -> batches a keras.applications backbone expects.

Order of work, chosen so the per-epoch cost is small:
  source: one uint8 array in memory (an InMemoryHandle's, or PNGs decoded once in parallel when they fit:
  the cache), else PNGs decoded in parallel every epoch -> resize once if the stored size differs ->
  seeded shuffle (of indices or file names, never of decoded images) -> batch -> per-batch augmentation,
  gray -> 3 channels and backbone preprocessing (vectorised over the batch) -> prefetch.
TensorFlow is imported inside the functions: importing `data` never starts it.

Augmentation (training only, by default): small rotations (+-5 deg), shifts (+-5% of the side), zooms
(+-10%), brightness (+-10% of full scale) and contrast (x0.9-1.1): the variation of patient positioning and
exposure between radiographs. Never a vertical flip (no radiograph is upside down). Horizontal flip is off by
default: it turns the heart and aortic knob to the right (situs inversus, ~1 in 10,000 patients) and moves
pacemakers and lines to the unusual side, so it teaches the model anatomy that does not occur; switch it on
with `Augmentation(horizontal_flip=True)` when side-independent findings dominate.
"""
from __future__ import annotations

import os
import warnings
from dataclasses import dataclass, fields

import numpy as np

from data.errors import DataError

PREPROCESSING_MODES = ("caffe", "torch", "tf")  # keras.applications imagenet_utils modes
CAFFE_BGR_MEAN = (103.939, 116.779, 123.68)     # ImageNet means, 0-255 scale, BGR order (ResNet50)
TORCH_RGB_MEAN = (0.485, 0.456, 0.406)          # 0-1 scale, RGB order (DenseNet121)
TORCH_RGB_STD = (0.229, 0.224, 0.225)
# Per-channel (scale, offset) of each mode on 0-255 input, output channels in keras' order.
PREPROCESSING_AFFINE = {
    "caffe": ((1.0, 1.0, 1.0), tuple(-mean for mean in CAFFE_BGR_MEAN)),
    "torch": (tuple(1 / (255 * std) for std in TORCH_RGB_STD),
              tuple(-mean / std for mean, std in zip(TORCH_RGB_MEAN, TORCH_RGB_STD))),
    "tf": ((1 / 127.5,) * 3, (-1.0,) * 3),
}
# Cache decoded images only while they take at most this share of the memory available when caching.
CACHE_MEMORY_SHARE = 0.5


@dataclass(frozen=True)
class Augmentation:
    """Random training transforms, drawn independently per image; ranges are +- around identity."""
    rotation_deg: float = 5.0
    shift_fraction: float = 0.05    # of the image side
    zoom_fraction: float = 0.1      # 0.1: scale 0.9-1.1
    brightness: float = 0.1         # of the full 0-255 scale, added
    contrast: float = 0.1           # 0.1: factor 0.9-1.1 around the image mean
    horizontal_flip: bool = False   # see the module docstring

    @classmethod
    def from_value(cls, value, *, training: bool) -> "Augmentation | None":
        """None -> the defaults when training, else none; False/True; a dict of fields; an Augmentation."""
        if value is None:
            return cls() if training else None
        if isinstance(value, cls):
            return value
        if isinstance(value, bool):
            return cls() if value else None
        if isinstance(value, dict):
            unknown = sorted(set(value) - {field.name for field in fields(cls)})
            if unknown:
                raise DataError(f"unknown augmentation setting(s) {unknown}; accepted: "
                                f"{[field.name for field in fields(cls)]}")
            return cls(**value)
        raise DataError(f"augment must be None, a bool, a dict or an Augmentation, got {type(value).__name__}")


def make_dataset(images_or_paths, labels, *, image_size: int, batch_size: int, preprocessing: str,
                 training: bool, seed: int, augment=None, drop_remainder: bool = False, cache: bool = True):
    """A tf.data.Dataset of (float32 B x S x S x 3, float32 B x C) batches.

    `images_or_paths`: a uint8/uint16 N x H x W array (an InMemoryHandle's) or N PNG paths. `training`
    shuffles (seeded, reshuffled each epoch) and augments (`augment`: see Augmentation.from_value);
    otherwise order is kept and nothing is augmented, as validation needs.
    `drop_remainder` keeps every batch full (static shapes for XLA; equal replica batches). `cache` decodes
    PNGs once, here, into memory when they fit (half the memory available now), else warns and decodes
    them every epoch.
    """
    import tensorflow as tf

    labels = _check_labels(labels)
    _check_settings(image_size, batch_size, preprocessing, len(labels), drop_remainder)
    # Validation and prediction never augment, whatever `augment` says.
    augmentation = Augmentation.from_value(augment, training=training) if training else None
    if isinstance(images_or_paths, np.ndarray):
        batches, max_value = _array_batches(images_or_paths, labels, image_size, batch_size, training, seed,
                                            drop_remainder)
    else:
        batches, max_value = _path_batches(list(images_or_paths), labels, image_size, batch_size, training,
                                           seed, drop_remainder, cache)
    # One seed pair per batch for the stateless random ops; a new stream each epoch, the same per seed.
    seeds = tf.data.Dataset.random(seed=seed, rerandomize_each_iteration=True).batch(2)
    transform = _batch_transform(image_size, preprocessing, augmentation, scale=255.0 / max_value)
    dataset = tf.data.Dataset.zip((batches, seeds)).map(transform, num_parallel_calls=tf.data.AUTOTUNE)
    options = tf.data.Options()
    # Every input here is in memory or a list of files: shard by data, not by file, across workers.
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
    return dataset.with_options(options).prefetch(tf.data.AUTOTUNE)


def _check_labels(labels) -> np.ndarray:
    labels = np.asarray(labels, dtype=np.float32)
    if labels.ndim != 2 or len(labels) == 0:
        raise DataError(f"labels must be a non-empty N x C matrix, got shape {labels.shape}")
    return labels


def _check_settings(image_size, batch_size, preprocessing, n_images, drop_remainder) -> None:
    if preprocessing not in PREPROCESSING_MODES:
        raise DataError(f"preprocessing {preprocessing!r} is not one of {PREPROCESSING_MODES} "
                        "(keras.applications: 'caffe' for ResNet50, 'torch' for DenseNet121)")
    for name, value in (("image_size", image_size), ("batch_size", batch_size)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
            raise DataError(f"{name} must be a positive integer, got {value!r}")
    if drop_remainder and n_images < batch_size:
        raise DataError(f"drop_remainder with {n_images} images and batch_size {batch_size} leaves no batch")


def _array_batches(images: np.ndarray, labels, image_size, batch_size, training, seed, drop_remainder):
    """Batches gathered by index from one in-memory tensor: shuffling indices copies no images."""
    import tensorflow as tf

    if images.ndim != 3 or images.dtype not in (np.uint8, np.uint16) or len(images) != len(labels):
        raise DataError(f"images must be a uint8/uint16 N x H x W array with one row per label row, got "
                        f"{images.dtype} {images.shape} for {len(labels)} labels")
    if images.shape[1:] != (image_size, image_size):
        images = _resize_array(images, image_size)
    image_tensor, label_tensor = tf.constant(images[..., None]), tf.constant(labels)
    indices = tf.data.Dataset.range(len(images))
    if training:
        indices = indices.shuffle(len(images), seed=seed, reshuffle_each_iteration=True)
    batches = indices.batch(batch_size, drop_remainder=drop_remainder).map(
        lambda rows: (tf.gather(image_tensor, rows), tf.gather(label_tensor, rows)))
    return batches, float(np.iinfo(images.dtype).max)


def _resize_array(images: np.ndarray, image_size: int, chunk: int = 256) -> np.ndarray:
    """Resize once, before any epoch (area-weighted when shrinking), keeping the integer type."""
    import tensorflow as tf

    out = np.empty((len(images), image_size, image_size), dtype=images.dtype)
    for start in range(0, len(images), chunk):
        part = tf.image.resize(images[start:start + chunk, :, :, None], (image_size, image_size), antialias=True)
        out[start:start + chunk] = np.clip(np.round(part.numpy()[..., 0]), 0, np.iinfo(images.dtype).max)
    return out


def _path_batches(paths, labels, image_size, batch_size, training, seed, drop_remainder, cache):
    """Batches of PNGs decoded in parallel and resized if needed; with `cache`, decoded once up front."""
    import tensorflow as tf

    if len(paths) != len(labels):
        raise DataError(f"{len(paths)} image paths but {len(labels)} label rows; expected one row per image")
    stored_side, dtype = _png_format(paths[0])
    if cache and not _fits_in_memory(len(paths) * image_size * image_size * dtype.itemsize):
        warnings.warn(f"{len(paths)} images at {image_size} px do not fit in memory: decoding every epoch",
                      stacklevel=3)
        cache = False
    tf_dtype = tf.uint16 if dtype == np.uint16 else tf.uint8

    def decode(path):
        image = tf.io.decode_png(tf.io.read_file(path), channels=1, dtype=tf_dtype)
        if stored_side != image_size:
            image = tf.cast(tf.round(tf.image.resize(image, (image_size, image_size), antialias=True)), tf_dtype)
        return tf.ensure_shape(image, (image_size, image_size, 1))

    files = tf.data.Dataset.from_tensor_slices([str(path) for path in paths])
    if cache:
        # The cache is one array, filled by a parallel decode, then served like an InMemoryHandle's:
        # shuffling indices needs no second copy, where tf.data's cache() plus a full shuffle buffer holds two.
        images = np.empty((len(paths), image_size, image_size), dtype=dtype)
        start = 0
        for chunk in files.map(decode, num_parallel_calls=tf.data.AUTOTUNE).batch(64).as_numpy_iterator():
            images[start:start + len(chunk)] = chunk[..., 0]
            start += len(chunk)
        return _array_batches(images, labels, image_size, batch_size, training, seed, drop_remainder)
    dataset = tf.data.Dataset.zip((files, tf.data.Dataset.from_tensor_slices(labels)))
    if training:  # shuffle names, not images: the buffer stays small
        dataset = dataset.shuffle(len(paths), seed=seed, reshuffle_each_iteration=True)
    dataset = dataset.map(lambda path, label: (decode(path), label), num_parallel_calls=tf.data.AUTOTUNE)
    return dataset.batch(batch_size, drop_remainder=drop_remainder), float(np.iinfo(dtype).max)


def _png_format(path) -> tuple[int, np.dtype]:
    """(side, pixel dtype) of the first PNG; a prepared dataset has one size and depth."""
    from PIL import Image

    try:
        with Image.open(path) as image:
            width, height, mode = image.width, image.height, image.mode
    except (OSError, ValueError) as error:
        raise DataError(f"{path}: cannot read as PNG ({error})") from error
    if width != height or mode not in ("L", "I;16", "I;16B", "I"):
        raise DataError(f"{path}: {width}x{height} mode {mode}; prepared images are square 8/16-bit grayscale")
    return width, np.dtype(np.uint8 if mode == "L" else np.uint16)


def _fits_in_memory(size_bytes: int) -> bool:
    """At most CACHE_MEMORY_SHARE of the memory available now (MemAvailable), so that a trial started
    after others on the same node sees what they left; physical memory where /proc is absent."""
    try:
        with open("/proc/meminfo") as meminfo:
            fields_kib = dict(line.split(":", 1) for line in meminfo)
        available = int(fields_kib["MemAvailable"].split()[0]) * 1024
    except (OSError, KeyError, ValueError):
        available = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    return size_bytes <= CACHE_MEMORY_SHARE * available


def _batch_transform(image_size: int, preprocessing: str, augmentation: Augmentation | None, scale: float):
    """(integer B x S x S x 1 images, labels), seed pair -> (float32 B x S x S x 3 model input, labels).

    Augmentation and preprocessing work on whole batches: one op call per batch instead of per image.
    """
    import tensorflow as tf

    def transform(batch, seed):
        images, labels = batch
        images = tf.cast(images, tf.float32) * scale  # 0-255, whatever the stored bit depth
        if augmentation is not None:
            images = _augment(images, tf.cast(seed, tf.int32), augmentation, image_size)
        return _preprocess(images, preprocessing), labels

    return transform


def _augment(images, seed, augmentation: Augmentation, image_size: int):
    """Flip, then rotate/shift/zoom in one resampling, then brightness/contrast; all on 0-255 floats."""
    import tensorflow as tf

    count = tf.shape(images)[0]
    seeds = tf.random.experimental.stateless_split(seed, 7)

    def uniform(index, limit):
        return tf.random.stateless_uniform([count], seeds[index], -limit, limit)

    if augmentation.horizontal_flip:
        flip = tf.random.stateless_uniform([count], seeds[0]) < 0.5
        images = tf.where(flip[:, None, None, None], tf.reverse(images, axis=[2]), images)
    if augmentation.rotation_deg or augmentation.shift_fraction or augmentation.zoom_fraction:
        images = _random_affine(images, augmentation, image_size, uniform)
    if not (augmentation.brightness or augmentation.contrast):
        return images
    brightness = uniform(5, augmentation.brightness * 255.0)[:, None, None, None]
    contrast = (1.0 + uniform(6, augmentation.contrast))[:, None, None, None]
    mean = tf.reduce_mean(images, axis=[1, 2, 3], keepdims=True)
    return tf.clip_by_value((images - mean) * contrast + mean + brightness, 0.0, 255.0)


def _random_affine(images, augmentation: Augmentation, image_size: int, uniform):
    """Rotation, zoom and shift in one bilinear resampling (the costly step of augmentation)."""
    import tensorflow as tf

    angle = uniform(1, augmentation.rotation_deg * np.pi / 180)
    zoom = 1.0 + uniform(2, augmentation.zoom_fraction)
    shift_x = uniform(3, augmentation.shift_fraction * image_size)
    shift_y = uniform(4, augmentation.shift_fraction * image_size)
    # Output pixel (x, y) samples input c + R(angle) (p - c) / zoom - shift: the inverse map the op wants.
    center = (image_size - 1) / 2.0
    cos, sin = tf.cos(angle) / zoom, tf.sin(angle) / zoom
    offset_x = center - cos * center + sin * center - shift_x
    offset_y = center - sin * center - cos * center - shift_y
    zeros = tf.zeros_like(cos)
    matrix = tf.stack([cos, -sin, offset_x, sin, cos, offset_y, zeros, zeros], axis=1)
    images = tf.raw_ops.ImageProjectiveTransformV3(
        images=images, transforms=matrix, output_shape=[image_size, image_size], fill_value=0.0,
        interpolation="BILINEAR", fill_mode="NEAREST")  # edge pixels extend: no artificial black borders
    return images


def _preprocess(images, mode: str):
    """keras.applications preprocess_input of the gray image repeated to RGB, as one 1x1 convolution.

    Every mode is per channel `x * scale + offset` on 0-255 input, and the three channels start equal, so
    caffe's RGB -> BGR swap changes nothing. A 1 -> 3 channel 1x1 convolution plus bias_add does the
    repeat and the arithmetic in one pass: ~30x faster on CPU than tf.repeat followed by a broadcast
    subtraction over a last axis of 3 (measured at 512 px).
    """
    import tensorflow as tf

    scale, offset = PREPROCESSING_AFFINE[mode]
    kernel = tf.constant(np.asarray(scale, np.float32).reshape(1, 1, 1, 3))
    return tf.nn.bias_add(tf.nn.conv2d(images, kernel, strides=1, padding="VALID"),
                          tf.constant(np.asarray(offset, np.float32)))
