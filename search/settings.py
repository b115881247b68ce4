"""A search's settings: what `run_search` is asked to do, and what search.json keeps so `--resume` can go on.

One frozen dataclass. The caller fills in what it chooses (the `cxrtune search` flags); `run_search` fills in
the rest as the search starts (the fold count and scheduler it chose, absolute paths, the data and space it
was given, what it found on the cluster), and search.json stores that, field for field. Pure Python: no Ray,
no TensorFlow, so bad settings are refused before either starts.
"""
from __future__ import annotations

import dataclasses
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from search.errors import SearchError

SEARCH_FILE = "search.json"
NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
OBJECTIVES = {"cv_val_auc_mean": "max", "trainable_params": "min"}
DEFAULT_FOLDS = 5  # when neither --folds nor the dataset says how many
# What a finished trial keeps (search/checkpoints.py): its final weights (no optimizer state), or nothing.
KEEP_CHECKPOINTS = ("final", "none")


def augment_views(augment: str) -> int | None:
    """The trials' `augment_views` for --augment: None (random augmentation every epoch), 0 (off) or K
    (`views:K`: K fixed augmented views per image, so methods A/B can still train from cached features)."""
    from trainables.feature_cache import MAX_VIEWS

    if augment == "random":
        return None
    if augment == "off":
        return 0
    count = str(augment).partition("views:")[2]
    if str(augment).startswith("views:") and count.isdigit() and 1 <= int(count) <= MAX_VIEWS:
        return int(count)
    raise SearchError(f"--augment {augment!r}: choose random, off or views:K with K from 1 to {MAX_VIEWS}")
DATA_MODES = ("auto", "memory", "path")


@dataclass(frozen=True)
class SearchSettings:
    """Every setting of one search (flags of `cxrtune search` in brackets; docs/search.md)."""

    name: str                                   # --name: a folder under --out and the MLflow experiment
    n_folds: int | None = None                  # --folds; None: the dataset's folds, else DEFAULT_FOLDS
    scheduler: str | None = None                # None: mo-fold-asha for 2+ objectives, else fold-asha
    objectives: dict[str, str] = field(default_factory=lambda: dict(OBJECTIVES))  # fold-table column -> max|min
    grace_period: int = 1                       # epochs before ASHA may stop a config
    reduction_factor: float = 3
    gpus_per_trial: float = 0
    cpus_per_trial: float = 1
    max_concurrent: int | None = None
    max_failures: int = 1                       # retries of a failed trial
    tracking_uri: str | None = None             # None: sqlite in --out (made absolute at the start)
    allow_unauthenticated_tracking: bool = False
    overrides: dict[str, Any] = field(default_factory=dict)  # --set KEY=VALUE
    available_sources: list[str] | None = None
    weights_dir: str | None = None              # made absolute at the start
    seed: int = 0                               # of sampled keys and of folds the search assigns
    data_mode: str = "auto"                     # how data reaches trials (data/handle.py)
    keep_checkpoints: str = "final"
    augment: str = "random"
    storage: str | None = None                  # --storage as given; None: Tune's state under OUT/NAME/tune
    # Recorded by run_search as the search starts (None before):
    data: dict | None = None                    # {"kind": "prepared", "path", "mode"} or {"kind": "handle", "file"}
    space: str | None = None                    # a preset name, an absolute YAML path, or a Space's name
    n_configs: int | None = None
    n_trials: int | None = None
    categories: list[str] | None = None
    storage_path: str | None = None             # where Tune keeps the experiment: STORAGE_PATH/EXPERIMENT
    experiment: str | None = None
    nodes: int | None = None
    cluster_cpus: float | None = None
    cluster_gpus: float | None = None

    def __post_init__(self) -> None:
        if not NAME_PATTERN.match(str(self.name)):
            raise SearchError(f"--name {self.name!r}: use 1-64 letters, digits, '_', '-' or '.', starting with a "
                              "letter or digit (it names a folder and an MLflow experiment)")
        if self.n_folds is not None and int(self.n_folds) < 2:
            raise SearchError(f"--folds {self.n_folds}: cross-validation needs at least 2 folds")
        augment_views(self.augment)
        for flag, value, accepted in (("--keep-checkpoints", self.keep_checkpoints, KEEP_CHECKPOINTS),
                                      ("--data-mode", self.data_mode, DATA_MODES)):
            if value not in accepted:
                raise SearchError(f"{flag} {value!r}: choose one of {', '.join(accepted)}")

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), indent=1, default=str)

    @classmethod
    def from_dict(cls, stored: dict[str, Any]) -> SearchSettings:
        """Settings from search.json. Tolerant: a key this version does not know is left out, and one that an
        older search.json lacks takes its default (before `data_mode` was a field it lived in data["mode"])."""
        known = {item.name for item in dataclasses.fields(cls)}
        values = {key: value for key, value in stored.items() if key in known}
        if "data_mode" not in values and isinstance(values.get("data"), dict) and "mode" in values["data"]:
            values["data_mode"] = values["data"]["mode"]
        return cls(**values)

    def mlflow_params(self) -> dict[str, Any]:
        """What the search's MLflow parent run shows as params: every setting but the long lists."""
        return {key: value for key, value in dataclasses.asdict(self).items() if key not in ("categories", "data")}


def read_settings(search_dir: Path) -> SearchSettings:
    path = Path(search_dir) / SEARCH_FILE
    try:
        return SearchSettings.from_dict(json.loads(path.read_text()))
    except (ValueError, TypeError) as error:  # hand-edited or cut short
        raise SearchError(f"{path} is not a search's settings file ({error}); start a new search") from error


def write_settings(search_dir: Path, settings: SearchSettings) -> None:
    (Path(search_dir) / SEARCH_FILE).write_text(settings.to_json())
