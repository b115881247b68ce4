"""Model building, frozen depth per method, and source weights loaded from real files."""
import json

import h5py
import numpy as np
import pytest

from trainables.backbones import get_backbone
from trainables.errors import WeightsError
from trainables.model import backbone_of, build_model, first_trainable_index, frozen_conv_count, logits_view
from trainables.weights import (WeightCard, available_weights, imagenet_cached, imagenet_path, read_card,
                                sha256_of, weights_file, write_card)


def config(**change):
    base = {"backbone": "resnet50", "method": "B", "freeze": "conv3", "source_weights": "imagenet",
            "image_size": 32, "n_classes": 3, "seed": 0}
    return {**base, **change}


@pytest.mark.parametrize("backbone, stages, convs, first_trainable", [
    ("resnet50", ["10", "22", "40"], [10, 22, 40], [39, 81, 143]),
    # DenseNet121: our boundaries are the transition blocks' ends (53/141/313); the study's
    # 55/143/315 also freeze the next block's first BatchNorm+ReLU, which hold no convolution.
    ("densenet121", ["14", "39", "88"], [14, 39, 88], [53, 141, 313]),
])
def test_method_b_freezes_exactly_the_studys_convolutions(backbone, stages, convs, first_trainable):
    for alias, conv_count, index in zip(stages, convs, first_trainable):
        model = build_model(config(backbone=backbone, freeze=alias), load_weights=False)
        trunk = backbone_of(model)
        assert frozen_conv_count(trunk) == conv_count
        assert first_trainable_index(trunk) == index
        assert all(not layer.trainable for layer in trunk.layers[1:index])
        assert all(layer.trainable for layer in trunk.layers[index:])


def test_methods_a_c_d_and_the_head():
    a = build_model(config(method="A", freeze="all"), load_weights=False)
    assert not backbone_of(a).trainable_weights
    x = np.random.default_rng(0).normal(size=(2, 32, 32, 3)).astype("float32")
    logits = logits_view(a)(x, training=False)  # the same weights, before the sigmoid: what training fits
    np.testing.assert_allclose(np.asarray(a(x, training=False)), 1 / (1 + np.exp(-np.asarray(logits))), rtol=1e-5)
    assert [w.name for w in a.trainable_weights] == ["kernel", "bias"]  # the dense head only
    c = build_model(config(method="C", freeze="none"), load_weights=False)
    d = build_model(config(method="D", freeze="none", source_weights="none"), load_weights=True)
    for model in (c, d):
        assert frozen_conv_count(backbone_of(model)) == 0
    head, output = d.get_layer("logits"), d.get_layer("predictions")  # dense logits, then the sigmoid
    assert head.units == 3 and head.dtype_policy.name == "float32" and output.dtype_policy.name == "float32"
    assert d.output_shape == (None, 3)


def test_frozen_batchnorm_train_mode_keeps_frozen_bn_trainable():
    inference = backbone_of(build_model(config(frozen_bn="inference"), load_weights=False))
    train = backbone_of(build_model(config(frozen_bn="train"), load_weights=False))
    assert not inference.get_layer("conv2_block1_1_bn").trainable
    assert train.get_layer("conv2_block1_1_bn").trainable
    assert not train.get_layer("conv2_block1_1_conv").trainable


def test_imagenet_weights_load_from_the_exact_keras_cache_file():
    # A weights=None backbone saved in Keras's legacy h5 layout under the file name Keras caches
    # ImageNet weights as: loading must set exactly these values.
    import keras

    assert not imagenet_cached("resnet50")
    with pytest.raises(WeightsError, match="not in the Keras cache"):
        build_model(config())
    reference = get_backbone("resnet50").build((32, 32, 3))
    keras.utils.set_random_seed(123)
    for variable in reference.weights:
        variable.assign(np.random.default_rng(7).normal(size=variable.shape).astype("float32"))
    path = imagenet_path("resnet50")
    path.parent.mkdir(parents=True, exist_ok=True)
    from keras.src.legacy.saving.legacy_h5_format import save_weights_to_hdf5_group

    with h5py.File(path, "w") as stream:
        save_weights_to_hdf5_group(stream, reference)
    try:
        assert imagenet_cached("resnet50")
        assert "resnet50.imagenet" in available_weights()
        trunk = backbone_of(build_model(config(image_size=48)))  # weights fit any input size
        for got, want in zip(trunk.weights, reference.weights):
            np.testing.assert_array_equal(np.asarray(got), np.asarray(want))
    finally:
        path.unlink()


def test_pretrained_card_is_checked_before_loading(tmp_path):
    backbone = get_backbone("resnet50").build((32, 32, 3))
    path = weights_file(tmp_path, "resnet50", "chestxray8")
    backbone.save_weights(str(path))
    card = WeightCard(backbone="resnet50", source="chestxray8", source_dataset="test", initial_values="random",
                      frozen_depth="none", epochs=1, val_auc=0.5, sha256=sha256_of(path), image_size=32,
                      weights_file=path.name)
    write_card(tmp_path, card)
    model = build_model(config(source_weights="chestxray8", weights_dir=str(tmp_path)))
    for got, want in zip(backbone_of(model).weights, backbone.weights):
        np.testing.assert_array_equal(np.asarray(got), np.asarray(want))

    card_path = tmp_path / "resnet50.chestxray8.json"
    fields = json.loads(card_path.read_text())
    card_path.write_text(json.dumps({**fields, "backbone": "densenet121"}))
    with pytest.raises(WeightsError, match="backbone is 'densenet121', the model is 'resnet50'"):
        read_card(tmp_path, "resnet50", "chestxray8")
    card_path.write_text(json.dumps({**fields, "sha256": "0" * 64}))
    with pytest.raises(WeightsError, match="does not match the card's sha256"):
        build_model(config(source_weights="chestxray8", weights_dir=str(tmp_path)))
    with pytest.raises(WeightsError, match="cxrtune pretrain --backbone resnet50 --source imagenet-I"):
        build_model(config(source_weights="imagenet-I+chestxray8", weights_dir=str(tmp_path)))


def test_a_weight_file_is_read_once_per_process_until_it_changes(tmp_path, monkeypatch):
    # A reused Tune worker builds many trials' models from one source: the second build takes the values from
    # memory, and a rewritten file is read again.
    import keras

    def saved_backbone(seed):
        backbone = get_backbone("resnet50").build((32, 32, 3))
        for variable in backbone.weights:
            variable.assign(np.random.default_rng(seed).normal(size=variable.shape).astype("float32"))
        path = weights_file(tmp_path, "resnet50", "chestxray8")
        backbone.save_weights(str(path))
        write_card(tmp_path, WeightCard(
            backbone="resnet50", source="chestxray8", source_dataset="test", initial_values="random",
            frozen_depth="none", epochs=1, val_auc=0.5, sha256=sha256_of(path), image_size=32,
            weights_file=path.name))
        return backbone

    reads = []
    load_weights = keras.Model.load_weights
    monkeypatch.setattr(keras.Model, "load_weights", lambda self, *a, **k: reads.append(1) or load_weights(self, *a, **k))
    settings = config(source_weights="chestxray8", weights_dir=str(tmp_path))
    for seed in (1, 2):
        want = saved_backbone(seed)
        for _ in range(2):
            for got, expected in zip(backbone_of(build_model(settings)).weights, want.weights):
                np.testing.assert_array_equal(np.asarray(got), np.asarray(expected))
        assert len(reads) == seed  # one read per file version, not per build
