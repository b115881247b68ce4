"""The config vocabulary: every name a config may hold, and what each means, in one table per kind.

Backbones, transfer methods A-D, frozen stages and their numeric aliases, source weights, defaults and
bounds are written here once and read by every room: `spaces` checks and expands configs with them,
`trainables` builds and freezes models from them (trainables/backbones.py adds how to build), `search`
orders its tables and names its CLI choices by them. Pure Python: no TensorFlow, no Ray, no other
cxrtune package, so any room may import it.

Adding a keras.applications backbone is one `BackboneEntry` below (tests/test_spaces_vocabulary.py checks
it against the real Keras model). Registering is a call, as timm's `register_model` is a decorator:
    register_backbone(BackboneEntry(name="...", application="...", ...))
"""
from __future__ import annotations

from dataclasses import dataclass, field

# Frozen depths of method B, named by the last frozen stage: the end of the last stage whose output is
# at 1/4 (conv2), 1/8 (conv3) and 1/16 (conv4) of the input size (ResNet's stage names).
FREEZE_STAGES = ("conv2", "conv3", "conv4")
# data.pipeline's preprocessing modes (keras.applications imagenet_utils); spaces may not import data.
PREPROCESSING_MODES = ("caffe", "torch", "tf")


@dataclass(frozen=True)
class BackboneEntry:
    """One keras.applications network a config may name as `backbone`."""

    name: str                         # the config value, e.g. "resnet50"
    application: str                  # keras.applications constructor, e.g. "ResNet50"
    preprocessing: str                # data.pipeline mode on 0-255 input: "caffe", "torch" or "tf"
    imagenet_file: str                # Keras's cache file name of its ImageNet weights (include_top=False)
    stage_ends: dict[str, str]        # FREEZE_STAGES -> the stage's last layer (frozen inclusive; by name:
                                      # indices shift between Keras versions, names have not)
    depth_aliases: dict[int, str]     # frozen convolutions at that stage end -> stage (the study's numbers)
    feature_width: int                # channels of the pooled feature vector the head reads
    application_options: dict = field(default_factory=dict)  # extra constructor keywords
    in_default_grid: bool = False     # the study's backbones: what a space without `backbone` searches

    def __post_init__(self):
        problems = []
        if set(self.stage_ends) != set(FREEZE_STAGES):
            problems.append(f"stage_ends must name exactly {', '.join(FREEZE_STAGES)}")
        if any(isinstance(number, bool) or not isinstance(number, int) for number in self.depth_aliases):
            problems.append("depth_aliases keys must be whole numbers (frozen convolutions)")
        if not set(self.depth_aliases.values()) <= set(FREEZE_STAGES):
            problems.append(f"depth_aliases must map to {', '.join(FREEZE_STAGES)}")
        if self.preprocessing not in PREPROCESSING_MODES:
            problems.append(f"preprocessing must be one of {', '.join(PREPROCESSING_MODES)}")
        if problems:
            raise ValueError(f"backbone entry {self.name!r}: " + "; ".join(problems))

    def stage_for(self, depth) -> str | None:
        """The stage of a depth given as a stage name or a numeric alias (int or digit string); None if neither."""
        if depth in self.stage_ends:
            return depth
        if isinstance(depth, str) and depth.strip().isdigit():
            depth = int(depth)
        if isinstance(depth, bool) or not isinstance(depth, int):
            return None
        return self.depth_aliases.get(depth)

    def accepted_depths(self) -> list[str]:
        return list(FREEZE_STAGES) + [str(number) for number in self.depth_aliases]


@dataclass(frozen=True)
class MethodEntry:
    """One transfer method: what it freezes and where its initial values come from."""

    name: str                  # "A" .. "D"
    description: str
    freeze: str | None         # the `freeze` it always has; None: B, which takes a stage
    pretrained: bool           # starts from source weights (A-C) or from random values (D, source `none`)
    default_batch_size: int    # the study's: 128 when early layers are frozen, 16 when all train

    @property
    def freezes_layers(self) -> bool:
        """A and B: only these have frozen BatchNorm layers, so only they take `frozen_bn: train`."""
        return self.freeze != "none"


@dataclass(frozen=True)
class SourceEntry:
    """One named source of initial backbone values (`source_weights`), for methods A-C."""

    name: str
    initial_values: str      # what the backbone held before this source was made: "imagenet" or "random"
    pretrained_here: bool    # made by `cxrtune pretrain` (a weights dir file + card), not Keras's download
    description: str


# By name, in registration order (the order tables show). Each room looks names up itself and raises its
# own error listing these names on a miss (spaces.methods.check_backbone, trainables.get_backbone).
BACKBONES: dict[str, BackboneEntry] = {}


def register_backbone(entry: BackboneEntry) -> BackboneEntry:
    """Add `entry` to BACKBONES: spaces searches it, trainables builds it, search's tables list it."""
    if entry.name in BACKBONES:
        raise ValueError(f"backbone {entry.name!r} is registered already")
    BACKBONES[entry.name] = entry
    return entry


register_backbone(BackboneEntry(
    name="resnet50", application="ResNet50", preprocessing="caffe",
    imagenet_file="resnet50_weights_tf_dim_ordering_tf_kernels_notop.h5",
    # First trainable layer indices 39/81/143, as in the study; shortcut projections not counted.
    stage_ends={"conv2": "conv2_block3_out", "conv3": "conv3_block4_out", "conv4": "conv4_block6_out"},
    depth_aliases={10: "conv2", 22: "conv3", 40: "conv4"},
    feature_width=2048, in_default_grid=True,
))
register_backbone(BackboneEntry(
    name="densenet121", application="DenseNet121", preprocessing="torch",
    imagenet_file="densenet121_weights_tf_dim_ordering_tf_kernels_notop.h5",
    # Transition blocks end at layer 53/141/313. The study froze 55/143/315, i.e. also the next dense
    # block's first BatchNorm+ReLU; those hold no convolution.
    stage_ends={"conv2": "pool2_pool", "conv3": "pool3_pool", "conv4": "pool4_pool"},
    depth_aliases={14: "conv2", 39: "conv3", 88: "conv4"},
    feature_width=1024, in_default_grid=True,
))
register_backbone(BackboneEntry(
    name="efficientnetv2s", application="EfficientNetV2S", preprocessing="tf",
    imagenet_file="efficientnetv2-s_notop.h5",
    # Stages 2, 3 and 5 end at 1/4, 1/8 and 1/16 of the input (stage 4 halves it, stage 5 keeps it).
    # Aliases count Conv2D layers as model.frozen_conv_count does (depthwise convolutions not counted).
    stage_ends={"conv2": "block2d_add", "conv3": "block3d_add", "conv4": "block5i_add"},
    depth_aliases={11: "conv2", 19: "conv3", 79: "conv4"},
    feature_width=1280,
    # The pipeline scales to [-1, 1] ("tf": x / 127.5 - 1) as it preprocesses the other backbones, so the
    # built-in Rescaling layer (x / 128 - 1) is left out: one preprocessing path for training, the feature
    # cache, predict and Grad-CAM. The two differ by 0.4% in scale; the weights file is the same.
    application_options={"include_preprocessing": False},
))

METHODS: dict[str, MethodEntry] = {entry.name: entry for entry in (
    MethodEntry("A", "backbone frozen, head trained", "all", True, 128),
    MethodEntry("B", "backbone frozen through `freeze`, the rest and the head trained", None, True, 128),
    MethodEntry("C", "all layers trained, pretrained initialisation", "none", True, 16),
    MethodEntry("D", "all layers trained, random initialisation", "none", False, 16),
)}

# Only methods that freeze something have frozen BatchNorm layers; for C and D `frozen_bn` has no effect,
# so configs fix it to the default instead of repeating identical trainings.
METHODS_WITH_FROZEN_LAYERS = tuple(name for name, method in METHODS.items() if method.freezes_layers)

SOURCES: dict[str, SourceEntry] = {entry.name: entry for entry in (
    SourceEntry("imagenet", "imagenet", False, "Keras ImageNet weights"),
    SourceEntry("chestxray8", "random", True, "ChestX-ray14 from random initial values"),
    SourceEntry("imagenet-F+chestxray8", "imagenet", True,
                "ChestX-ray14 on top of ImageNet, early stages frozen during pretraining"),
    SourceEntry("imagenet-I+chestxray8", "imagenet", True,
                "ChestX-ray14 with ImageNet as initial values, nothing frozen"),
)}
NO_SOURCE = "none"  # method D's only `source_weights`: random initialisation
# What `cxrtune pretrain` can make (the rest come from Keras's download).
SOURCES_MADE_BY_PRETRAIN = tuple(name for name, source in SOURCES.items() if source.pretrained_here)

FROZEN_BN_MODES = ("inference", "train")
# The study's training values; batch size is the method's (MethodEntry.default_batch_size).
DEFAULTS = {
    "image_size": 512,
    "epochs": 30,
    "learning_rate": 1e-4,
    "dropout": 0.5,
    "frozen_bn": "inference",  # Keras 3's behaviour: a frozen BatchNorm uses its moving statistics
    "seed": 0,
}
# Inclusive bounds of the whole-number keys. The backbones need at least 32 px without their top.
INT_BOUNDS = {"image_size": (32, 4096), "epochs": (1, 10_000), "batch_size": (1, 65_536), "seed": (0, 2**32 - 1)}
# Ranges of the float keys: (low, high, low included, high included).
FLOAT_RANGES = {"learning_rate": (0.0, 1.0, False, True), "dropout": (0.0, 1.0, True, False)}


def in_float_range(key: str, number: float) -> bool:
    low, high, low_included, high_included = FLOAT_RANGES[key]
    above = number >= low if low_included else number > low
    below = number <= high if high_included else number < high
    return above and below


def float_range_text(key: str) -> str:
    """The range in words, for error messages: "above 0 and at most 1"."""
    low, high, low_included, high_included = FLOAT_RANGES[key]
    lower = f"from {low:g}" if low_included else f"above {low:g}"
    upper = f"and at most {high:g}" if high_included else f"up to, not including, {high:g}"
    return f"{lower} {upper}"


def study_backbones() -> tuple[str, ...]:
    """The backbones a space searches when it names none (the reference study's two)."""
    return tuple(name for name, entry in BACKBONES.items() if entry.in_default_grid)


def default_batch_size(method: str) -> int:
    return METHODS[method].default_batch_size
