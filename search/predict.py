"""`predict`: DICOM or PNG files -> per-category probabilities from a `train-final` model.

Each file goes through `data.prepare.convert_image` (the conversion prepare used: display chain,
pad to square, resize, bit depth) and then `data.pipeline.make_dataset` with the model's
preprocessing mode, so the model sees the pixels it was trained on. A file that cannot be read is
reported in its row with the reason (never skipped); the other files are still predicted.
"""
from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np

from search.errors import SearchError

BATCH_SIZE = 8  # images per forward pass: small, predict is used on a handful of files


def load_final_model(model_path):
    """(Keras model, sidecar dict) of a model written by train-final; files checked before Keras is imported."""
    model_path = Path(model_path)
    sidecar_path = model_path.with_suffix(".json")
    if not model_path.is_file():
        raise SearchError(f"model file {model_path} does not exist (train-final writes OUT/NAME/final/ID/model.keras)")
    if not sidecar_path.is_file():
        raise SearchError(f"{sidecar_path} is missing: predict needs the categories, image size and preprocessing "
                          "that train-final writes beside the .keras file")
    try:
        sidecar = json.loads(sidecar_path.read_text())
    except json.JSONDecodeError as error:
        raise SearchError(f"{sidecar_path} is not valid JSON: {error}") from None
    missing = [key for key in ("categories", "image_size", "preprocessing") if key not in sidecar]
    if missing:
        raise SearchError(f"{sidecar_path} lacks {', '.join(missing)}")
    import keras

    try:
        # compile=False: the training loss is a closure Keras cannot rebuild, and predict needs no loss.
        model = keras.models.load_model(model_path, compile=False)
    except Exception as error:  # Keras raises ValueError, zipfile and h5py errors alike for a bad file
        raise SearchError(f"{model_path} cannot be loaded as a Keras model ({type(error).__name__}: "
                          f"{str(error).splitlines()[0] if str(error) else ''}); expected a train-final model.keras") from None
    return model, sidecar


def predict_files(model_path, files, *, gradcam_dir=None, calls: str | None = None) -> list[dict]:
    """One dict per file: `file`, a probability per category, `error` ('' when fine), and with
    `gradcam_dir` the `gradcam` heatmap path (for the most probable category, `gradcam_category`).

    Temperatures saved by `cxrtune evaluate --temperature` are applied to the probabilities; `calls`
    names a saved operating point (`youden`, `specificity_0.90`, ...) and adds `<category>_call`
    (1 positive, 0 negative) per category that has it."""
    from data.errors import DataError
    from data.pipeline import make_dataset
    from data.prepare import convert_image

    model, sidecar = load_final_model(model_path)
    categories, size = list(sidecar["categories"]), int(sidecar["image_size"])
    clinical = sidecar.get("clinical") or {}
    if calls is not None and not any(calls in points for points in (clinical.get("thresholds") or {}).values()):
        raise SearchError(f"--calls {calls}: {model_path} has no such saved operating point; run `cxrtune evaluate` "
                          "first (points: youden, specificity_0.90, specificity_0.95)")
    rows, images, readable = [], [], []
    for path in map(Path, files):
        row = {"file": str(path), "error": ""}
        try:
            images.append(convert_image(path, image_size=size, bit_depth=int(sidecar.get("bit_depth", 8))))
            readable.append(len(rows))
        except (DataError, OSError) as error:
            row["error"] = str(error) or type(error).__name__
            row.update({category: float("nan") for category in categories})
        rows.append(row)
    if not images:
        return rows
    stacked = np.stack(images)
    dataset = make_dataset(stacked, np.zeros((len(stacked), len(categories)), np.float32), image_size=size,
                           batch_size=BATCH_SIZE, preprocessing=sidecar["preprocessing"], training=False, seed=0)
    probabilities = []
    maps = []
    for batch_images, _ in dataset:
        batch_probabilities = np.asarray(model(batch_images, training=False), dtype=float)
        probabilities.append(batch_probabilities)
        if gradcam_dir is not None:
            from search.gradcam import gradcam_maps

            maps.append(gradcam_maps(model, batch_images, batch_probabilities.argmax(axis=1)))
    probabilities = np.concatenate(probabilities)
    if clinical.get("temperatures"):
        from search.evaluation.calibration import apply_temperatures

        probabilities = apply_temperatures(probabilities, [clinical["temperatures"].get(c, 1.0) for c in categories])
    for position, row_index in enumerate(readable):
        rows[row_index].update({c: float(p) for c, p in zip(categories, probabilities[position])})
    if calls is not None:
        from search.evaluation.operating_points import calls as threshold_calls

        for category, values in threshold_calls(probabilities, categories, clinical["thresholds"], calls).items():
            for position, row_index in enumerate(readable):
                rows[row_index][f"{category}_call"] = int(values[position])
    if gradcam_dir is not None:
        _write_gradcams(rows, readable, stacked, np.concatenate(maps), probabilities, categories, Path(gradcam_dir))
    return rows


def _write_gradcams(rows, readable, images, maps, probabilities, categories, directory: Path) -> None:
    from search.gradcam import write_overlay

    for position, row_index in enumerate(readable):
        category = categories[int(probabilities[position].argmax())]
        # Numbered names: two inputs may share a file name in different folders.
        name = f"{position:04d}_{Path(rows[row_index]['file']).stem}_gradcam_{category}.png"
        rows[row_index]["gradcam"] = str(write_overlay(images[position], maps[position], directory / name))
        rows[row_index]["gradcam_category"] = category


def format_predictions(rows: list[dict], output_format: str) -> str:
    """JSON (a list of objects, NaN as null) or CSV (one row per file)."""
    if output_format == "json":
        clean = [{key: (None if isinstance(value, float) and np.isnan(value) else value)
                  for key, value in row.items()} for row in rows]
        return json.dumps(clean, indent=2) + "\n"
    if output_format == "csv":
        import pandas as pd

        buffer = io.StringIO()
        pd.DataFrame(rows).to_csv(buffer, index=False)
        return buffer.getvalue()
    raise SearchError(f"output format {output_format!r} is not json or csv")
