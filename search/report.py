"""The study's tables from a fold table: source weights x method, one per backbone and metric.

A cell is `mean ± std` over folds (sample std). When several configs fall in one cell (a search
that also varied, say, the learning rate) the cell shows the best of them by `cv_val_auc_mean` and
the long CSV says how many there were. Only full-budget configs (every fold trained every epoch) are
shown by default; with `all_configs` the others are too, marked `†` with the epoch they reached.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from spaces import vocabulary

STUDY_METRICS = {"val_binary_accuracy": "binary accuracy", "val_auc": "AUC"}
# The study's order of tables (backbones), rows (source weights) and columns (method, frozen depth):
# the vocabulary's order, so a backbone, source or stage added there is placed here too.
BACKBONE_ORDER = tuple(vocabulary.BACKBONES)
WEIGHTS_ORDER = (*vocabulary.SOURCES, vocabulary.NO_SOURCE)
METHOD_ORDER = tuple(label for name, method in vocabulary.METHODS.items()
                     for label in ([f"{name} {stage}" for stage in vocabulary.FREEZE_STAGES]
                                   if method.freeze is None else [name]))
INCOMPLETE_MARK = "†"
FIRST_EPOCH_MARK = "*"  # a cost measured on a first epoch only (graph tracing included): not steady


def fidelity_mark(row) -> str:
    """'' for a full-budget config, else ` † (stopped: epoch 1 of 30)` or ` † (folds ended: 1/2)`."""
    if bool(row.get("full_budget", True)):
        return ""
    from search.pareto import fidelity_label

    return f" {INCOMPLETE_MARK} ({fidelity_label(row)})"


def method_label(row) -> str:
    """`A`, `B conv3`, `C`, `D`: the study's column for a config."""
    method = vocabulary.METHODS.get(str(row["method"]))
    return f"{row['method']} {row['freeze']}" if method and method.freeze is None else str(row["method"])


def config_label(row) -> str:
    """`resnet50 B conv3 imagenet`: one config in words (D: `resnet50 D random init`)."""
    weights = "random init" if row["source_weights"] == vocabulary.NO_SOURCE else row["source_weights"]
    return f"{row['backbone']} {method_label(row)} {weights}"


def mean_std(mean, std, digits: int = 3) -> str:
    if pd.isna(mean):
        return ""
    return f"{mean:.{digits}f}" if pd.isna(std) else f"{mean:.{digits}f} ± {std:.{digits}f}"


def _ordered(values, order) -> list:
    known = [value for value in order if value in set(values)]
    return known + sorted(set(values) - set(order))


def study_cells(table: pd.DataFrame) -> pd.DataFrame:
    """Long form: one row per (backbone, metric, source weights, method) cell with its best config."""
    ranked = table.sort_values("cv_val_auc_mean", ascending=False, na_position="last", kind="stable")
    ranked = ranked.assign(method_label=ranked.apply(method_label, axis=1))
    rows = []
    for (backbone, weights, method), group in ranked.groupby(
            ["backbone", "source_weights", "method_label"], sort=False):
        best = group.iloc[0]
        for metric in STUDY_METRICS:
            rows.append({
                "backbone": backbone, "metric": metric, "source_weights": weights, "method": method,
                "mean": best.get(f"cv_{metric}_mean", np.nan), "std": best.get(f"cv_{metric}_std", np.nan),
                "n_folds_done": best["n_folds_done"], "full_budget": bool(best.get("full_budget", True)),
                "mark": fidelity_mark(best),
                "config_id": best["config_id"], "n_configs_in_cell": len(group),
            })
    return pd.DataFrame(rows)


def study_table(cells: pd.DataFrame, backbone: str, metric: str) -> pd.DataFrame:
    """Wide form of one backbone and metric: rows source weights, columns methods, cells `mean ± std`."""
    part = cells[(cells["backbone"] == backbone) & (cells["metric"] == metric)]
    text = part.apply(
        lambda row: mean_std(row["mean"], row["std"]) + row["mark"],
        axis=1,
    ) if not part.empty else pd.Series(dtype=str)
    wide = part.assign(cell=text).pivot(index="source_weights", columns="method", values="cell")
    wide = wide.reindex(index=_ordered(part["source_weights"], WEIGHTS_ORDER),
                        columns=_ordered(part["method"], METHOD_ORDER)).fillna("")
    wide.index.name, wide.columns.name = "source weights", None
    return wide


def per_class_table(table: pd.DataFrame, categories: list[str]) -> pd.DataFrame:
    """One row per config, one `mean ± std` AUC column per category (best configs first)."""
    rows = []
    for _, row in table.iterrows():
        cells = {"config": config_label(row) + fidelity_mark(row), "config_id": row["config_id"],
                 "macro": mean_std(row.get("cv_val_auc_mean"), row.get("cv_val_auc_std"))}
        for category in categories:
            cells[category] = mean_std(row.get(f"cv_val_auc_{category}_mean"),
                                       row.get(f"cv_val_auc_{category}_std"))
        rows.append(cells)
    return pd.DataFrame(rows)


def to_markdown(frame: pd.DataFrame, *, index: bool = True) -> str:
    """A GitHub Markdown table (pandas' own needs the optional `tabulate` package)."""
    frame = frame.reset_index() if index else frame
    header = [str(name) for name in frame.columns]
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    for values in frame.itertuples(index=False):
        lines.append("| " + " | ".join(str(value).replace("|", "\\|") for value in values) + " |")
    return "\n".join(lines)


def shown_configs(table: pd.DataFrame, all_configs: bool) -> pd.DataFrame:
    """Full-budget configs, or every config with `all_configs` (a SearchError when none would be shown)."""
    from search.errors import SearchError

    if all_configs or "full_budget" not in table:
        return table
    full = table[table["full_budget"].astype(bool)]
    if full.empty:
        raise SearchError("no config has trained every fold for every epoch yet (full budget); pass --all-configs "
                          "to see the others, marked with the epoch they reached")
    return full


def write_report(results, directory, *, all_configs: bool = False) -> dict[str, Path]:
    """Write report.md, study_tables.csv (long), per_class_auc.csv and fold_table.csv into `directory`."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    table = shown_configs(results.table, all_configs)
    hidden = len(results.table) - len(table)
    cells = study_cells(table)
    per_class = per_class_table(table, results.categories)
    n_folds = int(table["n_folds"].max()) if len(table) else 0
    lines = [f"# Search `{results.name}`: fold-aggregated results", "",
             f"{len(table)} configs, {n_folds} folds; cells are mean ± std over folds (sample std) of the "
             "validation folds (selection and fronts use validation only). "
             + (f"{hidden} config(s) the scheduler stopped early are left out (--all-configs shows them)."
                if hidden else f"{INCOMPLETE_MARK} marks a config not trained to full budget, with the epoch it reached."),
             ""]
    for backbone in _ordered(cells["backbone"], BACKBONE_ORDER):
        for metric, title in STUDY_METRICS.items():
            lines += [f"## {backbone}: validation {title}", "", to_markdown(study_table(cells, backbone, metric)), ""]
    if len(cells) and int(cells["n_configs_in_cell"].max()) > 1:
        lines += ["Cells with several configs show the best by cv_val_auc_mean (see study_tables.csv).", ""]
    lines += ["## Per-class validation AUC", "", to_markdown(per_class.drop(columns="config_id"), index=False), ""]
    paths = {"markdown": directory / "report.md", "study_csv": directory / "study_tables.csv",
             "per_class_csv": directory / "per_class_auc.csv", "fold_table_csv": directory / "fold_table.csv"}
    paths["markdown"].write_text("\n".join(lines))
    cells.to_csv(paths["study_csv"], index=False)
    per_class.to_csv(paths["per_class_csv"], index=False)
    results.table.to_csv(paths["fold_table_csv"], index=False)  # every config, with its fidelity columns
    return paths


def summary_lines(table: pd.DataFrame) -> list[str]:
    """The fold table in a terminal: one line per config, best first."""
    lines = [f"{'config':<44} {'folds':>5} {'epochs':>6}  {'val AUC':>15}  {'bin. acc.':>15}  {'trainable':>11}  "
             f"{'s/epoch':>7}{'  OOF AUC [95% CI]':>26}"]
    for _, row in table.iterrows():
        folds = f"{int(row['n_folds_done'])}/{int(row['n_folds'])}"
        params = row.get("trainable_params", np.nan)
        seconds = row.get("steady_epoch_time_s", np.nan)
        cost = "" if pd.isna(seconds) else f"{seconds:.1f}"
        if not cost and not pd.isna(row.get("first_epoch_time_s", np.nan)):
            cost = f"{row['first_epoch_time_s']:.1f}{FIRST_EPOCH_MARK}"
        epochs = row.get("epochs_trained_max", np.nan)
        epochs = "" if pd.isna(epochs) else f"{epochs:.0f}" + ("" if bool(row.get("full_budget", True)) else INCOMPLETE_MARK)
        interval = ""
        if not pd.isna(row.get("auc_ci_low", np.nan)):
            tie = "  tied" if bool(row.get("tied_with_better", False)) else ""
            interval = f"{row['oof_auc']:.3f} [{row['auc_ci_low']:.3f}, {row['auc_ci_high']:.3f}]{tie}"
        lines.append(
            f"{config_label(row):<44} {folds:>5} {epochs:>6}  "
            f"{mean_std(row.get('cv_val_auc_mean'), row.get('cv_val_auc_std')):>15}  "
            f"{mean_std(row.get('cv_val_binary_accuracy_mean'), row.get('cv_val_binary_accuracy_std')):>15}  "
            f"{'' if pd.isna(params) else f'{params:,.0f}':>11}  {cost:>7}  {interval:>24}"
        )
    if (table.get("cost_from_first_epoch", pd.Series(dtype=bool)).fillna(False).astype(bool)).any():
        lines.append(f"{FIRST_EPOCH_MARK} first epoch only (graph tracing included): not a steady cost")
    if "full_budget" in table and not table["full_budget"].astype(bool).all():
        lines.append(f"{INCOMPLETE_MARK} stopped early by the scheduler: epochs is the most any fold reached")
    return lines
