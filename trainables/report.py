"""A Keras callback that turns each epoch into one report: the §6 metrics plus a checkpoint.

One report per epoch keeps Tune's training_iteration equal to the epoch (ASHA's time unit).
Validation is scored here on the whole fold with scikit-learn (see metrics.py), not by Keras.
Keras is imported inside `epoch_reporter`, so importing this module starts no TensorFlow.
"""
from __future__ import annotations

import time
from typing import Callable

import numpy as np

from trainables.metrics import validation_metrics


def epoch_reporter(*, validation_data, validation_labels, categories, beta_p, beta_n, n_train: int,
                   report: Callable[[dict, object], None], save_checkpoint: Callable[[int], object],
                   checkpoint_every: int, last_epoch: int, fixed_metrics: dict[str, float],
                   save_predictions: Callable[[object, np.ndarray, int], object] | None = None):
    """A callback calling `report(metrics, checkpoint_or_None)` after every epoch, for a model that
    outputs logits (trainables.model.logits_view): AUC and accuracy score sigmoid(logits), the
    validation loss the logits themselves, as training does.
    `save_checkpoint(epoch)` runs every `checkpoint_every` epochs and on the last one;
    `save_predictions(checkpoint, probabilities, epoch)` then stores that epoch's validation scores beside it."""
    import keras

    class EpochReporter(keras.callbacks.Callback):
        def __init__(self):
            super().__init__()
            self.epochs_run = 0
            self.started = 0.0

        def on_epoch_begin(self, epoch, logs=None):
            self.started = time.perf_counter()

        def on_epoch_end(self, epoch, logs=None):
            # Training time only (s): validation scoring below is not part of the epoch's cost.
            epoch_time_s = time.perf_counter() - self.started
            logits = np.asarray(self.model.predict(validation_data, verbose=0), dtype="float64")
            scores = 0.5 * (1.0 + np.tanh(0.5 * logits))  # sigmoid without overflow warnings
            metrics = validation_metrics(validation_labels, scores, categories, beta_p=beta_p, beta_n=beta_n,
                                         logits=logits)
            metrics.update({
                "epoch": float(epoch + 1),
                "train_loss": float((logs or {}).get("loss", float("nan"))),
                "epoch_time_s": epoch_time_s,
                "images_per_s": n_train / epoch_time_s if epoch_time_s > 0 else float("nan"),
                # The first epoch of every fit (also after a resume) traces the graph.
                "traced": 1.0 if self.epochs_run == 0 else 0.0,
                **{key: float(value) for key, value in fixed_metrics.items()},
            })
            self.epochs_run += 1
            done = epoch + 1
            checkpoint = None
            if done % checkpoint_every == 0 or done == last_epoch:
                checkpoint = save_checkpoint(done)
                if save_predictions is not None and checkpoint is not None:
                    save_predictions(checkpoint, np.asarray(scores), done)
            report(metrics, checkpoint)

    return EpochReporter()
