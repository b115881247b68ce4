"""Source weights: the catalog of named sources, the Keras ImageNet cache, and weight cards.

A source is named per backbone as `<backbone>.<source>` (`resnet50.imagenet`,
`densenet121.imagenet-I+chestxray8`). ImageNet weights live in Keras's own cache
($KERAS_HOME/models) and are fetched once by the driver, before trials start, because Keras's
download is not atomic and parallel trials would race on it. Weights made by `pretrain` live in a
weights directory as `<backbone>.<source>.weights.h5` (backbone only, no head) beside a JSON card
that says what they are; a card is checked before its weights are loaded.

Only `fetch_imagenet` and `load_source_weights` import Keras, inside the function.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path

from spaces import vocabulary
from trainables.backbones import get_backbone
from trainables.errors import WeightsError

CARD_VERSION = 1
# Values of the last few weight files loaded in this process. A reused Tune worker runs many trials from the
# same source: setting the values from memory takes ~0.1 s where reading ResNet50's 94 MB file takes ~2 s.
# Keyed by the file (path, size, modification time, inode; a pretrained source's sha256 too) and the backbone,
# so a replaced file is read again. ResNet50 holds ~94 MB per entry, DenseNet121 ~28 MB.
RECENT_FILES_KEPT = 2
_recent_values: OrderedDict = OrderedDict()


@dataclass(frozen=True)
class WeightCard:
    """What a pretrained weight file is. Written beside it as JSON; checked before loading."""
    backbone: str
    source: str
    source_dataset: str      # e.g. "ChestX-ray14 (prepared NIH, 14 findings)"
    initial_values: str      # "random" or "imagenet"
    frozen_depth: str        # what was frozen while pretraining: "none" or a stage
    epochs: int
    val_auc: float           # macro AUC on the pretraining validation part
    sha256: str              # of weights_file
    image_size: int          # px the weights were trained at
    weights_file: str        # file name, relative to the weights directory
    categories: list = field(default_factory=list)
    n_train: int = 0
    n_val: int = 0
    created_utc: str = ""
    keras_version: str = ""
    mlflow_run_id: str = ""
    card_version: int = CARD_VERSION

    @property
    def name(self) -> str:
        return f"{self.backbone}.{self.source}"

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


CARD_FIELDS = tuple(f.name for f in dataclasses.fields(WeightCard)
                    if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING)


# The named sources are the config vocabulary's (spaces/vocabulary.py): one table for every room.
SOURCES = vocabulary.SOURCES


def get_source(name: str) -> vocabulary.SourceEntry:
    try:
        return SOURCES[name]
    except KeyError:
        raise WeightsError(
            f"unknown source weights {name!r}; known: {', '.join(SOURCES)} (or 'none' for method D)"
        ) from None


def list_sources() -> list[str]:
    return list(SOURCES)


# --- ImageNet: Keras's cache ------------------------------------------------------------------

def keras_models_dir() -> Path:
    """Where Keras caches downloaded weights: $KERAS_HOME/models, else ~/.keras/models (or
    /tmp/.keras/models when the home folder is not writable, as Keras itself falls back)."""
    home = os.environ.get("KERAS_HOME")
    if home:
        return Path(home) / "models"
    base = Path(os.path.expanduser("~"))
    if not os.access(base, os.W_OK):
        base = Path("/tmp")
    return base / ".keras" / "models"


def imagenet_path(backbone: str) -> Path:
    return keras_models_dir() / get_backbone(backbone).imagenet_file


def imagenet_cached(backbone: str) -> bool:
    """True when Keras's ImageNet weight file for this backbone (no top) is in the cache."""
    return imagenet_path(backbone).is_file()


def fetch_imagenet(backbone: str) -> Path:
    """Download the ImageNet weights into Keras's cache (driver side, once, before any trial)."""
    import keras

    spec = get_backbone(backbone)
    try:
        getattr(keras.applications, spec.application)(include_top=False, weights="imagenet",
                                                       **spec.application_options)
    except Exception as error:  # network errors come as several types; say what to do instead
        raise WeightsError(
            f"could not download ImageNet weights for {backbone} into {keras_models_dir()}: {error}. "
            f"Copy {spec.imagenet_file} there from a machine with internet access."
        ) from error
    return imagenet_path(backbone)


# --- pretrained sources: files and cards -----------------------------------------------------

def weights_file(weights_dir: str | Path, backbone: str, source: str) -> Path:
    return Path(weights_dir) / f"{backbone}.{source}.weights.h5"


def card_file(weights_dir: str | Path, backbone: str, source: str) -> Path:
    return Path(weights_dir) / f"{backbone}.{source}.json"


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as stream:
        for block in iter(lambda: stream.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def write_card(weights_dir: str | Path, card: WeightCard) -> Path:
    path = card_file(weights_dir, card.backbone, card.source)
    path.write_text(json.dumps(card.to_dict(), indent=2, sort_keys=True) + "\n")
    return path


def read_card(weights_dir: str | Path, backbone: str, source: str) -> WeightCard:
    """The card of a pretrained source, checked against the backbone and source asked for and
    against its weight file's sha256; raises WeightsError naming each thing that differs."""
    path = card_file(weights_dir, backbone, source)
    if not path.is_file():
        raise WeightsError(
            f"no weights {backbone}.{source} in {weights_dir} (expected card {path.name}); "
            f"make them with: cxrtune pretrain --backbone {backbone} --source {source} --weights-dir {weights_dir}"
        )
    try:
        card = json.loads(path.read_text())
    except json.JSONDecodeError as error:
        raise WeightsError(f"weight card {path} is not valid JSON: {error}") from None
    if not isinstance(card, dict):
        raise WeightsError(f"weight card {path} is not a JSON object")
    missing = [name for name in CARD_FIELDS if name not in card]
    if missing:
        raise WeightsError(f"weight card {path} lacks {', '.join(missing)}")
    known = {f.name for f in dataclasses.fields(WeightCard)}
    problems = []
    if card["backbone"] != backbone:
        problems.append(f"backbone is {card['backbone']!r}, the model is {backbone!r}")
    if card["source"] != source:
        problems.append(f"source is {card['source']!r}, the config asks for {source!r}")
    if card.get("card_version", CARD_VERSION) != CARD_VERSION:
        problems.append(f"card_version is {card['card_version']}, this cxrtune reads {CARD_VERSION}")
    weights = Path(weights_dir) / card["weights_file"]
    if not weights.is_file():
        problems.append(f"weight file {card['weights_file']} is missing")
    elif sha256_of(weights) != card["sha256"]:
        problems.append(f"{card['weights_file']} does not match the card's sha256 (file changed)")
    if problems:
        raise WeightsError(f"weight card {path} does not fit: " + "; ".join(problems))
    return WeightCard(**{key: value for key, value in card.items() if key in known})


def source_problem(backbone: str, source: str, weights_dir: str | Path | None) -> str | None:
    """Why `source` cannot be loaded into `backbone` now, or None when it can (no TensorFlow)."""
    get_backbone(backbone)
    if source == "none":
        return None
    spec = get_source(source)
    if not spec.pretrained_here:
        if imagenet_cached(backbone):
            return None
        return (f"ImageNet weights for {backbone} are not in the Keras cache ({imagenet_path(backbone)}); "
                f"fetch them with `cxrtune weights --fetch-imagenet {backbone}` (needs internet)")
    if weights_dir is None:
        return f"source {source!r} needs a weights directory (weights_dir) holding {backbone}.{source}"
    try:
        read_card(weights_dir, backbone, source)
    except WeightsError as error:
        return str(error)
    return None


def available_weights(weights_dir: str | Path | None = None) -> list[str]:
    """`<backbone>.<source>` names that could be loaded now."""
    from trainables.backbones import list_backbones

    return [f"{backbone}.{source}" for backbone in list_backbones() for source in SOURCES
            if source_problem(backbone, source, weights_dir) is None]


def load_source_weights(backbone_model, backbone: str, source: str, weights_dir=None) -> WeightCard | None:
    """Set a backbone model's (include_top=False, built with weights=None) values from a source.
    Returns the card for pretrained sources, None for ImageNet."""
    problem = source_problem(backbone, source, weights_dir)
    if problem:
        raise WeightsError(problem)
    spec = get_source(source)
    card = None
    if spec.pretrained_here:
        card = read_card(weights_dir, backbone, source)
        path = Path(weights_dir) / card.weights_file
    else:
        path = imagenet_path(backbone)
    stat = path.stat()
    key = (str(path.resolve()), stat.st_size, stat.st_mtime_ns, stat.st_ino, card.sha256 if card else "", backbone)
    values = _recent_values.get(key)
    if values is not None and [tuple(v.shape) for v in backbone_model.weights] == [v.shape for v in values]:
        _recent_values.move_to_end(key)
        backbone_model.set_weights(values)
        return card
    try:
        backbone_model.load_weights(str(path))
    except ValueError as error:
        raise WeightsError(f"weights {path} do not fit {backbone}: {error}") from None
    _recent_values[key] = backbone_model.get_weights()
    while len(_recent_values) > RECENT_FILES_KEPT:
        _recent_values.popitem(last=False)
    return card
