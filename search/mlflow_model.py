"""The MLflow model `train-final` registers: a pyfunc that takes radiographs and returns probabilities.

Input: a DataFrame with one column `image`, one row per radiograph: a path to a DICOM or PNG file that the
serving process can read, or the file's bytes in base64 (what a REST client sends to `mlflow models serve`).
Output: one column per category (the sigmoid probability) and `error` ('' when the file was read; else the
reason, with NaN probabilities), in the input's order. Preprocessing is the model's own: the conversion
`prepare` used (display chain, square, resize, bit depth) and the backbone's preprocessing mode, read from
the model.json saved beside model.keras.

    model = mlflow.pyfunc.load_model("models:/cxrtune-NAME/1")
    model.predict(pd.DataFrame({"image": ["chest.dcm"]}))

The Keras model and its settings travel as the pyfunc's artifacts; the code as `code_paths` (the `data`,
`search` and `trainables` packages), so the MLflow model loads wherever its pip requirements are installed.
"""
from __future__ import annotations

import base64
import binascii
import logging
import tempfile
import warnings
from pathlib import Path

import mlflow.pyfunc
import numpy as np
import pandas as pd

from trainables.native_logs import verbose

INPUT_COLUMN = "image"
ERROR_COLUMN = "error"
BATCH_SIZE = 8
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"  # base64 content that starts so is read as PNG, anything else as DICOM


def _is_file(text: str) -> bool:
    try:
        return Path(text).is_file()
    except OSError:  # e.g. a base64 string longer than a file name may be
        return False


def _decoded_file(text: str, scratch: Path, index: int) -> Path | None:
    """Base64 file content written to a scratch file (`.png` by its magic bytes, else `.dcm`, which the
    DICOM reader also accepts without a preamble); None when `text` is not base64."""
    if len(text) < 64 or _is_file(text):
        return None
    try:
        content = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        return None
    path = scratch / f"input_{index:05d}{'.png' if content.startswith(PNG_MAGIC) else '.dcm'}"
    path.write_bytes(content)
    return path


# MLflow 3 advises type hints on `predict` when the class is defined; the explicit signature below is
# what validates inputs here, so the advice is only noise on every load.
warnings.filterwarnings("ignore", message=r".*Add type hints to the `predict` method", category=UserWarning)


class RadiographClassifier(mlflow.pyfunc.PythonModel):
    """pyfunc wrapper of a train-final model (see the module docstring)."""

    def load_context(self, context):
        from search.predict import load_final_model

        self.model, self.settings = load_final_model(Path(context.artifacts["final_model"]) / "model.keras")
        self.categories = list(self.settings["categories"])

    def predict(self, context, model_input, params=None):
        from data.errors import DataError
        from data.pipeline import make_dataset
        from data.prepare import convert_image

        values = model_input[INPUT_COLUMN] if isinstance(model_input, pd.DataFrame) else model_input
        size, bit_depth = int(self.settings["image_size"]), int(self.settings.get("bit_depth", 8))
        probabilities = np.full((len(values), len(self.categories)), np.nan)
        errors, images, readable = [""] * len(values), [], []
        with tempfile.TemporaryDirectory(prefix="cxrtune-serve-") as scratch:
            for index, value in enumerate(values):
                text = str(value)
                path = _decoded_file(text, Path(scratch), index) or Path(text)
                try:
                    images.append(convert_image(path, image_size=size, bit_depth=bit_depth))
                    readable.append(index)
                except (DataError, OSError) as error:
                    errors[index] = (str(error) or type(error).__name__)[:300]
        if images:
            dataset = make_dataset(np.stack(images), np.zeros((len(images), len(self.categories)), np.float32),
                                   image_size=size, batch_size=BATCH_SIZE,
                                   preprocessing=self.settings["preprocessing"], training=False, seed=0)
            scores = np.concatenate([np.asarray(self.model(batch, training=False), dtype=float)
                                     for batch, _ in dataset])
            probabilities[readable] = scores
        output = pd.DataFrame(probabilities, columns=self.categories)
        output[ERROR_COLUMN] = errors
        return output


def signature(categories: list[str]):
    from mlflow.models import ModelSignature
    from mlflow.types import ColSpec, Schema

    return ModelSignature(inputs=Schema([ColSpec("string", INPUT_COLUMN)]),
                          outputs=Schema([ColSpec("double", c) for c in categories] + [ColSpec("string", ERROR_COLUMN)]))


def example_input(image_size: int) -> pd.DataFrame:
    """One synthetic grey PNG in base64: a valid request that carries no patient's image."""
    import io

    from PIL import Image

    ramp = np.tile(np.linspace(0, 255, image_size, dtype=np.uint8), (image_size, 1))
    buffer = io.BytesIO()
    Image.fromarray(ramp, mode="L").save(buffer, format="PNG")
    return pd.DataFrame({INPUT_COLUMN: [base64.b64encode(buffer.getvalue()).decode("ascii")]})


def save_pyfunc(model_dir: Path, destination: Path, *, categories: list[str], image_size: int) -> Path:
    """Write the MLflow model (MLmodel, the Keras model and its settings, code) into `destination`."""
    import importlib.metadata as metadata

    def pinned(name: str) -> str:
        return f"{name}=={metadata.version(name)}"

    requirements = [pinned(name) for name in ("mlflow", "tensorflow", "keras", "pydicom", "pandas", "numpy",
                                              "pillow", "pyyaml", "scikit-learn")]
    # MLflow's INFO/WARNING lines here (input validation, cloudpickle advice) say nothing a user can act on.
    mlflow_logger = logging.getLogger("mlflow")
    level = mlflow_logger.level
    if not verbose():
        mlflow_logger.setLevel(logging.ERROR)
    try:
        _save(destination, model_dir, categories, image_size, requirements)
    finally:
        mlflow_logger.setLevel(level)
    return destination


def _save(destination: Path, model_dir: Path, categories: list[str], image_size: int, requirements: list[str]):
    import data
    import search
    import trainables

    mlflow.pyfunc.save_model(
        path=str(destination), python_model=RadiographClassifier(),
        artifacts={"final_model": str(model_dir)},
        code_paths=[str(Path(package.__file__).parent) for package in (data, search, trainables)],
        signature=signature(categories), input_example=example_input(image_size),
        pip_requirements=requirements)
