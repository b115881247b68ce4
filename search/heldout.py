"""`cxrtune report NAME --test`: the study's own tables, each fold's final model scored on the test part.

The study reports, per backbone x method x source weights (x frozen depth), accuracy and AUC as mean ± std
over its 5 fold models, each evaluated on the held-out test part. Here every full-budget config's fold
models (the latest checkpoint of each fold trial: the weights after its last epoch) predict the test rows;
per fold model: binary accuracy (threshold 0.5, over every image x category) and macro AUC (scikit-learn,
over the categories with both classes in the test part). Cells: mean ± std (sample std, ddof=1) over the
fold models. Nothing is selected on these numbers: configs, fronts and train-final stay on validation.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from search.errors import SearchError

TEST_METRICS = {"test_binary_accuracy": "binary accuracy", "test_auc": "AUC"}
SELECTION_LINE = ("Test part: scored once per fold model for these tables only; selection, fronts and "
                  "train-final use the validation folds.")


def _test_rows(handle):
    """(images or paths, labels, categories) of the rows with split == 'test'."""
    images_or_paths, labels, manifest, categories = handle.load()
    rows = np.flatnonzero((manifest["split"] == "test").to_numpy()) if "split" in manifest else np.array([], int)
    if not len(rows):
        raise SearchError("the search's dataset has no test rows (split == 'test'): assign folds with a test "
                          "fraction above 0 (`cxrtune folds`), or pass --data with one that has")
    if isinstance(images_or_paths, np.ndarray):
        return images_or_paths[rows], np.asarray(labels)[rows], list(categories)
    return [images_or_paths[i] for i in rows], np.asarray(labels)[rows], list(categories)


def fold_model_predictions(config: dict, checkpoint: Path, test_x, test_y, n_classes: int) -> np.ndarray:
    """Probabilities of one fold model (rebuilt from its config, weights from its checkpoint) on the test rows."""
    import keras

    from data.pipeline import make_dataset
    from trainables.backbones import get_backbone
    from trainables.checkpoint import restore_checkpoint
    from trainables.config import check_config
    from trainables.model import build_model

    config = check_config(dict(config, n_classes=n_classes))
    model = build_model(config, load_weights=False)  # every weight comes from the checkpoint
    model.compile(optimizer=keras.optimizers.Adam(learning_rate=config["learning_rate"]), loss="binary_crossentropy")
    restore_checkpoint(model, checkpoint, config=config)
    dataset = make_dataset(test_x, test_y, image_size=config["image_size"], batch_size=config["batch_size"],
                           preprocessing=get_backbone(config["backbone"]).preprocessing, training=False,
                           seed=int(config["seed"]))
    return np.asarray(model.predict(dataset, verbose=0))


def score_fold_models(results, *, data_path=None) -> pd.DataFrame:
    """One row per (full-budget config, fold model): test_binary_accuracy and test_auc."""
    from search.evaluation.auc import macro_auc
    from search.final import _search_data
    from search.results import fold_checkpoint

    full = results.table[results.table["full_budget"].astype(bool)]
    if full.empty:
        raise SearchError(f"no config of search {results.name!r} has trained every fold for every epoch yet: "
                          "--test scores full-budget configs only")
    handle, _ = _search_data(results, data_path)
    test_x, test_y, categories = _test_rows(handle)
    rows = []
    for config_id in full["config_id"]:
        config = results.config(str(config_id))
        for fold in sorted(results.trials.loc[results.trials["config_id"] == config_id, "fold"].astype(int).unique()):
            scores = fold_model_predictions(dict(config, fold=fold), fold_checkpoint(results, str(config_id), fold),
                                            test_x, test_y, len(categories))
            rows.append({"config_id": str(config_id), "fold": fold, "test_images": len(test_y),
                         "test_binary_accuracy": float(((scores >= 0.5) == (test_y >= 0.5)).mean()),
                         "test_auc": macro_auc(test_y, scores)})
    return pd.DataFrame(rows)


def heldout_cells(results, per_fold: pd.DataFrame) -> pd.DataFrame:
    """Long form: one row per (config, metric) with mean ± std over its fold models and the study's keys."""
    from search.aggregate import mean_and_std
    from search.report import method_label

    rows = []
    for config_id, group in per_fold.groupby("config_id", sort=False):
        config = results.table.set_index("config_id").loc[config_id]
        for metric in TEST_METRICS:
            mean, std = mean_and_std(group[metric].tolist())
            rows.append({"backbone": config["backbone"], "metric": metric, "source_weights": config["source_weights"],
                         "method": method_label(config), "mean": mean, "std": std, "n_fold_models": len(group),
                         "config_id": config_id, "cv_val_auc_mean": config["cv_val_auc_mean"]})
    cells = pd.DataFrame(rows)
    # One config per cell, as the validation tables: the best by validation AUC (never by test AUC).
    cells = cells.sort_values("cv_val_auc_mean", ascending=False, kind="stable")
    cells["n_configs_in_cell"] = cells.groupby(["backbone", "metric", "source_weights", "method"])["config_id"].transform("size")
    return cells.drop_duplicates(["backbone", "metric", "source_weights", "method"]).reset_index(drop=True)


def write_test_tables(results, directory, *, data_path=None) -> dict[str, Path]:
    """Score the fold models, write test_table.csv (long, one row per cell), test_folds.csv and test_report.md."""
    from search.report import BACKBONE_ORDER, METHOD_ORDER, WEIGHTS_ORDER, _ordered, mean_std, to_markdown

    per_fold = score_fold_models(results, data_path=data_path)
    cells = heldout_cells(results, per_fold)
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    lines = [f"# Search `{results.name}`: test part, mean ± std over the fold models (sample std)", "",
             SELECTION_LINE, ""]
    for backbone in _ordered(cells["backbone"], BACKBONE_ORDER):
        for metric, title in TEST_METRICS.items():
            part = cells[(cells["backbone"] == backbone) & (cells["metric"] == metric)]
            wide = part.assign(cell=[mean_std(m, s) for m, s in zip(part["mean"], part["std"])]).pivot(
                index="source_weights", columns="method", values="cell")
            wide = wide.reindex(index=_ordered(part["source_weights"], WEIGHTS_ORDER),
                                columns=_ordered(part["method"], METHOD_ORDER)).fillna("")
            wide.index.name, wide.columns.name = "source weights", None
            lines += [f"## {backbone}: test {title}", "", to_markdown(wide), ""]
    paths = {"test_markdown": directory / "test_report.md", "test_csv": directory / "test_table.csv",
             "test_folds_csv": directory / "test_folds.csv"}
    paths["test_markdown"].write_text("\n".join(lines))
    cells.to_csv(paths["test_csv"], index=False)
    per_fold.to_csv(paths["test_folds_csv"], index=False)
    return paths
