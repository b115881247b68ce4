"""SearchSettings: what search.json stores, read back by --resume, also from files older versions wrote."""
from __future__ import annotations

import dataclasses
import json

import pytest

from search.errors import SearchError
from search.settings import SearchSettings, augment_views, read_settings, write_settings

# search.json as the search driver wrote it before SearchSettings (a flat dict; no data_mode, no storage).
WRITTEN_BEFORE = {
    "name": "old", "data": {"kind": "prepared", "path": "/data/prepared", "mode": "path"}, "space": "demo",
    "seed": 3, "overrides": {"epochs": 2}, "available_sources": None, "n_configs": 4, "n_folds": 2, "n_trials": 8,
    "categories": ["effusion", "nodule"], "scheduler": "mo-fold-asha",
    "objectives": {"cv_val_auc_mean": "max", "trainable_params": "min"}, "grace_period": 1,
    "reduction_factor": 3, "gpus_per_trial": 0, "cpus_per_trial": 1, "max_concurrent": None, "max_failures": 1,
    "weights_dir": None, "tracking_uri": "sqlite:////runs/mlflow.db", "storage_path": "/runs/old",
    "experiment": "tune", "nodes": 1, "cluster_cpus": 2.0, "cluster_gpus": 0,
    "allow_unauthenticated_tracking": False, "keep_checkpoints": "final", "augment": "random",
}


def test_settings_round_trip_through_search_json_and_older_files_still_load(tmp_path):
    settings = SearchSettings(name="s", n_folds=3, overrides={"epochs": 1}, available_sources=["imagenet"],
                              data={"kind": "handle", "file": "data_handle.pkl"}, categories=["a", "b"])
    write_settings(tmp_path, settings)
    assert read_settings(tmp_path) == settings
    assert "categories" not in settings.mlflow_params() and settings.mlflow_params()["n_folds"] == 3

    old = SearchSettings.from_dict(dict(WRITTEN_BEFORE, a_key_from_a_later_version=1))
    assert {key: getattr(old, key) for key in WRITTEN_BEFORE} == WRITTEN_BEFORE
    assert old.data_mode == "path" and old.storage is None  # the mode lived in data["mode"] then
    with pytest.raises(dataclasses.FrozenInstanceError):
        old.n_folds = 5  # type: ignore[misc]


def test_bad_settings_are_refused_naming_the_flag(tmp_path):
    for wrong in ("never", "views:0", "views:65", "views:two"):
        with pytest.raises(SearchError, match=f"--augment '{wrong}': choose random, off or views:K with K from 1 to 64"):
            SearchSettings(name="s", augment=wrong)
    # What the trials are told: random every epoch (absent), off (0), or K fixed views per image.
    assert [augment_views(SearchSettings(name="s", augment=a).augment) for a in ("random", "off", "views:3")] == [
        None, 0, 3]
    (tmp_path / "search.json").write_text(json.dumps({"name": "s", "n_folds": "x", "seed": [1]})[:20])
    with pytest.raises(SearchError, match="search.json is not a search's settings file"):
        read_settings(tmp_path)
