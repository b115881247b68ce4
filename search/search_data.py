"""The data a search trains on: a PREPARED folder (its folds checked, assigned when missing, and kept in
NAME/folds.csv) or a dataset handle the caller passed (pickled into the search folder for its resume).
"""
from __future__ import annotations

import pickle
from pathlib import Path

from search.errors import SearchError
from search.settings import SearchSettings

FOLDS_FILE = "folds.csv"
HANDLE_FILE = "data_handle.pkl"


def dataset_folds(data_path) -> int | None:
    """How many cv folds a PREPARED dataset already has (None when it has none yet)."""
    from data.manifest import load_prepared

    manifest = load_prepared(data_path).manifest
    if "fold" not in manifest.columns or manifest["fold"].isna().any():
        return None
    return int(manifest.loc[manifest["split"] == "cv", "fold"].nunique()) or None


def prepared_handle(data_path: str, n_folds: int, seed: int, search_dir: Path, data_mode: str):
    """(handle, folds note) for a PREPARED path.

    Folds live in PREPARED/manifest.csv, where trials (PathHandle reads it on each node), `report` and
    `train-final` all find them; a search assigns them there when the data has none, and keeps a copy in
    NAME/folds.csv so that a resumed search can tell whether someone reassigned them meanwhile.
    """
    import pandas as pd

    from data.handle import make_handle
    from data.manifest import load_prepared

    manifest = load_prepared(data_path).manifest
    folds_file = search_dir / FOLDS_FILE
    if "fold" not in manifest.columns or manifest["fold"].isna().any():
        from data.folds import assign_prepared_folds

        manifest, _ = assign_prepared_folds(data_path, n_folds=n_folds, seed=seed)
        note = f"folds assigned by the search (seed {seed}), written to its manifest.csv"
    else:
        note = "folds from its manifest.csv"
    found = sorted(int(f) for f in manifest.loc[manifest["split"] == "cv", "fold"].unique())
    if len(found) != n_folds:
        raise SearchError(f"{data_path} has {len(found)} cv folds ({found}) but the search asks for "
                          f"--folds {n_folds}: pass --folds {len(found)}, or reassign with `cxrtune folds`")
    current = manifest[["image_id", "split", "fold"]].astype({"image_id": str, "fold": int})
    if folds_file.is_file():
        saved = pd.read_csv(folds_file, dtype={"image_id": str})
        if not saved.sort_values("image_id").reset_index(drop=True).equals(
                current.sort_values("image_id").reset_index(drop=True)):
            raise SearchError(f"the folds in {data_path}/manifest.csv differ from those this search started "
                              f"with ({folds_file}): restore them, or start a new search")
    else:
        current.to_csv(folds_file, index=False)
    return make_handle(data_path, mode=data_mode), note


def data_handle(data, n_folds: int, seed: int, search_dir: Path, data_mode: str):
    """(handle, categories, description for search.json) from a PREPARED path or a ready handle."""
    if hasattr(data, "load"):  # a DatasetHandle given by the caller (tests, notebooks): kept for resume
        (search_dir / HANDLE_FILE).write_bytes(pickle.dumps(data))
        categories = list(getattr(data, "categories", None) or data.load()[3])
        return data, categories, {"kind": "handle", "file": HANDLE_FILE}
    path = str(Path(data).expanduser().resolve())
    handle, note = prepared_handle(path, n_folds, seed, search_dir, data_mode)
    print(f"data: {path} ({type(handle).__name__}; {note})", flush=True)
    categories = list(getattr(handle, "categories", None) or handle.load()[3])
    return handle, categories, {"kind": "prepared", "path": path, "mode": data_mode}


def reload_handle(settings: SearchSettings, search_dir: Path):
    """The handle a search trains on, again, for its resume (the folds checked against folds.csv)."""
    described = settings.data
    if described["kind"] == "handle":
        return pickle.loads((search_dir / described["file"]).read_bytes())
    return prepared_handle(described["path"], settings.n_folds, settings.seed, search_dir, settings.data_mode)[0]

