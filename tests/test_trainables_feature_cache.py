"""The feature cache for frozen trunks: same weights as training on images, computed once per trunk,
keyed on what the features depend on, safe under concurrent trials, and checkpoints that are the full
network. Tiny: 32 px, 16 images, 1 epoch."""
import json
import multiprocessing
import time

import numpy as np
import pandas as pd
import pytest

from data.handle import InMemoryHandle
from trainables.errors import TrainableConfigError
from trainables.feature_cache import (cache_identity, cache_key, computations, dataset_identity,
                                      get_or_compute, weights_sha256, why_not_cached)

SIZE = 32
N_IMAGES = 16


def tiny_handle(seed=0, ids=None) -> InMemoryHandle:
    rng = np.random.default_rng(seed)
    labels = (rng.random((N_IMAGES, 2)) < 0.5).astype(np.uint8)
    labels[:2] = [[1, 0], [0, 1]]
    labels[8:10] = [[1, 0], [0, 1]]  # both classes in each fold
    images = rng.integers(0, 256, (N_IMAGES, SIZE, SIZE), dtype=np.uint8)
    manifest = pd.DataFrame({
        "image_id": ids or [f"img{index}" for index in range(N_IMAGES)],
        "patient_key": [f"{index:016x}" for index in range(N_IMAGES)],
        "split": "cv", "fold": np.arange(N_IMAGES) // (N_IMAGES // 2), "a": labels[:, 0], "b": labels[:, 1],
    })
    return InMemoryHandle(images, manifest, ["a", "b"], "synthetic")


@pytest.fixture(scope="module", autouse=True)
def tiny_backbone():
    """A five-stage network registered as a backbone for these tests only: the cache's mechanics (split at
    a stage end, a residual connection starting at the boundary, frozen BatchNorm, full checkpoints) in
    milliseconds per step instead of ResNet50's seconds of building and tracing. ResNet50's own split is
    checked below (without training), and the benchmark trains both."""
    from trainables.backbones import BACKBONES, register_backbone

    @register_backbone(name="tinynet", application="-", preprocessing="caffe", imagenet_file="tinynet_notop.h5",
                       stage_ends={"conv2": "conv2_out", "conv3": "conv3_out", "conv4": "conv4_out"})
    def build_tiny(input_shape):
        import keras
        from keras import layers

        def block(x, filters, stage, strides=1):
            x = layers.Conv2D(filters, 3, strides=strides, padding="same", name=f"{stage}_conv")(x)
            return layers.Activation("relu", name=f"{stage}_relu")(layers.BatchNormalization(name=f"{stage}_bn")(x))

        inputs = keras.Input(input_shape)
        x = layers.Identity(name="conv2_out")(block(inputs, 8, "conv2", strides=2))
        x = layers.Add(name="conv3_out")([x, block(x, 8, "conv3")])
        x = layers.Identity(name="conv4_out")(block(x, 16, "conv4", strides=2))
        x = layers.Add(name="conv5_out")([x, block(x, 16, "conv5")])  # the trainable part starts with a skip
        return keras.Model(inputs, x, name="tinynet")

    yield
    del BACKBONES["tinynet"]


def write_source(weights_dir, seed=0, backbone="tinynet"):
    """A carded `<backbone>.chestxray8` source with seeded random values (nothing is downloaded in tests)."""
    import keras

    from trainables.backbones import get_backbone
    from trainables.weights import WeightCard, sha256_of, write_card

    weights_dir.mkdir(parents=True, exist_ok=True)
    keras.utils.set_random_seed(seed)
    path = weights_dir / f"{backbone}.chestxray8.weights.h5"
    get_backbone(backbone).build((SIZE, SIZE, 3)).save_weights(path)
    write_card(weights_dir, WeightCard(
        backbone=backbone, source="chestxray8", source_dataset="stand-in", initial_values="random",
        frozen_depth="none", epochs=0, val_auc=0.5, sha256=sha256_of(path), image_size=SIZE,
        weights_file=path.name))


def config(weights_dir, cache_dir, **change):
    base = {"config_id": "c0", "fold": 0, "backbone": "tinynet", "method": "A", "freeze": "all",
            "source_weights": "chestxray8", "image_size": SIZE, "epochs": 1, "batch_size": 4,
            "learning_rate": 1e-2, "dropout": 0.5, "seed": 3, "checkpoint_every": 1, "augment_views": 0,
            "weights_dir": str(weights_dir), "feature_cache_dir": str(cache_dir)}
    return {**base, **change}


def fit(cfg, handle, root, feature_refs=None):
    from trainables.train import fit_fold

    reports = []
    model = fit_fold(cfg, handle, report=lambda metrics, folder: reports.append((metrics, folder)),
                     checkpoint_root=root, feature_refs=feature_refs)
    return model, reports


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Four cached trials (two configs sharing a trunk x two folds) and one on images, one cache folder."""
    root = tmp_path_factory.mktemp("runs")
    write_source(root / "weights")
    handle, cache = tiny_handle(), root / "cache"
    results = {"plain": fit(config(root / "weights", cache, feature_cache="off"), handle, root / "plain")}
    for learning_rate in (1e-2, 1e-3):
        for fold in (0, 1):
            cfg = config(root / "weights", cache, fold=fold, learning_rate=learning_rate, config_id=f"{learning_rate}")
            results[learning_rate, fold] = fit(cfg, handle, root / f"{learning_rate}-{fold}")
    return root, handle, results


@pytest.mark.slow
def test_cached_training_gives_the_weights_training_on_images_gives(runs):
    root, _, results = runs
    (cached, cached_reports), (plain, plain_reports) = results[1e-2, 0], results["plain"]
    assert cached_reports[0][0]["feature_cache_hit"] == 1.0 and "feature_cache_hit" not in plain_reports[0][0]
    for got, want in zip(cached.trainable_weights, plain.trainable_weights):
        np.testing.assert_allclose(np.asarray(got), np.asarray(want), atol=1e-5, rtol=1e-5)
    assert cached_reports[0][0]["trainable_params"] == plain_reports[0][0]["trainable_params"]
    # and they moved: a learning rate of 1e-2 for one epoch is not a no-op
    other = results[1e-3, 0][0]
    assert not np.allclose(np.asarray(other.trainable_weights[0]), np.asarray(cached.trainable_weights[0]))


@pytest.mark.slow
def test_two_folds_of_two_configs_sharing_a_trunk_compute_it_once(runs):
    root, _, results = runs
    assert len(computations(root / "cache")) == 1
    computed = {name: reports[-1][0]["feature_pass_here"] for name, (_, reports) in results.items()
                if name != "plain"}
    assert computed == {(1e-2, 0): 1.0, (1e-2, 1): 0.0, (1e-3, 0): 0.0, (1e-3, 1): 0.0}


@pytest.mark.slow
def test_checkpoint_trained_from_cache_is_the_full_network_and_predicts_alike(runs):
    from data.pipeline import make_dataset
    from trainables.model import build_model

    root, handle, results = runs
    reports, plain = results[1e-2, 0][1], results["plain"][0]
    loaded = build_model(config(root / "weights", root, n_classes=2))
    loaded.load_weights(str(reports[-1][1] / "model.weights.h5"))
    images = make_dataset(handle.images, handle.load()[1], image_size=SIZE, batch_size=8, preprocessing="caffe",
                          training=False, seed=0)
    np.testing.assert_allclose(loaded.predict(images, verbose=0), plain.predict(images, verbose=0), atol=1e-5)


@pytest.mark.slow
def test_method_b_trains_the_stages_after_the_boundary_as_on_images(runs, monkeypatch):
    # Stored as float32 here, to test the split itself: with float16 features (the default for B), Adam's
    # first steps (about lr x sign(gradient)) turn float16 rounding into differences of up to lr per step
    # in weights whose gradient is near zero; the benchmark measures what that does to AUC.
    import trainables.trunk

    monkeypatch.setattr(trainables.trunk, "feature_dtype", lambda config: np.dtype(np.float32))
    root, handle, _ = runs
    change = dict(method="B", freeze="conv4")
    cached, _ = fit(config(root / "weights", root / "cache", **change), handle, root / "b")
    plain, _ = fit(config(root / "weights", root / "cache", feature_cache="off", **change), handle, root / "b0")
    assert len({entry["key"] for entry in computations(root / "cache")}) == 2  # another trunk, another entry
    for got, want in zip(cached.trainable_weights, plain.trainable_weights):
        np.testing.assert_allclose(np.asarray(got), np.asarray(want), atol=1e-5, rtol=1e-5)


@pytest.mark.slow
def test_k_augmented_views_are_computed_once_and_drawn_per_image_and_epoch(runs):
    import trainables.trunk
    from trainables.trunk import feature_batches

    root, handle, results = runs
    cache = root / "views-cache"
    cfg = config(root / "weights", cache, augment_views=2, epochs=2)
    _, reports = fit(cfg, handle, root / "views")
    fit(config(root / "weights", cache, augment_views=2, epochs=2, fold=1), handle, root / "views1")
    [entry] = computations(cache)  # two folds, one pass
    features = np.load(cache / f"{entry['key']}.npy")
    assert features.shape == (3 * N_IMAGES, 16)  # un-augmented block + 2 views, tinynet's pooled 16 floats
    clean, view1, view2 = features.reshape(3, N_IMAGES, 16)
    assert not np.allclose(view1, clean) and not np.allclose(view2, view1)  # the views are augmented, and differ
    assert reports[-1][0]["feature_cache_hit"] == 1.0
    # Each epoch draws one view per image (never the un-augmented block), a new draw per epoch, seeded.
    coded = np.repeat(np.arange(3 * N_IMAGES, dtype=np.float32)[:, None], 2, axis=1)
    labels = np.zeros((N_IMAGES, 2), np.float32)
    batches = feature_batches(coded, labels, np.arange(8), batch_size=4, training=True, seed=3, views=2)
    epochs = [np.concatenate([x.numpy()[:, 0] for x, _ in batches]).astype(int) for _ in range(2)]
    for drawn in epochs:
        assert sorted(drawn % N_IMAGES) == list(range(8)) and set(drawn // N_IMAGES) <= {1, 2}
    assert not np.array_equal(epochs[0] // N_IMAGES, epochs[1] // N_IMAGES)
    validation = feature_batches(coded, labels, np.arange(8), batch_size=4, training=False, seed=3, views=2)
    assert np.concatenate([x.numpy()[:, 0] for x, _ in validation]).tolist() == list(range(8))
    # Training reads them: with every view replaced by the un-augmented features, it is K=0's training.
    features[N_IMAGES:] = np.concatenate([clean, clean])
    np.save(cache / f"{entry['key']}.npy", features)
    trainables.trunk._TENSORS.clear()  # the worker's copy of the real views
    same, _ = fit(config(root / "weights", cache, augment_views=2), handle, root / "views-clean")
    trainables.trunk._TENSORS.clear()
    for got, want in zip(same.trainable_weights, results[1e-2, 0][0].trainable_weights):
        np.testing.assert_allclose(np.asarray(got), np.asarray(want), atol=1e-6)


@pytest.mark.slow
def test_small_caches_go_through_rays_object_store_once(tmp_path, ray_local):
    import trainables.trunk
    from search.feature_share import share_features

    # ResNet50, not tinynet: the pass runs in a Ray worker, which does not see this module's registration.
    write_source(tmp_path / "weights", backbone="resnet50")
    handle, cache = tiny_handle(), tmp_path / "cache"
    changes = {"a": {}, "a2": {"learning_rate": 1e-3}, "c": {"method": "C", "freeze": "none"}}
    trials = [config(tmp_path / "weights", cache, backbone="resnet50", fold=fold, n_classes=2, config_id=name,
                     **change) for name, change in changes.items() for fold in (0, 1)]
    ray = ray_local
    try:
        assert share_features(trials, handle, cpus=1, gpus=0, max_bytes=1024) == {}  # large: the file path
        shared = share_features(trials, handle, cpus=1, gpus=0)
        [(key, (meta, ref))] = shared.items()  # one trunk among four cacheable trials; C caches nothing
        assert meta["in_object_store"] and meta["shape"] == [N_IMAGES, 2048]
        trainables.trunk._TENSORS.clear()
        fetch_from_store = {key: (meta, lambda: ray.get(ref))}  # what train_fold hands fit_fold
        _, reports = fit(trials[1], handle, tmp_path / "from-store", feature_refs=fetch_from_store)
        assert not list(cache.glob("*.npy")) and computations(cache) == []  # the trial read the object
        assert reports[-1][0]["feature_cache_object_store"] == 1.0 and reports[-1][0]["feature_pass_here"] == 0.0
        assert trainables.trunk._TENSORS[key].shape == (N_IMAGES, 2048)
        trainables.trunk._TENSORS.clear()
        fit(trials[0], handle, tmp_path / "from-file")  # no refs: the file path computes the same features
        np.testing.assert_allclose(np.load(cache / f"{key}.npy"), ray.get(ref), atol=1e-4)
    finally:
        trainables.trunk._TENSORS.clear()


@pytest.mark.slow
@pytest.mark.parametrize("method, freeze", [("A", "all"), ("B", "conv4")])
def test_resnet50_trunk_and_part_compose_to_the_whole_model(method, freeze):
    import keras

    from trainables.model import build_model, logits_view
    from trainables.trunk import split_model

    keras.utils.set_random_seed(0)
    cfg = {"backbone": "resnet50", "method": method, "freeze": freeze, "source_weights": "imagenet",
           "image_size": SIZE, "n_classes": 2, "dropout": 0.5}
    model = build_model(cfg, load_weights=False)
    trunk, part = split_model(model, cfg)
    images = np.random.default_rng(0).normal(0, 50, (2, SIZE, SIZE, 3)).astype("float32")
    np.testing.assert_allclose(part(trunk(images)), logits_view(model)(images), atol=1e-5)  # part ends in logits
    assert [id(v) for v in part.trainable_variables] == [id(v) for v in model.trainable_variables]


def test_key_changes_with_the_weights_file_and_the_image_set(tmp_path):
    from trainables.weights import WeightCard, sha256_of, write_card

    def key(weights_dir, handle):
        cfg = {"backbone": "resnet50", "method": "A", "freeze": "all", "source_weights": "chestxray8",
               "image_size": SIZE, "weights_dir": str(weights_dir)}
        images, _, manifest, _ = handle.load()
        rows = np.arange(len(manifest))
        return cache_key(cache_identity(cfg, dataset_identity(images, manifest, rows), weights_sha256(cfg)))

    def carded(folder, content: bytes):
        folder.mkdir()
        path = folder / "resnet50.chestxray8.weights.h5"
        path.write_bytes(content)
        write_card(folder, WeightCard(backbone="resnet50", source="chestxray8", source_dataset="x",
                                      initial_values="random", frozen_depth="none", epochs=0, val_auc=0.5,
                                      sha256=sha256_of(path), image_size=SIZE, weights_file=path.name))
        return folder

    one, other = carded(tmp_path / "one", b"weights one"), carded(tmp_path / "two", b"weights two")
    assert key(one, tiny_handle()) == key(one, tiny_handle())
    assert key(one, tiny_handle()) != key(other, tiny_handle())
    assert key(one, tiny_handle()) != key(one, tiny_handle(seed=1))  # other pixels
    assert key(one, tiny_handle()) != key(one, tiny_handle(ids=[f"x{index}" for index in range(N_IMAGES)]))
    dropped = tiny_handle()
    dropped.manifest.loc[3, "split"] = "test"  # the cached (cv) image set shrinks: another key
    cv = np.flatnonzero((dropped.manifest["split"] == "cv").to_numpy())
    assert dataset_identity(dropped.images, dropped.manifest, cv) != dataset_identity(
        dropped.images, dropped.manifest, np.arange(N_IMAGES))


def test_only_un_augmented_frozen_configs_use_the_cache(tmp_path):
    base = {"method": "A", "augment_views": 0, "frozen_bn": "inference", "feature_cache_dir": str(tmp_path)}
    assert why_not_cached(base) is None
    assert "augmentation" in why_not_cached({**base, "augment_views": None})
    assert why_not_cached({**base, "augment_views": 4}) is None
    for wrong in (-1, 65, 1.5, True, "4"):
        with pytest.raises(TrainableConfigError, match="augment_views"):
            why_not_cached({**base, "augment_views": wrong})
    assert "freezes nothing" in why_not_cached({**base, "method": "C"})
    assert "frozen_bn" in why_not_cached({**base, "frozen_bn": "train"})
    assert "off" in why_not_cached({**base, "feature_cache": "off"})


def _compute_slowly(cache_dir, barrier):
    barrier.wait()  # all processes ask at once
    get_or_compute(cache_dir, "k", {"what": "test"}, (4, 3), np.dtype(np.float16),
                   lambda out: (time.sleep(0.5), out.__setitem__(slice(None), 1.5)))


def test_concurrent_trials_never_compute_the_same_features_twice(tmp_path):
    context = multiprocessing.get_context("fork")  # separate processes, as Ray workers are
    barrier = context.Barrier(3)
    workers = [context.Process(target=_compute_slowly, args=(tmp_path, barrier)) for _ in range(3)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(60)
    assert [worker.exitcode for worker in workers] == [0, 0, 0]
    assert len(computations(tmp_path)) == 1
    features, meta, computed_here = get_or_compute(tmp_path, "k", {}, (4, 3), np.dtype(np.float16), None)
    assert not computed_here and meta["what"] == "test" and np.all(np.asarray(features) == 1.5)
    assert json.loads((tmp_path / "k.json").read_text())["nbytes"] == 4 * 3 * 2


def test_fold_table_amortises_the_feature_pass_over_the_trials_sharing_it():
    from search.aggregate import fold_table

    rows = [dict(config_id=config_id, fold=fold, backbone="resnet50", source_weights="imagenet", freeze="all",
                 image_size=64, status="TERMINATED", val_auc=0.7, epochs_done=2, epochs=2,
                 time_total_s=10.0 + (30.0 if (config_id, fold) == ("a", 0) else 0.0), feature_cache_hit=1.0,
                 feature_pass_s=30.0, feature_pass_here=float((config_id, fold) == ("a", 0)))
            for config_id in ("a", "b") for fold in (0, 1)]
    rows.append(dict(config_id="c", fold=0, backbone="resnet50", source_weights="imagenet", freeze="none",
                     image_size=64, status="TERMINATED", val_auc=0.6, epochs_done=2, epochs=2, time_total_s=50.0))
    table = fold_table(pd.DataFrame(rows)).set_index("config_id")
    # The 30 s pass ran in a's fold 0; four trials used it: 7.5 s each, 15 s per config.
    assert table.loc["a", "total_train_seconds"] == 50.0
    assert table.loc[["a", "b"], "feature_pass_seconds"].tolist() == [15.0, 15.0]
    assert table.loc[["a", "b"], "total_train_seconds_amortised"].tolist() == [35.0, 35.0]
    assert table.loc["c", "feature_pass_seconds"] == 0.0 and table.loc["c", "total_train_seconds_amortised"] == 50.0
