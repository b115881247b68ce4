"""`train-final`: retrain one config of a search on every non-test image, score it on the test part.

The training loop is the trials' own (`trainables.train.fit_fold`): the dataset's manifest is
relabelled so that all `cv` rows form the training part and the held-out `test` rows the
validation part of one "fold". Nothing is chosen by the test part (no early stopping, no epoch
selection): the model after the config's last epoch is the one scored and saved.

The model is saved as `model.keras` with `model.json` beside it: categories, image size, bit depth
and the preprocessing mode, so that `predict` needs nothing else. The MLflow run (search/final_mlflow.py)
has as `model/` artifact an MLflow pyfunc model around those two files (search/mlflow_model.py), registered
as `cxrtune-NAME`:
`mlflow.pyfunc.load_model("models:/cxrtune-NAME/1").predict(...)` and `mlflow models serve` work.
"""
from __future__ import annotations

import json
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from search.errors import SearchError

MODEL_FILE, SIDECAR_FILE = "model.keras", "model.json"
SIDECAR_FORMAT = "cxrtune-final-model/1"


@dataclass
class FinalOutcome:
    config: dict
    model_path: Path
    metrics: dict[str, float]
    run_id: str | None = None
    registered: str | None = None  # "name version N"
    history: list[dict] = field(default_factory=list)
    clinical: object = None  # search.evaluation.clinical.EvaluationOutcome, or why it was skipped (str)

    @property
    def sidecar_path(self) -> Path:
        """model.json beside the model: what `predict` needs besides the weights."""
        return self.model_path.with_name(SIDECAR_FILE)

    def summary_lines(self) -> list[str]:
        m = self.metrics
        lines = [
            f"config {self.config['config_id']}: {self.config['backbone']} method {self.config['method']} "
            f"freeze {self.config['freeze']} weights {self.config['source_weights']}, {self.config['epochs']} epochs",
            f"test: macro AUC {m['test_auc']:.3f} (95% bootstrap CI {m['test_auc_ci_low']:.3f}-"
            f"{m['test_auc_ci_high']:.3f}, {int(m['test_auc_labels_scored'])} categories scored, "
            f"{int(m['test_images'])} images), binary accuracy {m['test_binary_accuracy']:.3f}",
        ]
        lines += [f"  {name[len('test_auc_'):]:<32} AUC {value:.3f}" for name, value in m.items()
                  if name.startswith("test_auc_") and name not in
                  ("test_auc_ci_low", "test_auc_ci_high", "test_auc_labels_scored")]
        lines.append(f"model: {self.model_path} (+ {SIDECAR_FILE})")
        if self.run_id:
            lines.append(f"MLflow run {self.run_id}" + (f", registered as {self.registered}" if self.registered else ""))
        return lines


class FinalSplit:
    """A dataset handle whose one validation "fold" (1) is the test part and training part (0) all cv rows."""

    TRAIN_FOLD, TEST_FOLD = 0, 1

    def __init__(self, inner):
        self.inner = inner

    def load(self):
        images_or_paths, labels, manifest, categories = self.inner.load()
        manifest = manifest.copy()
        is_test = (manifest["split"] == "test").to_numpy()
        manifest["split"] = "cv"
        manifest["fold"] = np.where(is_test, self.TEST_FOLD, self.TRAIN_FOLD)
        return images_or_paths, labels, manifest, categories


def choose_config(table, config_id: str | None) -> str:
    """The given config, or the full-budget config (every fold trained every epoch) with the best cv_val_auc_mean."""
    known = table["config_id"].astype(str).tolist()
    if config_id is not None:
        if config_id not in known:
            raise SearchError(f"--config {config_id!r} is not in this search; its configs: {', '.join(known)}")
        return config_id
    complete = table[table["full_budget"].astype(bool)].dropna(subset=["cv_val_auc_mean"])
    if complete.empty:
        raise SearchError("no config has trained every fold for every epoch with a val_auc yet; name one with --config "
                          f"(configs: {', '.join(known)})")
    return str(complete.sort_values("cv_val_auc_mean", ascending=False).iloc[0]["config_id"])


def _setting_path(settings: dict, key: str) -> str | None:
    value = settings.get(key)
    if isinstance(value, dict):
        value = value.get("path") or value.get("root")
    return str(value) if value else None


def _search_data(results, data_path=None):
    """(dataset handle, prepared summary) of the search's data, or of `data_path` when given."""
    from data.handle import make_handle
    from data.manifest import load_prepared

    described = results.settings.get("data")
    if data_path is None and isinstance(described, dict) and described.get("kind") == "handle":
        import pickle

        handle = pickle.loads((results.search_dir / described["file"]).read_bytes())
        images = handle.load()[0]
        return handle, {"bit_depth": 16 if getattr(images, "dtype", None) == np.uint16 else 8}
    data_path = data_path or _setting_path(results.settings, "data")
    if not data_path:
        raise SearchError(f"{results.search_dir / 'search.json'} names no data path; pass --data PREPARED")
    prepared = load_prepared(data_path)
    return make_handle(prepared.root), dict(prepared.summary, root=str(prepared.root))


def train_final(name, *, out_dir=None, config_id: str | None = None, epochs: int | None = None,
                data_path=None, weights_dir=None, model_dir=None, n_bootstrap: int = 1000,
                registered_name: str | None = None) -> FinalOutcome:
    """Train, score on the test part, save, log and register; see the module docstring."""
    from search.results import load_search
    from trainables.train import fit_fold

    results = load_search(name, out_dir)
    chosen = choose_config(results.table, config_id)
    config = results.config(chosen)
    if epochs is not None:
        if epochs < 1:
            raise SearchError(f"--epochs must be at least 1, got {epochs}")
        config["epochs"] = int(epochs)
    inner, summary = _search_data(results, data_path)
    _, _, manifest, categories = inner.load()
    if "split" not in manifest or not (manifest["split"] == "test").any():
        raise SearchError(f"the search's dataset ({summary.get('root', data_path)}) has no test rows "
                          "(split == 'test'): assign folds with a test fraction above 0 (`cxrtune folds`)")
    weights_dir = weights_dir or _setting_path(results.settings, "weights_dir")
    trial_config = dict(config, fold=FinalSplit.TEST_FOLD, n_classes=len(categories),
                        checkpoint_every=config["epochs"])
    if weights_dir:
        trial_config["weights_dir"] = str(Path(weights_dir).resolve())

    handle = FinalSplit(inner)
    history: list[dict] = []
    scratch = Path(tempfile.mkdtemp(prefix="cxrtune-final-"))
    try:
        model = fit_fold(trial_config, handle, report=lambda metrics, _checkpoint: history.append(dict(metrics)),
                         checkpoint_root=scratch)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    y_true, y_score = _test_predictions(model, handle, trial_config)
    from search.evaluation.auc import score_test_set

    metrics = score_test_set(y_true, y_score, categories, n_resamples=n_bootstrap, seed=int(config["seed"]))
    model_dir = Path(model_dir) if model_dir else results.search_dir / "final" / chosen
    model_path = save_final_model(model, model_dir, config=config, categories=categories,
                                  summary=summary, metrics=metrics, search_name=results.name)
    outcome = FinalOutcome(config, model_path, metrics, history=history)
    # Evaluated before registering: the thresholds and temperatures it writes into model.json then travel
    # inside the registered MLflow model.
    outcome.clinical = clinical_evaluation(outcome, results, summary, n_bootstrap=n_bootstrap)
    from search.final_mlflow import log_and_register, log_clinical_evaluation

    log_and_register(outcome, results, registered_name or f"cxrtune-{results.name}",
                     n_train=int((manifest["split"] == "cv").sum()))
    log_clinical_evaluation(outcome, results)
    return outcome


def _test_predictions(model, handle: FinalSplit, config: dict):
    """(labels, probabilities) of the test rows, through the trials' evaluation pipeline."""
    from data.pipeline import make_dataset
    from trainables.backbones import get_backbone

    images_or_paths, labels, manifest, _ = handle.load()
    rows = np.flatnonzero((manifest["fold"] == FinalSplit.TEST_FOLD).to_numpy())
    test_x = images_or_paths[rows] if isinstance(images_or_paths, np.ndarray) else [images_or_paths[i] for i in rows]
    test_y = np.asarray(labels)[rows]
    dataset = make_dataset(test_x, test_y, image_size=config["image_size"], batch_size=config["batch_size"],
                           preprocessing=get_backbone(config["backbone"]).preprocessing, training=False,
                           seed=int(config["seed"]))
    return test_y, np.asarray(model.predict(dataset, verbose=0))


def save_final_model(model, model_dir: Path, *, config: dict, categories: list[str], summary: dict,
                     metrics: dict, search_name: str) -> Path:
    """model.keras + model.json (what predict needs: categories, image size, bit depth, preprocessing)."""
    from trainables.backbones import get_backbone

    model_dir.mkdir(parents=True, exist_ok=True)
    model_path = model_dir / MODEL_FILE
    model.save(model_path)
    sidecar = {
        "format": SIDECAR_FORMAT,
        "categories": list(categories),
        "image_size": int(config["image_size"]),
        "bit_depth": int(summary.get("bit_depth", 8)),
        "preprocessing": get_backbone(config["backbone"]).preprocessing,
        "backbone": config["backbone"],
        "config": config,
        "search": search_name,
        "taxonomy": summary.get("taxonomy"),
        # Categories prepare left out (the study's least-class drop among them): the model cannot predict them.
        "dropped_categories": summary.get("dropped_categories", {}),
        "least_class_dropped": summary.get("least_class_dropped"),
        "test_metrics": metrics,
    }
    (model_dir / SIDECAR_FILE).write_text(json.dumps(sidecar, indent=2, default=float) + "\n")
    return model_path


def clinical_evaluation(outcome: FinalOutcome, results, summary: dict, *, n_bootstrap: int):
    """`cxrtune evaluate` on the test part (thresholds and temperatures saved into model.json); a one-line
    reason (str) instead when it cannot run, since the model is already saved."""
    from data.errors import DataError
    from search.evaluation.clinical import evaluate_model

    if not summary.get("root"):
        return "clinical evaluation skipped: the search's data has no prepared path (run `cxrtune evaluate --data`)"
    try:
        clinical = evaluate_model(outcome.model_path, summary["root"], split="test", n_bootstrap=max(10, n_bootstrap),
                                  seed=int(outcome.config["seed"]), search_dir=results.search_dir,
                                  val_predictions=_search_validation_predictions(results, outcome.config.get("config_id")))
    except (SearchError, DataError) as error:
        return f"clinical evaluation skipped: {error}"
    return clinical


def _search_validation_predictions(results, config_id: str | None):
    """The chosen config's pooled out-of-fold validation predictions (one column per category), on which the
    evaluation chooses thresholds and temperatures; None (evaluate's own validation fold) when its folds saved
    none, e.g. a search from before they were saved."""
    import pandas as pd

    from search.results import load_oof_predictions

    if config_id is None:
        return None
    try:
        oof = load_oof_predictions(results, config_id)
    except SearchError:
        return None
    frame = pd.DataFrame(oof.probability.astype("float64"), columns=oof.categories)
    frame.insert(0, "image_id", oof.image_id.astype(str))
    return frame
