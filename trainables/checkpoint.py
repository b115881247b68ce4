"""A trial's checkpoint: model weights, optimizer state and the epoch reached, in one folder.

    model.weights.h5   the model's weights and, for a compiled model, its optimizer's variables
                       (Adam's moments and iteration count, the top-level `optimizer` group): Keras 3
                       stores both in one file
    state.json         {"epoch": n, "config_id": ..., "fold": ..., "optimizer_state": true|false}

Restoring the optimizer too means a resumed trial continues where it stopped instead of restarting
Adam's moments. A trial's last checkpoint (it will never train again) and a finished trial's checkpoint
after `strip_optimizer_state` hold the weights only: Adam's two moments per trainable weight would
otherwise triple the disk a search leaves. Keras is used through the model passed in (imported only to
load a weights-only file); h5py edits files without TensorFlow.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

from trainables.errors import TrainableConfigError

STATE_FILE = "state.json"
WEIGHTS_FILE = "model.weights.h5"
OPTIMIZER_GROUP = "optimizer"  # where Keras 3 puts a compiled model's optimizer variables in a .weights.h5


def save_checkpoint(model, folder: str | Path, *, epoch: int, config: dict, optimizer_state: bool = True) -> Path:
    """Write a checkpoint; `optimizer_state=False` for one no training will continue from."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    if optimizer_state:
        model.save_weights(str(folder / WEIGHTS_FILE))  # a compiled model's file holds its optimizer too
    else:
        import keras

        keras.saving.save_weights(model, str(folder / WEIGHTS_FILE), objects_to_skip=[model.optimizer])
    state = {"epoch": int(epoch), "config_id": config.get("config_id"), "fold": config.get("fold"),
             "optimizer_state": bool(optimizer_state)}
    (folder / STATE_FILE).write_text(json.dumps(state))
    return folder


def restore_checkpoint(model, folder: str | Path, *, config: dict) -> int:
    """Load a checkpoint into a compiled model; returns the epochs already done."""
    folder = Path(folder)
    try:
        state = json.loads((folder / STATE_FILE).read_text())
    except (OSError, json.JSONDecodeError) as error:
        raise TrainableConfigError(f"checkpoint {folder} has no readable {STATE_FILE}: {error}") from None
    for key in ("config_id", "fold"):
        if state.get(key) != config.get(key):
            raise TrainableConfigError(
                f"checkpoint {folder} belongs to {key}={state.get(key)!r}, this trial has {config.get(key)!r}")
    if not state.get("optimizer_state", True):  # weights only: Adam starts afresh (if it trains at all)
        import keras

        keras.saving.load_weights(model, str(folder / WEIGHTS_FILE), objects_to_skip=[model.optimizer])
        return int(state["epoch"])
    model.optimizer.build(model.trainable_variables)  # unbuilt, Keras would skip the optimizer's state
    model.load_weights(str(folder / WEIGHTS_FILE))
    return int(state["epoch"])


def strip_optimizer_state(folder: str | Path) -> bool:
    """Rewrite a checkpoint's weights file without its optimizer group; True when something was removed.

    HDF5 does not give back the space of a deleted group, so the kept groups are copied into a new file
    that replaces the old one atomically."""
    import h5py

    folder = Path(folder)
    weights, state_file = folder / WEIGHTS_FILE, folder / STATE_FILE
    if not weights.is_file():
        return False
    with h5py.File(weights, "r") as source:
        if OPTIMIZER_GROUP not in source:
            return False
        slim = weights.with_name(weights.name + ".tmp")
        with h5py.File(slim, "w") as target:
            for key, value in source.attrs.items():
                target.attrs[key] = value
            for name in source:
                if name != OPTIMIZER_GROUP:
                    source.copy(source[name], target, name=name)
    os.replace(slim, weights)
    if state_file.is_file():
        state = json.loads(state_file.read_text())
        state["optimizer_state"] = False
        state_file.write_text(json.dumps(state))
    return True
