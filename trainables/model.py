"""Build the study's model from a flat config: backbone (no top) -> global average pooling ->
dropout -> dense (`logits`) -> sigmoid (`predictions`), the head in float32, with source weights loaded
and layers frozen per method. The model outputs probabilities; training compiles `logits_view(model)`,
the same layers ending before the sigmoid, so the loss sees logits (trainables/losses.py).

Keras is imported inside the functions only, and nothing here needs TensorFlow itself, so the
GPU benchmark can build the same models under KERAS_BACKEND=jax.
"""
from __future__ import annotations

from spaces.vocabulary import METHODS
from trainables.backbones import get_backbone
from trainables.config import check_config
from trainables.errors import TrainableConfigError
from trainables.weights import load_source_weights

LOGITS_LAYER = "logits"


def build_model(config: dict, *, weights_dir=None, load_weights: bool = True):
    """The uncompiled Keras model for `config` (needs `n_classes`). `weights_dir` holds pretrained
    sources (defaults to config["weights_dir"]); load_weights=False skips source weights (tests,
    benchmarks), leaving random values as for method D."""
    import keras

    config = check_config(config)
    if "n_classes" not in config:
        raise TrainableConfigError("config lacks 'n_classes' (the trial sets it from the dataset's categories)")
    spec = get_backbone(config["backbone"])
    size = config["image_size"]
    backbone = spec.build((size, size, 3))
    if load_weights and METHODS[config["method"]].pretrained:
        load_source_weights(backbone, spec.name, config["source_weights"],
                            weights_dir if weights_dir is not None else config.get("weights_dir"))
    freeze_backbone(backbone, config)

    inputs = keras.Input((size, size, 3), name="image")
    features = backbone(inputs)
    pooled = keras.layers.GlobalAveragePooling2D(name="avg_pool")(features)
    dropped = keras.layers.Dropout(config["dropout"], seed=config["seed"], name="dropout")(pooled)
    # float32 even under mixed precision: the loss reads these logits, and sigmoid outputs near 0/1.
    logits = keras.layers.Dense(config["n_classes"], dtype="float32", name=LOGITS_LAYER)(dropped)
    outputs = keras.layers.Activation("sigmoid", dtype="float32", name="predictions")(logits)
    return keras.Model(inputs, outputs, name=f"{spec.name}_{config['method']}")


def logits_view(model):
    """`model` ending at its head's pre-sigmoid output: same layers, same weights (training one trains
    the other). Compile and fit this one with trainables.losses.weighted_bce; save and predict with `model`."""
    import keras

    try:
        logits = model.get_layer(LOGITS_LAYER).output
    except ValueError:
        raise TrainableConfigError(
            f"model {model.name!r} has no {LOGITS_LAYER!r} layer (not made by build_model)") from None
    return keras.Model(model.input, logits, name=f"{model.name}_logits")  # .input: the same structure


def freeze_backbone(backbone, config: dict) -> None:
    """A: every backbone layer frozen. B: layers up to and including the stage's last layer.
    C/D: none. With frozen_bn="train", frozen BatchNorm layers stay trainable, so they normalise
    with batch statistics and keep updating (Keras 3 ties both to `trainable`); their scale and
    offset then train too."""
    fixed = METHODS[config["method"]].freeze  # "all" (A), "none" (C, D), None: B's stage
    if fixed == "none":
        count = 0
    elif fixed == "all":
        count = len(backbone.layers)
    else:
        stage_end = get_backbone(config["backbone"]).stage_ends[config["freeze"]]
        names = [layer.name for layer in backbone.layers]
        count = names.index(stage_end) + 1
    keep_bn_training = config.get("frozen_bn", "inference") == "train"
    for index, layer in enumerate(backbone.layers):
        frozen = index < count and not (keep_bn_training and _is_batch_norm(layer))
        layer.trainable = not frozen


def backbone_of(model):
    """The nested backbone model inside a model made by build_model."""
    import keras

    for layer in model.layers:
        if isinstance(layer, keras.Model):
            return layer
    raise TrainableConfigError(f"model {model.name} has no nested backbone")


def first_trainable_index(backbone) -> int:
    """Index in backbone.layers of the first trainable layer (the study's frozen-depth number);
    len(layers) when all are frozen. Weightless layers count: trainable is a per-layer flag."""
    for index, layer in enumerate(backbone.layers):
        if layer.trainable and index > 0:  # the InputLayer is trainable by default but holds nothing
            return index
    return len(backbone.layers)


def frozen_conv_count(backbone) -> int:
    """Frozen convolutions, counting as the study did: ResNet's shortcut projections (`_0_conv`)
    left out."""
    import keras

    return sum(1 for layer in backbone.layers
               if isinstance(layer, keras.layers.Conv2D) and not layer.trainable
               and not layer.name.endswith("_0_conv"))


def parameter_counts(model) -> tuple[int, int]:
    """(trainable, total) parameter counts."""
    import numpy as np

    trainable = sum(int(np.prod(weight.shape)) for weight in model.trainable_weights)
    total = sum(int(np.prod(weight.shape)) for weight in model.weights)
    return trainable, total


def _is_batch_norm(layer) -> bool:
    import keras

    return isinstance(layer, keras.layers.BatchNormalization)
