"""Cost-vs-accuracy Pareto fronts over a fold table: the flag, the plot, the exported files.

A config is on the front when no other config is at least as good on every objective and strictly
better on one. Maximised objectives are negated so that everything is minimised, and one numpy
comparison of every pair of configs gives the dominance mask (configs: hundreds at most, so the
n x n x k boolean array stays small). Equal points do not dominate each other: duplicates on the
front are all on it. A config with a missing (NaN) objective value is never on the front and
dominates nothing.
"""
from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd

from search.errors import SearchError

DIRECTIONS = ("max", "min")
FRONT_FILES = {"csv": "pareto.csv", "json": "pareto.json", "png": "pareto.png"}


def parse_objectives(text: str) -> dict[str, str]:
    """`"cv_val_auc_mean:max,trainable_params:min"` -> {"cv_val_auc_mean": "max", ...}."""
    objectives: dict[str, str] = {}
    for item in (part.strip() for part in text.split(",")):
        name, _, direction = item.rpartition(":")
        if not name or direction.lower() not in DIRECTIONS:
            raise SearchError(
                f"objective {item!r} in {text!r} is not COLUMN:max or COLUMN:min "
                "(e.g. cv_val_auc_mean:max,trainable_params:min)"
            )
        objectives[name.strip()] = direction.lower()
    return objectives


def check_objectives(table: pd.DataFrame, objectives: dict[str, str]) -> dict[str, str]:
    """The objectives with lower-cased directions, or a SearchError that lists what is accepted."""
    if len(objectives) < 2:
        raise SearchError(
            f"a Pareto front needs two or more objectives, got {dict(objectives)}"
        )
    available = [name for name in table.columns if pd.api.types.is_numeric_dtype(table[name])
                 and not pd.api.types.is_bool_dtype(table[name])]
    unknown = [name for name in objectives if name not in available]
    if unknown:
        raise SearchError(
            f"unknown objective column(s) {', '.join(unknown)}; available: {', '.join(available)}"
        )
    bad = {name: way for name, way in objectives.items() if str(way).lower() not in DIRECTIONS}
    if bad:
        raise SearchError(f"objective direction(s) {bad} must be 'max' or 'min'")
    return {name: str(way).lower() for name, way in objectives.items()}


def dominated_mask(costs: np.ndarray) -> np.ndarray:
    """Row i is True when some row j is <= it everywhere and < it somewhere (all minimised)."""
    no_worse = (costs[:, None, :] <= costs[None, :, :]).all(axis=2)   # [j, i]: j no worse than i
    better = (costs[:, None, :] < costs[None, :, :]).any(axis=2)      # [j, i]: j better somewhere
    return (no_worse & better).any(axis=0)


def pareto_front(table: pd.DataFrame, objectives: dict[str, str]) -> pd.DataFrame:
    """A copy of `table` with a boolean `on_front` column for the given objectives (name -> max|min)."""
    objectives = check_objectives(table, objectives)
    values = table[list(objectives)].to_numpy(dtype=float)
    signs = np.array([-1.0 if way == "max" else 1.0 for way in objectives.values()])
    costs = values * signs
    usable = ~np.isnan(costs).any(axis=1)
    on_front = np.zeros(len(table), dtype=bool)
    on_front[usable] = ~dominated_mask(costs[usable])
    result = table.copy()
    result["on_front"] = on_front
    return result


def point_label(row: pd.Series, *, with_backbone: bool = False) -> str:
    """`B conv3 imagenet`, `A imagenet`, `D`: method, frozen depth, source weights (and backbone when several)."""
    parts = [str(row.get(name, "")) for name in ("method", "freeze", "source_weights")]
    if with_backbone:
        parts.insert(0, str(row.get("backbone", "")))
    # "all" (A's depth) and "none" (C/D depth, D weights) say nothing the method letter does not.
    return " ".join(part for part in parts if part and part not in ("nan", "none", "all"))


def _error_column(table: pd.DataFrame, name: str) -> np.ndarray | None:
    """Fold std as error bars: `cv_x_mean` pairs with `cv_x_std` when the table has it."""
    if name.endswith("_mean") and name[: -len("_mean")] + "_std" in table:
        return np.nan_to_num(table[name[: -len("_mean")] + "_std"].to_numpy(dtype=float))
    return None


def _spans_decades(values: pd.Series) -> bool:
    """Log axis for positive values over 1.5+ decades (parameters: A thousands, C millions)."""
    values = values.dropna()
    return bool(len(values)) and values.min() > 0 and values.max() / values.min() > 30


def fidelity_label(row) -> str:
    """`full budget`; `folds ended: 1/2` while folds are missing; or how far a config the scheduler stopped got:
    `stopped: epoch 1 of 30`."""
    if bool(row.get("full_budget", True)):
        return "full budget"
    if not bool(row.get("all_folds_ended", True)):
        return f"folds ended: {row.get('n_folds_done', 0):.0f}/{row.get('n_folds', 0):.0f}"
    low, high, planned = (row.get(name) for name in ("epochs_trained_min", "epochs_trained_max", "epochs"))
    reached = "?" if pd.isna(high) else (f"{low:.0f}-{high:.0f}" if low != high else f"{high:.0f}")
    return f"stopped: epoch {reached} of {'?' if pd.isna(planned) else f'{planned:.0f}'}"


def front_over_full_budget(table: pd.DataFrame, objectives: dict[str, str], *, all_configs: bool = False) -> pd.DataFrame:
    """The front of the full-budget configs; with `all_configs` the others are added, never on the front,
    and marked by `fidelity`. A table without `full_budget` counts every config as full-budget."""
    full = table["full_budget"].astype(bool) if "full_budget" in table else pd.Series(True, index=table.index)
    if not full.any() and not all_configs:
        raise SearchError("no config has trained every fold for every epoch yet (full budget); "
                          "pass --all-configs to see the others, marked with the epoch they reached")
    flagged = pareto_front(table[full] if full.any() else table, objectives)
    if all_configs and full.any():
        flagged = pd.concat([flagged, table[~full].assign(on_front=False)]).reindex(table.index)
    flagged["fidelity"] = flagged.apply(fidelity_label, axis=1) if len(flagged) else []
    return flagged


def _draw_points(axis, flagged: pd.DataFrame, x_name: str, y_name: str) -> None:
    """Dominated, front, front tied with a better-AUC point (hollow), stopped early (x); bars: fold std, or
    the 95% interval of the pooled out-of-fold AUC on the AUC axis when known."""
    stopped = flagged["fidelity"].ne("full budget") if "fidelity" in flagged else pd.Series(False, index=flagged.index)
    tied = flagged["tied_with_better"].fillna(False).astype(bool) if "tied_with_better" in flagged else stopped & False
    on_front = flagged["on_front"].astype(bool)
    styles = (
        (~on_front & ~stopped, dict(color="0.6", marker="o", label="dominated")),
        (on_front & ~tied, dict(color="tab:red", marker="D", label="Pareto front")),
        (on_front & tied, dict(color="tab:red", marker="D", markerfacecolor="none",
                               label=f"front, tied with a better-AUC point (p >= 0.05)")),
        (stopped, dict(color="tab:orange", marker="x", label="stopped early (epoch reached in its label)")),
    )
    intervals = y_name == "cv_val_auc_mean" and "auc_ci_low" in flagged and flagged["auc_ci_low"].notna().any()
    for mask, style in styles:
        part = flagged[mask]
        if part.empty:
            continue
        yerr = None if intervals else _error_column(part, y_name)
        axis.errorbar(part[x_name], part[y_name], xerr=_error_column(part, x_name), yerr=yerr,
                      linestyle="none", capsize=3, **style)
        if intervals:  # the pooled OOF interval's extent below and above its estimate, around the plotted mean
            centre = part[y_name]
            axis.vlines(part[x_name], centre - (part["oof_auc"] - part["auc_ci_low"]),
                        centre + (part["auc_ci_high"] - part["oof_auc"]), color=style["color"], alpha=0.6)


def plot_front(table: pd.DataFrame, objectives: dict[str, str], path, *, note: str | None = None) -> Path:
    """Scatter every config on each pair of objectives, front highlighted; writes a PNG at `path`."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    flagged = table if "on_front" in table else pareto_front(table, objectives)
    objectives = check_objectives(flagged, objectives)
    names = list(objectives)
    pairs = [(x, y) for i, x in enumerate(names) for y in names[i + 1:]]
    # Cost on x, accuracy on y: a maximised objective goes up the page when paired with a minimised one.
    pairs = [(y, x) if objectives[x] == "max" and objectives[y] == "min" else (x, y) for x, y in pairs]
    with_backbone = "backbone" in flagged and flagged["backbone"].nunique() > 1
    figure, axes = plt.subplots(1, len(pairs), figsize=(7 * len(pairs), 5.8), squeeze=False)
    for axis, (x_name, y_name) in zip(axes[0], pairs):
        _draw_points(axis, flagged, x_name, y_name)
        front = flagged[flagged["on_front"].astype(bool)].sort_values(x_name)
        if len(names) == 2 and len(front) > 1:
            axis.plot(front[x_name], front[y_name], color="tab:red", linewidth=1, alpha=0.6)
        for _, row in flagged.iterrows():
            if pd.notna(row[x_name]) and pd.notna(row[y_name]):
                label = point_label(row, with_backbone=with_backbone)
                if row.get("fidelity", "full budget") != "full budget":
                    label += f" @{row.get('epochs_trained_max', float('nan')):.0f}ep"
                axis.annotate(label, (row[x_name], row[y_name]), textcoords="offset points", xytext=(4, 4), fontsize=7)
        axis.set_xlabel(f"{x_name} ({objectives[x_name]})")
        axis.set_ylabel(f"{y_name} ({objectives[y_name]})")
        if _spans_decades(flagged[x_name]):
            axis.set_xscale("log")
        if _spans_decades(flagged[y_name]):
            axis.set_yscale("log")
        axis.grid(alpha=0.3)
        axis.legend(loc="best", fontsize=8)
    figure.suptitle("Configs by " + " vs ".join(names))
    intervals = "auc_ci_low" in flagged and flagged["auc_ci_low"].notna().any()
    caption = [("AUC bars: 95% patient-bootstrap interval of the pooled out-of-fold AUC, drawn around each point"
                if intervals else "bars: fold std") + "; front of the full-budget configs"]
    caption += [note] if note else []
    stopped = int((flagged.get("fidelity", pd.Series(dtype=str)) != "full budget").sum())
    if stopped:
        caption.append(f"x: {stopped} config(s) the scheduler stopped early, at the epoch shown: never on the front")
    figure.text(0.01, 0.01, "\n".join(caption), fontsize=7)
    figure.tight_layout(rect=(0, 0.02 + 0.02 * len(caption), 1, 1))
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=120)
    plt.close(figure)
    return path


def _plain(value):
    """JSON-safe scalar: numpy types to Python, NaN to null."""
    if isinstance(value, (np.generic,)):
        value = value.item()
    if isinstance(value, float) and math.isnan(value):
        return None
    return value


def export_front(table: pd.DataFrame, objectives: dict[str, str], directory, *,
                 note: str | None = None) -> dict[str, Path]:
    """Write pareto.csv, pareto.json and pareto.png (every config, its values, `on_front`); a table that
    already has `on_front` (front_over_full_budget, add_uncertainty) is written as it is."""
    flagged = table if "on_front" in table else front_over_full_budget(table, objectives)
    objectives = check_objectives(flagged, objectives)
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    paths = {kind: directory / name for kind, name in FRONT_FILES.items()}
    flagged.to_csv(paths["csv"], index=False)
    document = {
        "objectives": objectives,
        "n_configs": len(flagged),
        "n_on_front": int(flagged["on_front"].sum()),
        "front_of": "full-budget configs (every fold trained every epoch)",
        "note": note,
        "configs": [{key: _plain(value) for key, value in record.items()}
                    for record in flagged.to_dict(orient="records")],
    }
    paths["json"].write_text(json.dumps(document, indent=2) + "\n")
    plot_front(flagged, objectives, paths["png"], note=note)
    return paths
