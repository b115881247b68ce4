"""A trial's checkpoint: model weights, optimizer state and the epoch reached, in one folder.

    model.weights.h5   the model's weights and, for a compiled model, its optimizer's variables
                       (Adam's moments and iteration count): Keras 3 stores both in one file
    state.json         {"epoch": n, "config_id": ..., "fold": ...}

Restoring the optimizer too means a resumed trial continues where it stopped instead of restarting
Adam's moments. Keras is used through the model passed in; nothing is imported here.
"""
from __future__ import annotations

import json
from pathlib import Path

from trainables.errors import TrainableConfigError

STATE_FILE = "state.json"


def save_checkpoint(model, folder: str | Path, *, epoch: int, config: dict) -> Path:
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    model.save_weights(str(folder / "model.weights.h5"))  # a compiled model's file holds its optimizer too
    state = {"epoch": int(epoch), "config_id": config.get("config_id"), "fold": config.get("fold")}
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
    model.optimizer.build(model.trainable_variables)  # unbuilt, Keras would skip the optimizer's state
    model.load_weights(str(folder / "model.weights.h5"))
    return int(state["epoch"])
