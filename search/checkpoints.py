"""What a search keeps on disk: only what `--resume` and the fold models need.

Tune keeps each trial's last checkpoint (CheckpointConfig(num_to_keep=1)): a running trial needs it to
resume, with the optimizer state (Adam's moments: twice the trainable weights). A trial that ended will
never train again, so when it ends this callback (in the driver) rewrites its checkpoint as weights only
(`--keep-checkpoints final`, the default: what evaluating the fold models needs), or deletes it
(`--keep-checkpoints none`). A trial that ran all its epochs already saved its last checkpoint without the
optimizer (trainables/train.py); one the scheduler stopped early is slimmed here. Checkpoints on a remote
URI (`--storage s3://...`) are left as Tune wrote them.

Imports Ray at module import: the tuner imports this module inside its functions.
"""
from __future__ import annotations

import logging
import shutil
from pathlib import Path

from ray.tune import Callback

from trainables.checkpoint import strip_optimizer_state

logger = logging.getLogger(__name__)


def local_checkpoint_dir(trial) -> Path | None:
    """The folder of a trial's latest checkpoint, when it is on a local (or mounted shared) filesystem."""
    checkpoint = getattr(trial, "checkpoint", None)
    if checkpoint is None:
        return None
    filesystem = getattr(checkpoint, "filesystem", None)
    if filesystem is not None and getattr(filesystem, "type_name", "local") != "local":
        return None
    path = Path(checkpoint.path)
    return path if path.is_dir() else None


class CheckpointPruner(Callback):
    """On each trial's end: keep its final weights only (`final`) or nothing (`none`)."""

    def __init__(self, keep: str = "final"):
        self.keep = keep

    def on_trial_complete(self, iteration, trials, trial, **info):
        folder = local_checkpoint_dir(trial)
        if folder is None:
            return
        try:
            if self.keep == "none":
                shutil.rmtree(folder)
            else:
                strip_optimizer_state(folder)
        except OSError as error:  # disk housekeeping must never stop a search
            logger.warning("checkpoint %s left as it is: %s", folder, error)
