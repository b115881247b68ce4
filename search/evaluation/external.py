"""External validation: a model's categories scored against another taxonomy's labels through a mapping.

A mapping file (YAML) says which categories of the evaluated data correspond to each model category:

    from: study            # the model's taxonomy (optional, checked when given)
    to: nih                # the evaluated data's taxonomy (optional, checked when given)
    categories:
      cardiac_hypertrophy: [Cardiomegaly]
      abnormal_lung_field: [Nodule, Mass, Fibrosis]

An image is positive for a mapped model category when it has any of the listed categories; the
model's probability for that category is its score. Built in: `study-nih` (data/taxonomies/mappings/
study_to_nih.yaml) and `nih-study` (the same file read backwards: each finding scored against the
study category it belongs to).
"""
from __future__ import annotations

from importlib import resources
from pathlib import Path

import numpy as np

from search.errors import SearchError

BUILTIN = {"study-nih": ("study_to_nih.yaml", False), "nih-study": ("study_to_nih.yaml", True)}


def load_mapping(name_or_path) -> dict:
    """{'from', 'to', 'categories': {model category: [data categories]}, 'source'} from a name or a file."""
    import yaml

    text = str(name_or_path)
    if text in BUILTIN:
        file_name, backwards = BUILTIN[text]
        body = yaml.safe_load((resources.files("data") / "taxonomies" / "mappings" / file_name).read_text())
        where = f"built-in mapping {text}"
    else:
        path, backwards = Path(text), False
        if not path.is_file():
            raise SearchError(f"--mapping {text}: no such file; give a YAML mapping file or one of "
                              f"{', '.join(BUILTIN)}")
        try:
            body = yaml.safe_load(path.read_text())
        except yaml.YAMLError as error:
            raise SearchError(f"--mapping {path}: not valid YAML ({str(error).splitlines()[0]})") from None
        where = str(path)
    categories = body.get("categories") if isinstance(body, dict) else None
    if not isinstance(categories, dict) or not categories or not all(
            isinstance(targets, list) and targets and all(isinstance(t, str) for t in targets)
            for targets in categories.values()):
        raise SearchError(f"{where}: expected `categories:` mapping each model category to a list of the "
                          "evaluated data's categories (e.g. cardiac_hypertrophy: [Cardiomegaly])")
    mapping = {str(source): [str(t) for t in targets] for source, targets in categories.items()}
    source, target = body.get("from"), body.get("to")
    if backwards:
        reversed_mapping: dict[str, list[str]] = {}
        for study_category, findings in mapping.items():
            for finding in findings:
                reversed_mapping.setdefault(finding, []).append(study_category)
        mapping, source, target = reversed_mapping, target, source
    return {"from": source, "to": target, "categories": mapping, "source": where}


def check_mapping(mapping: dict, model_categories: list[str], data_categories: list[str], *,
                  model_taxonomy=None, data_taxonomy=None) -> dict[str, list[str]]:
    """The mapping restricted to what both sides have; SearchError when nothing maps or names are unknown."""
    where = mapping["source"]
    for side, declared, actual in (("from", mapping.get("from"), model_taxonomy), ("to", mapping.get("to"), data_taxonomy)):
        if declared and actual and str(declared) != str(actual):
            raise SearchError(f"{where} maps `{side}: {declared}` but the {'model' if side == 'from' else 'data'} "
                              f"uses taxonomy {actual!r}")
    unknown_model = sorted(set(mapping["categories"]) - set(model_categories))
    unknown_data = sorted({t for targets in mapping["categories"].values() for t in targets} - set(data_categories))
    if unknown_model or unknown_data:
        raise SearchError(f"{where}: " + "; ".join(
            part for part in (f"not model categories: {', '.join(unknown_model)} (model: {', '.join(model_categories)})"
                              if unknown_model else "",
                              f"not categories of the data: {', '.join(unknown_data)} (data: {', '.join(data_categories)})"
                              if unknown_data else "") if part))
    return dict(mapping["categories"])


def mapped_labels(labels: np.ndarray, data_categories: list[str], mapping: dict[str, list[str]]) -> np.ndarray:
    """N x len(mapping) 0/1: positive when any mapped data category is."""
    index = {name: position for position, name in enumerate(data_categories)}
    return np.stack([np.asarray(labels)[:, [index[t] for t in targets]].max(axis=1) for targets in mapping.values()],
                    axis=1).astype(float)


def external_rows(discrimination_rows: list[dict], internal_metrics: dict, mapping: dict[str, list[str]]) -> list[dict]:
    """Internal (the model's own test part) vs external AUC per mapped category, and the drop."""
    by_category = {row["category"]: row for row in discrimination_rows}
    rows = []
    for category, targets in mapping.items():
        external = by_category[category]
        internal = internal_metrics.get(f"test_auc_{category}", float("nan"))
        rows.append({"category": category, "mapped_to": "|".join(targets), "internal_auc": float(internal),
                     "external_auc": external["auc"], "external_auc_ci_low": external["auc_ci_low"],
                     "external_auc_ci_high": external["auc_ci_high"], "external_positives": external["positives"],
                     "drop": float(internal) - external["auc"], "status": external["status"]})
    return rows
