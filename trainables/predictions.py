"""A trial's out-of-fold validation predictions: one small .npz beside the model weights of its checkpoint.

    val_predictions.npz
        image_id     (N,) str      the manifest's image_id of each validation image (no patient identifier)
        categories   (C,) str      category names, in the model's output order
        probability  (N, C) float16 the model's per-category probability after that epoch
        label        (N, C) uint8   the image's labels (1 positive, 0 negative)
        epoch        ()    int      the epoch the predictions were made after

float16 keeps ~3 significant digits (AUC ties below 1e-3 only): a 5-fold search of NIH-sized folds stores a
few MB per config. numpy only: written in the trial, read by `search` without TensorFlow.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

PREDICTIONS_FILE = "val_predictions.npz"


def write_predictions(folder, *, image_ids, categories, probabilities, labels, epoch: int) -> Path:
    path = Path(folder) / PREDICTIONS_FILE
    np.savez_compressed(path, image_id=np.asarray([str(i) for i in image_ids]),
                        categories=np.asarray([str(c) for c in categories]),
                        probability=np.asarray(probabilities, dtype=np.float16),
                        label=np.asarray(labels, dtype=np.uint8), epoch=np.int64(epoch))
    return path


def read_predictions(path) -> dict[str, np.ndarray]:
    """The arrays of a val_predictions.npz (probability as float32, for scoring)."""
    with np.load(Path(path), allow_pickle=False) as stored:
        arrays = {name: stored[name] for name in stored.files}
    arrays["probability"] = arrays["probability"].astype(np.float32)
    return arrays
