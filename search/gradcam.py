"""Grad-CAM for models built by `trainables.model.build_model`: where the backbone looked.

The feature map is the backbone's output, i.e. its last convolutional stage (ResNet50
`conv5_block3_out`, DenseNet121 `relu`, 1/32 of the input size). Per image, the gradient of one
category's probability with respect to that map, averaged over space, weighs its channels; the
weighted sum, clipped at zero and scaled to [0, 1], is upsampled to the image and drawn over it.
TensorFlow is imported inside the functions.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from search.errors import SearchError


def split_backbone_head(model):
    """(backbone, head layers after it) of a model whose layers are input -> backbone -> head."""
    import keras

    for index, layer in enumerate(model.layers):
        if isinstance(layer, keras.Model):
            return layer, model.layers[index + 1:]
    raise SearchError(f"model {model.name!r} has no nested backbone to take a Grad-CAM feature map from "
                      "(--gradcam works on models written by train-final)")


def gradcam_maps(model, images, class_indices) -> np.ndarray:
    """Heatmaps in [0, 1], N x H x W (the input size), for preprocessed `images` (N x H x W x 3),
    each for its category in `class_indices` (N ints)."""
    import tensorflow as tf

    backbone, head = split_backbone_head(model)
    images = tf.convert_to_tensor(images, dtype=tf.float32)
    chosen = tf.one_hot(np.asarray(class_indices), depth=model.output_shape[-1], dtype=tf.float32)
    with tf.GradientTape() as tape:
        features = backbone(images, training=False)
        tape.watch(features)
        outputs = features
        for layer in head:
            outputs = layer(outputs, training=False)
        # Images do not interact in inference mode, so one summed score gives each image its own gradient.
        score = tf.reduce_sum(tf.cast(outputs, tf.float32) * chosen)
    gradients = tf.cast(tape.gradient(score, features), tf.float32)
    channel_weights = tf.reduce_mean(gradients, axis=(1, 2), keepdims=True)
    cams = tf.nn.relu(tf.reduce_sum(channel_weights * tf.cast(features, tf.float32), axis=-1))
    peak = tf.reduce_max(cams, axis=(1, 2), keepdims=True)
    cams = tf.math.divide_no_nan(cams, peak)
    size = images.shape[1:3]
    return tf.image.resize(cams[..., None], size, method="bilinear")[..., 0].numpy().clip(0.0, 1.0)


def write_overlay(image: np.ndarray, heatmap: np.ndarray, path: Path, *, alpha: float = 0.4) -> Path:
    """The radiograph (uint8/uint16, H x W) in gray with the heatmap in the `jet` colours over it."""
    from matplotlib import colormaps
    from PIL import Image

    gray = image.astype(np.float32) / float(np.iinfo(image.dtype).max if image.dtype.kind == "u" else 1.0)
    colours = colormaps["jet"](heatmap)[..., :3]
    blended = (1 - alpha) * gray[..., None] + alpha * colours
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray((blended.clip(0, 1) * 255).round().astype(np.uint8), mode="RGB").save(path)
    return path
