"""A quiet terminal: the libraries' start-up and bookkeeping lines off by default, `--verbose` to see them.

What is turned off (environment defaults only: a variable the user set wins), and why:
- TensorFlow's C++ logger (CPU features, oneDNN, CUDA probing): `TF_CPP_MIN_LOG_LEVEL=3`, read once when
  TensorFlow is imported, so it is set before any import, in the driver and, through Ray's runtime
  environment, in every trial worker (on a cluster they do not inherit the driver's environment);
- Ray's INFO lines in trial workers ("Checkpoint successfully created at ..." once per epoch and trial):
  `RAY_LOGGER_LEVEL=warning` in the workers; warnings and errors still reach the terminal, deduplicated
  across workers (Ray's default);
- MLflow's per-run URL lines, Tune's own tables, and its warning about frequent experiment snapshots
  (forced after each checkpoint by num_to_keep=1, which is what makes --resume exact).

- the lines some native libraries print through absl at `import tensorflow`, which no variable turns
  off (trainables/native_logs.py): the driver's first TensorFlow import runs with stderr silenced (an
  import hook), and each trial imports TensorFlow the same way before it builds its model.

`cxrtune --verbose` sets `CXRTUNE_VERBOSE=1`, which leaves every library at its own default.
Nothing here imports TensorFlow or Ray.
"""
from __future__ import annotations

import importlib.abc
import importlib.util
import os
import sys

from trainables.native_logs import VERBOSE_VARIABLE, silenced_stderr, verbose as is_verbose

# Set in the driver and in Ray's trial workers.
NATIVE_QUIET = {"TF_CPP_MIN_LOG_LEVEL": "3", "GRPC_VERBOSITY": "ERROR", "GLOG_minloglevel": "2"}
WORKER_QUIET = {**NATIVE_QUIET, "RAY_LOGGER_LEVEL": "warning", "MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT": "true"}
DRIVER_QUIET = {**NATIVE_QUIET, "MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT": "true", "RAY_AIR_NEW_OUTPUT": "0",
                "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false",
                "TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S": "0"}


class _QuietTensorFlowImport(importlib.abc.MetaPathFinder):
    """Finds `tensorflow` once, and runs its module code with stderr silenced (see the module docstring)."""

    def find_spec(self, name, path=None, target=None):
        if name != "tensorflow":
            return None
        sys.meta_path.remove(self)  # once: the real finders do the rest
        spec = importlib.util.find_spec(name)
        if spec is not None and spec.loader is not None:
            spec.loader = _SilencedLoader(spec.loader)
        return spec


class _SilencedLoader(importlib.abc.Loader):
    def __init__(self, loader):
        self.loader = loader

    def create_module(self, spec):
        return self.loader.create_module(spec)

    def exec_module(self, module):
        with silenced_stderr():
            self.loader.exec_module(module)


def quiet_driver() -> None:
    """Quiet this process (call before TensorFlow is imported); a no-op under --verbose."""
    if is_verbose():
        return
    for key, value in DRIVER_QUIET.items():
        os.environ.setdefault(key, value)
    if "tensorflow" not in sys.modules and not any(isinstance(f, _QuietTensorFlowImport) for f in sys.meta_path):
        sys.meta_path.insert(0, _QuietTensorFlowImport())


def worker_environment() -> dict[str, str]:
    """Environment variables for Ray's runtime environment: quiet trial workers (empty under --verbose).

    A value the user set in the driver's environment is passed on instead of the quiet default."""
    if is_verbose():
        return {}
    return {key: os.environ.get(key, value) for key, value in WORKER_QUIET.items()}
