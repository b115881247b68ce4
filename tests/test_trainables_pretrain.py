"""Pretraining on a prepared NIH-style dataset through `cxrtune pretrain`: weights, card, MLflow run,
and the weights then serving a target model."""
import json

import numpy as np
import pytest

from search.cli import main
from trainables.errors import WeightsError
from trainables.pretrain import pretrain


@pytest.fixture(scope="module")
def prepared_nih(tmp_path_factory):
    from data.prepare import prepare_nih
    from data.synthetic import write_nih

    root = tmp_path_factory.mktemp("nih")
    write_nih(root / "raw", n_images=60, seed=3, image_size=64, prevalence="balanced")
    prepare_nih(root / "raw", root / "raw" / "Data_Entry_2017.csv", root / "prepared", image_size=32,
                salt="test", progress=False)
    return root / "prepared"


def least_class(prepared) -> str:
    from data.manifest import load_prepared

    dataset = load_prepared(prepared)
    counts = dataset.manifest[dataset.categories].sum()
    return str(counts.idxmin())


@pytest.mark.slow
def test_pretrain_command_writes_weights_card_and_mlflow_run(prepared_nih, tmp_path, capsys):
    import mlflow

    from trainables.model import backbone_of, build_model
    from trainables.weights import read_card, sha256_of

    weights_dir = tmp_path / "weights"
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    code = main(["pretrain", "--data", str(prepared_nih), "--backbone", "resnet50", "--source", "chestxray8",
                 "--weights-dir", str(weights_dir), "--epochs", "1", "--batch-size", "16",
                 "--tracking-uri", uri, "--drop-least-class"])
    assert code == 0
    printed = capsys.readouterr().out
    assert "resnet50.chestxray8: validation AUC" in printed and "dropped: 13 outputs" in printed

    card = read_card(weights_dir, "resnet50", "chestxray8")  # checks the sha256 too
    fields = json.loads((weights_dir / "resnet50.chestxray8.json").read_text())
    for field in ("backbone", "source_dataset", "initial_values", "frozen_depth", "epochs", "val_auc", "sha256",
                  "image_size"):
        assert field in fields
    assert (card.initial_values, card.frozen_depth, card.epochs, card.image_size) == ("random", "none", 1, 32)
    least = least_class(prepared_nih)
    assert len(card.categories) == 13 and least not in card.categories and card.n_train > 0 and card.n_val > 0
    assert f"13 categories, least class {least} dropped" in card.source_dataset
    assert card.sha256 == sha256_of(weights_dir / card.weights_file)

    # The 14-finding head was dropped: the file holds the backbone only, and it sets a target's backbone.
    target = build_model({"backbone": "resnet50", "method": "C", "freeze": "none", "source_weights": "chestxray8",
                          "image_size": 48, "n_classes": 3, "weights_dir": str(weights_dir)})
    reference = build_model({"backbone": "resnet50", "method": "D", "freeze": "none", "source_weights": "none",
                             "image_size": 48, "n_classes": 3})
    backbone_of(reference).load_weights(str(weights_dir / card.weights_file))
    for got, want in zip(backbone_of(target).weights, backbone_of(reference).weights):
        np.testing.assert_array_equal(np.asarray(got), np.asarray(want))

    client = mlflow.MlflowClient(tracking_uri=uri)
    run = client.get_run(card.mlflow_run_id)
    assert run.data.params["backbone"] == "resnet50" and run.data.params["source"] == "chestxray8"
    assert run.data.params["n_classes"] == "13" and run.data.params["batch_size"] == "16"  # the head trained
    assert run.data.metrics["val_auc"] == pytest.approx(card.val_auc)
    artifacts = {item.path for item in client.list_artifacts(card.mlflow_run_id, "weights")}
    assert artifacts == {"weights/resnet50.chestxray8.weights.h5", "weights/resnet50.chestxray8.json"}


def test_imagenet_based_sources_say_the_cache_is_missing(tmp_path):
    with pytest.raises(WeightsError, match="not in the Keras cache.*pretrain --source chestxray8"):
        pretrain(tmp_path, backbone="densenet121", source="imagenet-F+chestxray8", weights_dir=tmp_path)
    with pytest.raises(WeightsError, match="not made by pretraining"):
        pretrain(tmp_path, backbone="resnet50", source="imagenet", weights_dir=tmp_path)
    assert main(["pretrain", "--data", str(tmp_path), "--backbone", "resnet50", "--source",
                 "imagenet-I+chestxray8", "--weights-dir", str(tmp_path)]) == 2


def test_a_tracking_uri_that_is_a_bare_path_is_refused_before_training(prepared_nih, tmp_path, capsys):
    assert main(["pretrain", "--data", str(prepared_nih), "--backbone", "resnet50", "--source", "chestxray8",
                 "--weights-dir", str(tmp_path), "--tracking-uri", "mlflow.db"]) == 2
    assert "--tracking-uri 'mlflow.db' is not a URI" in capsys.readouterr().err
    assert not any(tmp_path.iterdir())


@pytest.mark.parametrize("source, method, freeze, initial", [
    ("chestxray8", "D", "none", "none"),
    ("imagenet-F+chestxray8", "B", "conv4", "imagenet"),
    ("imagenet-I+chestxray8", "C", "none", "imagenet"),
])
def test_each_source_is_pretrained_as_the_study_did(source, method, freeze, initial):
    from trainables.pretrain import pretrain_config

    config = pretrain_config(backbone="densenet121", source=source, image_size=64, epochs=1, batch_size=8,
                             learning_rate=1e-4, freeze="conv4", seed=0)
    assert (config["method"], config["freeze"], config["source_weights"]) == (method, freeze, initial)


def test_pretraining_defaults_are_the_studys():
    import argparse

    from search.cli.train import register
    from trainables.pretrain import pretrain_config

    parser = argparse.ArgumentParser()
    register(parser.add_subparsers())
    args = parser.parse_args(["pretrain", "--data", "d", "--backbone", "resnet50", "--source", "chestxray8",
                              "--weights-dir", "w"])
    assert (args.epochs, args.learning_rate, args.batch_size, args.drop_least_class) == (30, 1e-4, None, False)
    batch = {source: pretrain_config(backbone="resnet50", source=source, image_size=64, epochs=30, batch_size=None,
                                     learning_rate=1e-4, freeze="conv4", seed=0)["batch_size"]
             for source in ("chestxray8", "imagenet-I+chestxray8", "imagenet-F+chestxray8")}
    assert batch == {"chestxray8": 16, "imagenet-I+chestxray8": 16, "imagenet-F+chestxray8": 128}


def test_least_class_drop_leaves_13_of_nihs_14_findings(prepared_nih, tmp_path):
    from data.handle import make_handle
    from data.prepare import prepare_nih
    from trainables.pretrain import _drop_least_class

    loaded = make_handle(prepared_nih, mode="memory").load()
    messages = []
    (images, labels, manifest, categories), dropped = _drop_least_class(loaded, prepared_nih, messages.append)
    least = least_class(prepared_nih)
    assert dropped == least and len(categories) == 13 == labels.shape[1] and least not in categories
    np.testing.assert_array_equal(labels, loaded[1][:, [loaded[3].index(name) for name in categories]])
    assert len(images) == len(loaded[0])  # images stay

    # Dropped by prepare already (the recipe's way): pretrain keeps the 13 and says so.
    summary = prepare_nih(prepared_nih.parent / "raw", None, tmp_path / "p13", image_size=32, salt="test",
                          progress=False, drop_least_class=True)
    assert summary["least_class_dropped"] == least and len(summary["categories"]) == 13
    assert summary["dropped_categories"] == {least: int(loaded[1][:, loaded[3].index(least)].sum())}
    again = make_handle(tmp_path / "p13", mode="memory").load()
    kept, none = _drop_least_class(again, tmp_path / "p13", messages.append)
    assert none is None and len(kept[3]) == 13 and "dropped by prepare already" in messages[-1]
