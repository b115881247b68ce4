"""The trial: learning on synthetic images, the §6 report per epoch, checkpoints, and a real Tune run
that resumes from its checkpoint after its worker is killed."""
import json
import os
import signal
import sys

import numpy as np
import pandas as pd
import pytest

from data.handle import InMemoryHandle
from trainables.errors import TrainableConfigError

SIZE = 64      # px
N_IMAGES = 192  # two folds of 96: validation AUC of a scorer that knows nothing spreads by ~0.04 (below)
SMALL_BACKBONE = "smallnet"


def register_small_backbone() -> None:
    """A four-convolution network registered as a backbone: the trial's loop (data, model, loss, reports,
    checkpoints, resume) in milliseconds per step, where ResNet50 spent minutes building, tracing and
    training. What differs by backbone (building, freezing, weights) is tested on the real ones elsewhere.
    Idempotent, and called inside the Ray trial too: a worker sees only registrations made in its process."""
    from trainables.backbones import BACKBONES, register_backbone

    if SMALL_BACKBONE in BACKBONES:
        return

    @register_backbone(name=SMALL_BACKBONE, application="-", preprocessing="caffe", imagenet_file="-",
                       stage_ends={"conv2": "conv2_relu", "conv3": "conv3_relu", "conv4": "conv4_relu"})
    def build_small(input_shape):
        import keras
        from keras import layers

        x = inputs = keras.Input(input_shape)
        for stage, filters, strides in (("conv2", 16, 2), ("conv3", 16, 2), ("conv4", 32, 2), ("conv5", 32, 1)):
            x = layers.Conv2D(filters, 3, strides=strides, padding="same", name=f"{stage}_conv")(x)
            # momentum 0.9: moving statistics settle within the test's few dozen steps (0.99 would not)
            x = layers.BatchNormalization(momentum=0.9, name=f"{stage}_bn")(x)
            x = layers.Activation("relu", name=f"{stage}_relu")(x)
        return keras.Model(inputs, x, name=SMALL_BACKBONE)


@pytest.fixture(scope="module", autouse=True)
def small_backbone():
    from trainables.backbones import BACKBONES

    register_small_backbone()
    yield
    BACKBONES.pop(SMALL_BACKBONE, None)


def learnable_handle(n_images=N_IMAGES, size=SIZE, seed=0) -> InMemoryHandle:
    """Noise images where `disc` adds a bright disc and `band` a dark horizontal band, each in half the
    images, at random places: visible, independent signatures, two folds by patient."""
    rng = np.random.default_rng(seed)
    labels = (rng.random((n_images, 2)) < 0.5).astype(np.uint8)
    images = rng.normal(90, 20, (n_images, size, size))
    rows, cols = np.mgrid[:size, :size]
    for index in range(n_images):
        if labels[index, 0]:
            centre = rng.integers(12, size - 12, 2)
            images[index][(rows - centre[0]) ** 2 + (cols - centre[1]) ** 2 < 100] += 120
        if labels[index, 1]:
            top = rng.integers(4, size - 14)
            images[index, top:top + 10, :] -= 90
    manifest = pd.DataFrame({
        "image_id": [f"img{index}" for index in range(n_images)],
        "patient_key": [f"{index:016x}" for index in range(n_images)],
        "split": "cv", "fold": np.arange(n_images) % 2, "disc": labels[:, 0], "band": labels[:, 1],
    })
    return InMemoryHandle(images.clip(0, 255).astype(np.uint8), manifest, ["disc", "band"], "synthetic")


def trial_config(**change):
    config = {"config_id": "0123456789", "fold": 0, "backbone": SMALL_BACKBONE, "method": "D", "freeze": "none",
              "source_weights": "none", "image_size": SIZE, "epochs": 3, "batch_size": 4,
              "learning_rate": 1e-3, "seed": 0, "checkpoint_every": 2}
    return {**config, **change}


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    from trainables.train import fit_fold

    root = tmp_path_factory.mktemp("checkpoints")
    reports = []
    model = fit_fold(trial_config(), learnable_handle(), report=lambda metrics, checkpoint:
                     reports.append((metrics, checkpoint)), checkpoint_root=root)
    return model, reports


@pytest.mark.slow
def test_a_small_config_learns_well_above_chance(trained):
    # Validation: 96 images, ~48 positives per category. A scorer that knows nothing has an AUC of 0.5
    # with standard deviation sqrt((n+1) / (12 n1 n0)) ~= 0.06 per category, ~0.042 for the mean of
    # two: 0.75 is 6 standard deviations above chance. Method D from random values (no weights exist
    # offline) on 96 training images; the test asks that the trial *reaches* 0.75, as early stopping would
    # keep it. Observed with the small backbone (seeds 0 and 1): 0.998-1.0 from the first epoch.
    _, reports = trained
    aucs = [metrics["val_auc"] for metrics, _ in reports]
    assert all(metrics["val_auc_labels_scored"] == 2.0 for metrics, _ in reports)
    assert max(aucs) > 0.75, [round(auc, 3) for auc in aucs]


@pytest.mark.slow
def test_one_report_per_epoch_with_the_contract_metrics_and_checkpoints(trained):
    model, reports = trained
    assert [metrics["epoch"] for metrics, _ in reports] == [1.0, 2.0, 3.0]
    assert [metrics["traced"] for metrics, _ in reports] == [1.0, 0.0, 0.0]
    expected = {"epoch", "val_auc", "val_auc_labels_scored", "val_binary_accuracy", "val_loss", "train_loss",
                "epoch_time_s", "images_per_s", "traced", "trainable_params", "total_params", "gpus",
                "val_auc_disc", "val_auc_band"}
    for metrics, _ in reports:
        assert set(metrics) == expected
        assert all(type(value) is float for value in metrics.values())
        assert metrics["images_per_s"] == pytest.approx(96 / metrics["epoch_time_s"])
    assert reports[0][0]["gpus"] == 0.0 and reports[0][0]["total_params"] == model.count_params()
    checkpoints = [checkpoint for _, checkpoint in reports]
    assert checkpoints[0] is None and checkpoints[1].name == "epoch_0002"  # checkpoint_every = 2, and the last
    state = json.loads((checkpoints[2] / "state.json").read_text())
    # The last epoch's checkpoint is never trained from again: weights only.
    assert state == {"epoch": 3, "config_id": "0123456789", "fold": 0, "optimizer_state": False}


def test_checkpoint_restores_weights_and_optimizer_state(tmp_path):
    import keras

    from trainables.checkpoint import restore_checkpoint, save_checkpoint

    def small_model():
        model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)])
        model.compile(optimizer=keras.optimizers.Adam(1e-2), loss="mse")
        return model

    x, y = np.random.default_rng(0).random((8, 3)), np.zeros((8, 2))
    trained_model = small_model()
    trained_model.fit(x, y, epochs=3, batch_size=4, verbose=0)
    save_checkpoint(trained_model, tmp_path, epoch=3, config={"config_id": "a", "fold": 1})
    fresh = small_model()
    assert restore_checkpoint(fresh, tmp_path, config={"config_id": "a", "fold": 1}) == 3
    assert int(fresh.optimizer.iterations) == 6
    for got, want in zip(fresh.optimizer.variables + fresh.weights,
                         trained_model.optimizer.variables + trained_model.weights):
        np.testing.assert_array_equal(np.asarray(got), np.asarray(want))
    with pytest.raises(TrainableConfigError, match="belongs to fold=1, this trial has 2"):
        restore_checkpoint(small_model(), tmp_path, config={"config_id": "a", "fold": 2})

    # A finished trial's checkpoint slimmed by the driver: same weights, no optimizer state, a smaller file.
    from trainables.checkpoint import strip_optimizer_state

    size = (tmp_path / "model.weights.h5").stat().st_size
    assert strip_optimizer_state(tmp_path) and not strip_optimizer_state(tmp_path)  # once is enough
    assert (tmp_path / "model.weights.h5").stat().st_size < size
    slim = small_model()
    assert restore_checkpoint(slim, tmp_path, config={"config_id": "a", "fold": 1}) == 3
    for got, want in zip(slim.weights, trained_model.weights):
        np.testing.assert_array_equal(np.asarray(got), np.asarray(want))


def test_a_fold_without_validation_images_is_refused():
    from trainables.train import split_fold

    with pytest.raises(TrainableConfigError, match=r"fold 5 leaves 16 training and 0 validation.*\[0, 1\]"):
        split_fold(learnable_handle(n_images=16, size=32), 5)


@pytest.mark.slow
def test_train_fold_in_tune_resumes_from_its_checkpoint_after_its_worker_dies(ray_local, tmp_path):
    from ray import cloudpickle, tune

    from trainables.train import train_fold

    class KillWorkerAfterFirstCheckpoint(tune.Callback):
        """Kills the trial's own worker process (by its pid) once its first checkpoint is registered,
        as a crashed node would."""
        killed = False

        def on_checkpoint(self, iteration, trials, trial, checkpoint, **info):
            if not self.killed:
                type(self).killed = True
                os.kill(trial.last_result["pid"], signal.SIGKILL)

    def train_small_fold(config, data):
        register_small_backbone()  # in the worker: it sees only its own process's registrations
        train_fold(config, data)

    config = trial_config(epochs=3, checkpoint_every=1, image_size=32, batch_size=8, fold=1)
    # A worker cannot import this test module: Ray sends its functions (the small backbone's) by value.
    this_module = sys.modules[__name__]
    cloudpickle.register_pickle_by_value(this_module)
    try:
        tuner = tune.Tuner(
            tune.with_parameters(train_small_fold, data=learnable_handle(n_images=48, size=32)),
            param_space={"trial_config": config},
            run_config=tune.RunConfig(storage_path=str(tmp_path), name="resume", verbose=0,
                                      failure_config=tune.FailureConfig(max_failures=1),
                                      callbacks=[KillWorkerAfterFirstCheckpoint()]),
        )
        result = tuner.fit()[0]
    finally:
        cloudpickle.unregister_pickle_by_value(this_module)
    assert KillWorkerAfterFirstCheckpoint.killed and result.error is None
    assert result.metrics["epoch"] == 3.0 and result.metrics["training_iteration"] == 3
    history = result.metrics_dataframe  # Tune keeps the rows reported since the restore
    # Resumed, not restarted: the new worker's first epoch (it traced the graph) came after epoch 1.
    resumed_at = history.loc[history["traced"] == 1.0, "epoch"].max()
    assert resumed_at >= 2.0
    assert history["epoch"].tolist()[-1] == 3.0 and history["epoch"].tolist().count(1.0) <= 1
    assert result.checkpoint is not None
