"""predict: files -> per-category probabilities through training's conversion; Grad-CAM heatmaps."""
from __future__ import annotations

import io
import json

import numpy as np
import pandas as pd
import pytest

from search.cli import main
from search.errors import SearchError

IMAGE_SIZE = 64  # ResNet50's last feature map is 2 x 2 here: the smallest size where a heatmap has a shape
CATEGORIES = ["cardiac_hypertrophy", "heart_pacemaker", "spinal_lesion"]


@pytest.fixture(scope="module")
def final_model(tmp_path_factory):
    """A model saved exactly as train-final saves it (random values: predict does not care)."""
    from search.final import save_final_model
    from trainables.model import build_model

    config = {"config_id": "0123456789", "backbone": "resnet50", "method": "D", "freeze": "none",
              "source_weights": "none", "image_size": IMAGE_SIZE, "epochs": 1, "batch_size": 4,
              "learning_rate": 1e-3, "dropout": 0.5, "frozen_bn": "inference", "seed": 0}
    model = build_model(dict(config, n_classes=len(CATEGORIES)), load_weights=False)
    root = tmp_path_factory.mktemp("final")
    return save_final_model(model, root / "model", config=config, categories=CATEGORIES, summary={"bit_depth": 8},
                            metrics={"test_auc": 0.5}, search_name="unit")


@pytest.fixture(scope="module")
def dicom_files(tmp_path_factory):
    from data.synthetic import write_hospital

    root = tmp_path_factory.mktemp("dicom")
    write_hospital(root, n_images=3, seed=1, image_size=96, outliers=False, n_duplicates=0)
    return sorted(root.rglob("*.dcm"))[:3]


def reference_probabilities(model_path, files):
    """What the model says when fed by hand: convert_image -> make_dataset(caffe) -> model.predict."""
    import keras

    from data.pipeline import make_dataset
    from data.prepare import convert_image

    model = keras.models.load_model(model_path, compile=False)
    images = np.stack([convert_image(path, image_size=IMAGE_SIZE) for path in files])
    dataset = make_dataset(images, np.zeros((len(images), len(CATEGORIES)), np.float32), image_size=IMAGE_SIZE,
                           batch_size=2, preprocessing="caffe", training=False, seed=0)
    return model.predict(dataset, verbose=0)


@pytest.mark.slow
def test_dicom_and_png_give_the_probabilities_of_training_conversion(final_model, dicom_files, tmp_path, capsys):
    from PIL import Image

    from data.prepare import convert_image

    png = tmp_path / "converted.png"  # the DICOM as prepare would have stored it
    Image.fromarray(convert_image(dicom_files[0], image_size=IMAGE_SIZE)).save(png)
    files = [*dicom_files, png]

    assert main(["predict", str(final_model), *map(str, files), "--format", "json"]) == 0
    rows = json.loads(capsys.readouterr().out)

    assert [row["file"] for row in rows] == [str(path) for path in files]
    assert all(row["error"] == "" for row in rows)
    got = np.array([[row[category] for category in CATEGORIES] for row in rows])
    np.testing.assert_allclose(got[:-1], reference_probabilities(final_model, dicom_files), atol=1e-5)
    np.testing.assert_allclose(got[-1], got[0], atol=1e-5)  # PNG of the converted DICOM: same answer


@pytest.mark.slow
def test_unreadable_file_is_reported_in_its_row_and_others_still_predicted(final_model, dicom_files, tmp_path,
                                                                           capsys):
    broken = tmp_path / "broken.dcm"
    broken.write_bytes(b"not a dicom file at all")
    output = tmp_path / "out.csv"

    status = main(["predict", str(final_model), str(dicom_files[0]), str(broken), "--format", "csv",
                   "--output", str(output)])

    assert status == 2
    assert "1 of 2 file(s) could not be read" in capsys.readouterr().err
    table = pd.read_csv(output)
    assert list(table.columns) == ["file", "error", *CATEGORIES]
    assert pd.isna(table.loc[0, "error"])  # the empty error field reads back as missing
    assert "broken.dcm" in table.loc[1, "file"] and isinstance(table.loc[1, "error"], str)
    assert table.loc[1, CATEGORIES].isna().all() and table.loc[0, CATEGORIES].notna().all()


@pytest.mark.slow
def test_gradcam_matches_class_activation_map_and_writes_overlays(final_model, dicom_files, tmp_path):
    """For GAP -> dropout -> dense, Grad-CAM's channel weights are proportional to the dense weights
    of the class (Grad-CAM paper, section 3.1): the map must equal relu(features . w_c), normalised."""
    import keras
    import tensorflow as tf
    from PIL import Image

    from data.pipeline import make_dataset
    from data.prepare import convert_image
    from search.gradcam import gradcam_maps, split_backbone_head
    from search.predict import predict_files

    model = keras.models.load_model(final_model, compile=False)
    images = np.stack([convert_image(path, image_size=IMAGE_SIZE) for path in dicom_files])
    batch, _ = next(iter(make_dataset(images, np.zeros((3, 3), np.float32), image_size=IMAGE_SIZE, batch_size=3,
                                      preprocessing="caffe", training=False, seed=0)))
    classes = np.array([0, 2, 1])
    maps = gradcam_maps(model, batch, classes)

    backbone, _ = split_backbone_head(model)
    features = backbone(batch, training=False).numpy()
    dense = model.get_layer("logits").get_weights()[0]  # channels x categories (the sigmoid follows)
    expected = np.maximum(np.einsum("nhwk,kn->nhw", features, dense[:, classes]), 0)
    expected = expected / np.maximum(expected.max(axis=(1, 2), keepdims=True), 1e-12)
    expected = tf.image.resize(expected[..., None], (IMAGE_SIZE, IMAGE_SIZE))[..., 0].numpy()
    assert maps.shape == (3, IMAGE_SIZE, IMAGE_SIZE)
    np.testing.assert_allclose(maps, expected, atol=1e-4)

    rows = predict_files(final_model, dicom_files, gradcam_dir=tmp_path / "cams")
    for row in rows:
        probabilities = [row[category] for category in CATEGORIES]
        assert row["gradcam_category"] == CATEGORIES[int(np.argmax(probabilities))]
        with Image.open(row["gradcam"]) as overlay:
            assert overlay.size == (IMAGE_SIZE, IMAGE_SIZE) and overlay.mode == "RGB"
    assert len({row["gradcam"] for row in rows}) == len(rows)


@pytest.mark.slow
def test_real_chest_radiograph_from_the_reference_data(final_model, shared_data, capsys):
    chest = shared_data / "dicom" / "siim_chest_pa_jpeg_baseline.dcm"
    assert main(["predict", str(final_model), str(chest)]) == 0
    (row,) = json.loads(capsys.readouterr().out)
    assert row["error"] == "" and all(0.0 <= row[category] <= 1.0 for category in CATEGORIES)


def test_model_without_its_sidecar_is_refused_with_what_is_missing(tmp_path, capsys):
    model = tmp_path / "model.keras"
    model.write_bytes(b"zip")
    assert main(["predict", str(model), "x.png"]) == 2
    assert "model.json is missing" in capsys.readouterr().err
    assert main(["predict", str(tmp_path / "none.keras"), "x.png"]) == 2
    assert "does not exist" in capsys.readouterr().err
    (tmp_path / "model.json").write_text(json.dumps({"categories": ["a"], "image_size": 32,
                                                      "preprocessing": "caffe"}))
    assert main(["predict", str(model), "x.png"]) == 2
    error = capsys.readouterr().err
    assert "cannot be loaded as a Keras model" in error and error.count("\n") == 1


def test_format_predictions_json_nulls_and_csv():
    from search.predict import format_predictions

    rows = [{"file": "a.png", "error": "", "x": 0.25}, {"file": "b.dcm", "error": "bad", "x": float("nan")}]
    assert json.loads(format_predictions(rows, "json"))[1]["x"] is None
    assert pd.read_csv(io.StringIO(format_predictions(rows, "csv")))["x"].tolist()[0] == 0.25
    with pytest.raises(SearchError, match="json or csv"):
        format_predictions(rows, "xml")
