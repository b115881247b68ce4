"""pareto_front against brute force and hand-made tables; the plot and the exported files."""
from __future__ import annotations

import itertools
import json

import numpy as np
import pandas as pd
import pytest

from search.errors import SearchError
from search.pareto import export_front, parse_objectives, pareto_front, plot_front


def brute_force_front(values: np.ndarray, directions: list[str]) -> list[bool]:
    """Straight from the definition, one pair at a time."""
    def better_or_equal(a, b, way):
        return a >= b if way == "max" else a <= b

    def strictly_better(a, b, way):
        return a > b if way == "max" else a < b

    flags = []
    for i, point in enumerate(values):
        dominated = False
        for j, other in enumerate(values):
            if i == j:
                continue
            if all(better_or_equal(o, p, w) for o, p, w in zip(other, point, directions)) and any(
                strictly_better(o, p, w) for o, p, w in zip(other, point, directions)
            ):
                dominated = True
                break
        flags.append(not dominated)
    return flags


@pytest.mark.parametrize("seed", range(12))
def test_matches_brute_force_on_random_tables_with_ties_and_duplicates(seed):
    rng = np.random.default_rng(seed)
    n_rows = int(rng.integers(1, 40))
    n_objectives = int(rng.integers(2, 5))
    # Few distinct values per column: many ties, and duplicated rows.
    values = rng.integers(0, 4, size=(n_rows, n_objectives)).astype(float)
    values = np.vstack([values, values[: n_rows // 3]])
    directions = [str(way) for way in rng.choice(["max", "min"], size=n_objectives)]
    names = [f"objective_{k}" for k in range(n_objectives)]
    table = pd.DataFrame(values, columns=names)

    flagged = pareto_front(table, dict(zip(names, directions)))

    assert flagged["on_front"].tolist() == brute_force_front(values, directions)
    assert flagged["on_front"].any()  # a non-empty finite set always has a front
    pd.testing.assert_frame_equal(flagged.drop(columns="on_front"), table)


def test_hand_made_table_known_front():
    table = pd.DataFrame({
        "config_id": list("abcdef"),
        "cv_val_auc_mean": [0.90, 0.80, 0.85, 0.90, 0.70, 0.90],
        "trainable_params": [1e6, 1e3, 1e6, 2e6, 1e3, 1e6],
    })
    flagged = pareto_front(table, {"cv_val_auc_mean": "max", "trainable_params": "min"})
    # a and f are equal and best on AUC at 1e6 params; b is smallest with better AUC than e;
    # c is beaten by a, d by a (same AUC, more params), e by b (same params, lower AUC).
    assert flagged.set_index("config_id")["on_front"].to_dict() == {
        "a": True, "b": True, "c": False, "d": False, "e": False, "f": True}


def test_missing_values_are_never_on_the_front_and_dominate_nothing():
    table = pd.DataFrame({"auc": [0.9, np.nan, 0.5], "seconds": [10.0, 1.0, 20.0]})
    flagged = pareto_front(table, {"auc": "max", "seconds": "min"})
    assert flagged["on_front"].tolist() == [True, False, False]
    only_nan = pareto_front(table.iloc[[1]], {"auc": "max", "seconds": "min"})
    assert not only_nan["on_front"].any()


def test_unknown_objective_lists_available_columns_in_one_line():
    table = pd.DataFrame({"config_id": ["a"], "cv_val_auc_mean": [0.5], "trainable_params": [10]})
    with pytest.raises(SearchError) as caught:
        pareto_front(table, {"cv_val_auc_mean": "max", "params": "min"})
    message = str(caught.value)
    assert "params" in message and "available: cv_val_auc_mean, trainable_params" in message
    assert "\n" not in message
    with pytest.raises(SearchError, match="two or more"):
        pareto_front(table, {"cv_val_auc_mean": "max"})
    with pytest.raises(SearchError, match="'max' or 'min'"):
        pareto_front(table, {"cv_val_auc_mean": "up", "trainable_params": "min"})


def test_parse_objectives():
    assert parse_objectives("cv_val_auc_mean:max, trainable_params:MIN") == {
        "cv_val_auc_mean": "max", "trainable_params": "min"}
    for bad in ("cv_val_auc_mean", "cv_val_auc_mean:best", ":max"):
        with pytest.raises(SearchError, match="COLUMN:max"):
            parse_objectives(bad)


def fold_table_like(n_configs=6, seed=0):
    rng = np.random.default_rng(seed)
    methods = ["A", "B", "B", "C", "D", "B"]
    return pd.DataFrame({
        "config_id": [f"{k:010x}" for k in range(n_configs)],
        "backbone": ["resnet50"] * (n_configs - 1) + ["densenet121"],
        "method": [methods[k % len(methods)] for k in range(n_configs)],
        "freeze": ["all", "conv2", "conv3", "none", "none", "conv4"][:n_configs],
        "source_weights": ["imagenet"] * (n_configs - 2) + ["none", "chestxray8"],
        "cv_val_auc_mean": rng.uniform(0.5, 0.9, n_configs),
        "cv_val_auc_std": rng.uniform(0.0, 0.05, n_configs),
        "trainable_params": rng.integers(1e3, 2e7, n_configs).astype(float),
        "steady_epoch_time_s": rng.uniform(1, 10, n_configs),
    })


def test_plot_front_writes_a_png_for_two_and_three_objectives(tmp_path):
    table = fold_table_like()
    two = plot_front(table, {"cv_val_auc_mean": "max", "trainable_params": "min"}, tmp_path / "two.png")
    three = plot_front(table, {"cv_val_auc_mean": "max", "trainable_params": "min",
                               "steady_epoch_time_s": "min"}, tmp_path / "sub" / "three.png")
    for path in (two, three):
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and path.stat().st_size > 10_000


def test_export_writes_csv_json_png_with_every_config(tmp_path):
    table = fold_table_like()
    table.loc[2, "cv_val_auc_std"] = np.nan
    objectives = {"cv_val_auc_mean": "max", "trainable_params": "min"}
    paths = export_front(table, objectives, tmp_path / "out")

    assert {path.name for path in paths.values()} == {"pareto.csv", "pareto.json", "pareto.png"}
    written = pd.read_csv(paths["csv"], dtype={"config_id": str})
    assert written["config_id"].tolist() == table["config_id"].tolist()
    assert written["on_front"].tolist() == pareto_front(table, objectives)["on_front"].tolist()
    document = json.loads(paths["json"].read_text())
    assert document["objectives"] == objectives
    assert len(document["configs"]) == len(table)
    assert document["n_on_front"] == int(written["on_front"].sum())
    assert document["configs"][2]["cv_val_auc_std"] is None  # NaN -> null, valid JSON


@pytest.mark.parametrize("row, with_backbone, label", [
    ({"method": "A", "freeze": "all", "source_weights": "imagenet"}, False, "A imagenet"),
    ({"method": "B", "freeze": "conv3", "source_weights": "chestxray8", "backbone": "densenet121"}, True,
     "densenet121 B conv3 chestxray8"),
    ({"method": "C", "freeze": "none", "source_weights": "imagenet-I+chestxray8"}, False, "C imagenet-I+chestxray8"),
    ({"method": "D", "freeze": "none", "source_weights": "none"}, False, "D"),
])
def test_point_labels_name_method_depth_and_weights(row, with_backbone, label):
    from search.pareto import point_label

    assert point_label(pd.Series(row), with_backbone=with_backbone) == label
